"""The HTTP API through its Lambda handler, with HTTP API v2 events as API Gateway sends them (the
samples in events/), moto for DynamoDB and Step Functions, and fake hosts answering Run Command."""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from swarmwarden import aws
from swarmwarden.adapters.operations import Operation, OperationKind, Operations, OperationStatus
from swarmwarden.adapters.runcommand import RunCommand
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeState
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.api import routes
from swarmwarden.api.errors import Conflict
from swarmwarden.api.models import Capacity
from swarmwarden.api.usecases import SWARM_VIEW_MAX_AGE_SECONDS, Adapters, ClusterApi, operation_id
from swarmwarden.domain.model import ClusterSpec, Host, NodeStatus, Role
from swarmwarden.settings import Settings

from functions.api import app as api_app
from tests.unit.fakes import FakeSsm
from tests.unit.test_template import Context

EVENTS = Path(__file__).resolve().parents[2] / "events"
ACCOUNT = "123456789012"
CLUSTER = "demo"
SCALE_ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{CLUSTER}-scale"
SPEC = ClusterSpec(cluster_name=CLUSTER, managers=3, workers=2, max_workers=20, ami_id="ami-0123456789abcdef0")


def _host(role: Role, n: int) -> Host:
    prefix, subnet = ("m", 0) if role is Role.MANAGER else ("w", 1)
    return Host(
        instance_id=f"i-{prefix}{n}", role=role, slot=f"{role.value}-{n}", az=f"us-east-1{'abc'[n]}",
        private_ip=f"10.0.{subnet}.{n + 10}",
    )  # fmt: skip


HOSTS = [_host(Role.MANAGER, n) for n in range(3)] + [_host(Role.WORKER, n) for n in range(2)]
_EXPORT = re.compile(r"^export (SW_[A-Z_]+)=('(?:[^']|'\"'\"')*'|\S*)", re.MULTILINE)


def parameters(text: str) -> dict[str, str]:
    """The SW_* parameters of a rendered command, as the host's shell would see them."""
    return {name: shlex.split(value)[0] if value else "" for name, value in _EXPORT.findall(text)}


@dataclass
class FakeSwarm:
    """Managers that answer the API's scripts; `dead` ones answer nothing useful."""

    dead: set[str] = field(default_factory=set)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    refuse: str = ""

    def answer(self, instance_id: str, script: str, text: str) -> tuple[str, int]:
        params = parameters(text)
        self.calls.append((instance_id, script, params))
        if instance_id in self.dead:
            return json.dumps({"error": f"{script}: docker is not answering"}), 1
        if self.refuse and script != "status":  # the manager answers, docker refuses the work
            return json.dumps({"error": f"{script}: {self.refuse}"}), 1
        match script:
            case "status":
                nodes = [
                    NodeStatus(
                        id=f"node-{h.instance_id}",
                        hostname=f"ip-{h.private_ip.replace('.', '-')}",
                        addr=h.private_ip,
                        role=h.role,
                        status="ready",
                        availability="active",
                        leader=h.instance_id == "i-m0",
                        tasks=2 if h.role is Role.WORKER else 0,
                    ).model_dump(mode="json")
                    for h in HOSTS
                ]
                return json.dumps({"swarm_id": "swarm-1", "nodes": nodes}), 0
            case "service-list":
                wanted = params.get("SW_NAME")
                listed = [s for name, s in self.services.items() if wanted in {None, name}]
                return json.dumps({"services": listed}), 0
            case "service-create":
                name = params["SW_NAME"]
                created = name not in self.services
                if created:
                    self.services[name] = {
                        "name": name,
                        "id": f"svc-{name}",
                        "image": params["SW_IMAGE"],
                        "mode": "replicated",
                        "replicas": int(params["SW_REPLICAS"]),
                        "running": 2,
                        "tasks": {"node-i-w0": 1, "node-i-w1": 1},
                    }
                return json.dumps({"name": name, "id": f"svc-{name}", "created": created}), 0
            case "service-rm":
                removed = self.services.pop(params["SW_NAME"], None) is not None
                return json.dumps({"name": params["SW_NAME"], "removed": removed}), 0
        raise AssertionError(f"unexpected script {script}")

    def scripts(self) -> list[str]:
        return [script for _, script, _ in self.calls]


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    swarm: FakeSwarm
    operations: Operations
    store: ClusterStore
    api: ClusterApi
    clock: Clock

    def executions(self) -> list[dict[str, Any]]:
        return boto3.client("stepfunctions").list_executions(stateMachineArn=SCALE_ARN)["executions"]


def _table(name: str, keys: list[tuple[str, str]]) -> None:
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, k in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def world(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "CLUSTER_NAME": CLUSTER,
        "TABLE_NAME": "cluster",
        "TOKEN_PARAMETER_PREFIX": f"/swarmwarden/{CLUSTER}/tokens",
        "IDEMPOTENCY_TABLE_NAME": "idempotency",
        "SCALE_STATE_MACHINE_ARN": SCALE_ARN,
        "MAX_WORKERS": "20",
        "RESOLVE_IMAGE": "never",
        "POLL_INTERVAL_SECONDS": "2",
        "POLL_MAX_ATTEMPTS": "30",
    }.items():
        monkeypatch.setenv(name, value)
    _table("cluster", [("pk", "HASH"), ("sk", "RANGE")])
    _table("idempotency", [("id", "HASH")])
    boto3.client("stepfunctions").create_state_machine(
        name=f"{CLUSTER}-scale",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/scale",
    )
    store = ClusterStore(aws.dynamodb(), "cluster")
    store.put_cluster(SPEC, ClusterStatus.READY, swarm_id="swarm-1")
    nodes = [NodeStatus(id=f"node-{h.instance_id}", hostname="h", addr=h.private_ip, role=h.role, status="ready",
                        availability="active", leader=False) for h in HOSTS]  # fmt: skip
    store.put_nodes(CLUSTER, HOSTS, nodes)
    swarm = FakeSwarm()
    operations = Operations(aws.dynamodb(), "cluster")
    clock = Clock()
    api = ClusterApi(
        Adapters(
            store=store,
            operations=operations,
            runner=RunCommand(FakeSsm(swarm.answer), poll_seconds=0, sleep=lambda _: None),  # type: ignore[arg-type]
            workflows=Workflows(aws.stepfunctions()),
            settings=Settings.from_environment(),
        ),
        clock=clock,
    )
    monkeypatch.setattr(routes, "api", lambda: api)
    routes._idempotency_store.cache_clear()
    yield World(swarm, operations, store, api, clock)
    routes._idempotency_store.cache_clear()


def event(sample: str, *, body: Any = None, key: str | None = "", path: str | None = None) -> dict[str, Any]:
    """A sample event from events/; `body` (JSON unless a str) and `key` (None drops it) override the sample's."""
    loaded: dict[str, Any] = json.loads((EVENTS / f"http-api-v2-{sample}.json").read_text())
    if body is not None:
        loaded["body"] = body if isinstance(body, str) else json.dumps(body)
        loaded["headers"]["content-length"] = str(len(loaded["body"]))
    if key is None:
        loaded["headers"].pop("idempotency-key", None)
    elif key:
        loaded["headers"]["idempotency-key"] = key
    if path is not None:
        name = path.rsplit("/", 1)[-1]
        loaded["rawPath"] = loaded["requestContext"]["http"]["path"] = path
        if "pathParameters" in loaded:
            loaded["pathParameters"] = {next(iter(loaded["pathParameters"])): name}
    return loaded


def call(request: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = api_app.lambda_handler(request, Context())  # type: ignore[arg-type]
    body = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], body, response.get("headers", {})


def assert_error(status: int, body: Any, expected: int, field: str | None = None) -> None:
    assert status == expected, body
    assert isinstance(body["message"], str)
    assert body["message"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body


def capacity(managers: Any = 3, workers: Any = 5, key: str | None = None, **extra: Any) -> dict[str, Any]:
    return event("put-capacity", body={"managers": managers, "workers": workers, **extra}, key=key)


# ------------------------------------------------------------------ GET /cluster


def test_cluster_shows_desired_and_actual_counts_and_every_node(world: World) -> None:
    status, body, _ = call(event("get-cluster"))
    assert status == 200, body
    assert body["desired"] == {"managers": 3, "workers": 2}
    assert body["actual"] == {"managers": 3, "workers": 2}
    assert body["status"] == "ready"
    assert body["operation"] is None
    assert [n["instance_id"] for n in body["nodes"]] == ["i-m0", "i-m1", "i-m2", "i-w0", "i-w1"]
    worker = body["nodes"][3]
    assert worker == {
        "instance_id": "i-w0",
        "role": "worker",
        "az": "us-east-1a",
        "state": "active",
        "node_id": "node-i-w0",
        "hostname": "ip-10-0-1-10",
        "swarm_state": "ready",
        "availability": "active",
        "leader": False,
        "tasks": 2,
    }
    assert body["nodes"][0]["leader"] is True


def test_cluster_names_the_running_operation(world: World) -> None:
    world.operations.create(CLUSTER, Operation(id="op-1", kind=OperationKind.SCALE, request={"workers": 4}))
    world.operations.acquire(CLUSTER, "op-1", OperationKind.SCALE, 600)
    _, body, _ = call(event("get-cluster"))
    assert body["operation"]["id"] == "op-1"
    assert body["operation"]["status"] == "pending"


def test_cluster_asks_the_next_manager_when_one_does_not_answer(world: World) -> None:
    world.swarm.dead = {"i-m0"}
    status, body, _ = call(event("get-cluster"))
    assert status == 200
    assert body["actual"] == {"managers": 3, "workers": 2}
    assert [i for i, script, _ in world.swarm.calls] == ["i-m0", "i-m1"]


def test_cluster_without_an_answering_manager_answers_from_the_table(world: World) -> None:
    world.swarm.dead = {"i-m0", "i-m1", "i-m2"}
    status, body, _ = call(event("get-cluster"))
    assert status == 200
    assert body["actual"] is None
    assert "no manager of demo answered" in body["swarm_error"]
    assert body["nodes"][0]["swarm_state"] is None
    assert len(world.swarm.calls) == 2  # bounded: API Gateway waits 30 s at most


def test_retired_managers_are_not_asked(world: World) -> None:
    world.store.set_node_state(CLUSTER, "i-m0", NodeState.RETIRING)
    call(event("get-cluster"))
    assert world.swarm.calls[0][0] == "i-m1"


def test_cluster_reuses_a_managers_answer_for_a_few_seconds_and_says_when_it_was_seen(world: World) -> None:
    status, first, _ = call(event("get-cluster"))
    assert status == 200
    assert first["swarm_observed_at"] is not None
    world.clock.now += SWARM_VIEW_MAX_AGE_SECONDS
    _, second, _ = call(event("get-cluster"))
    assert world.swarm.scripts() == ["status"]
    assert second == first
    # The table's side is read for every request.
    world.store.set_node_state(CLUSTER, "i-w1", NodeState.RETIRING)
    _, third, _ = call(event("get-cluster"))
    assert third["nodes"][4]["state"] == "retiring"
    assert third["swarm_observed_at"] == first["swarm_observed_at"]
    world.clock.now += 0.1
    _, fresh, _ = call(event("get-cluster"))
    assert world.swarm.scripts() == ["status", "status"]
    assert fresh["swarm_observed_at"] > first["swarm_observed_at"]


def test_cluster_asks_again_at_once_after_no_manager_answered(world: World) -> None:
    world.swarm.dead = {"i-m0", "i-m1", "i-m2"}
    _, down, _ = call(event("get-cluster"))
    assert (down["actual"], down["swarm_observed_at"]) == (None, None)
    world.swarm.dead = set()
    _, up, _ = call(event("get-cluster"))
    assert up["actual"] == {"managers": 3, "workers": 2}
    assert up["swarm_error"] is None


def test_cluster_not_provisioned_is_404(world: World) -> None:
    world.store.set_status(CLUSTER, ClusterStatus.DELETED)
    assert_error(*call(event("get-cluster"))[:2], 404)


# ------------------------------------------------------------------ PUT /cluster/capacity


def test_scale_starts_the_workflow_under_the_operation_id(world: World) -> None:
    status, body, headers = call(capacity(3, 5, key=None))
    assert status == 202, body
    op_id = body["operation_id"]
    assert body["status"] == "pending"
    assert headers["Location"] == f"/operations/{op_id}"
    (execution,) = world.executions()
    assert execution["name"] == op_id
    described = boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    payload = json.loads(described["input"])
    # The contract with the scale workflow (docs/architecture.md, "Workflow inputs").
    assert set(payload) == {"spec", "operation_id", "poll"}
    assert payload["operation_id"] == op_id
    assert payload["poll"] == {"interval_seconds": 2, "max_attempts": 30}
    assert ClusterSpec.model_validate(payload["spec"]) == SPEC.model_copy(update={"workers": 5})
    operation = world.operations.get(CLUSTER, op_id)
    assert operation is not None
    assert operation.request == {"managers": 3, "workers": 5}
    assert operation.execution_arn == execution["executionArn"]
    assert [s.name for s in operation.steps] == ["workflow started"]
    assert [lock.operation_id for lock in world.operations.holders(CLUSTER)] == [op_id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"managers": 2, "workers": 2}, "managers"),
        ({"managers": 4, "workers": 2}, "managers"),
        ({"managers": "three", "workers": 2}, "managers"),
        ({"managers": 3, "workers": -1}, "workers"),
        ({"managers": 3, "workers": 21}, "workers"),  # MAX_WORKERS is 20
        ({"managers": 3, "workers": 101}, "workers"),
        ({"managers": 3, "workers": "many"}, "workers"),
        ({"managers": 3, "workers": 2.5}, "workers"),
        ({"managers": 3, "workers": None}, "workers"),
        ({"workers": 2}, "managers"),
        ({"managers": 3}, "workers"),
        ({"managers": 3, "workers": 2, "instance_type": "t3.large"}, "instance_type"),
        ([3, 2], "body"),
        ("null", "body"),
    ],
)
def test_bad_capacity_is_422_naming_the_field(world: World, body: Any, field: str) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    status, answer, _ = call(event("put-capacity", body=raw, key=None))
    assert_error(status, answer, 422, field)
    assert world.executions() == []
    assert world.operations.holders(CLUSTER) == []


@pytest.mark.parametrize("raw", ["{", "managers=3", "\x00"])
def test_a_body_that_is_not_json_is_400(world: World, raw: str) -> None:
    assert_error(*call(event("put-capacity", body=raw, key=None))[:2], 400, "body")


@pytest.mark.parametrize("sample", ["put-capacity", "create-service"])
def test_a_body_that_is_not_utf8_is_400(world: World, sample: str) -> None:
    # API Gateway base64-encodes such a body; the fuzz test found it answered 500.
    request = event(sample, body=base64.b64encode(b"\xb1\x0e{").decode(), key=None)
    request["isBase64Encoded"] = True
    assert_error(*call(request)[:2], 400, "body")
    assert world.executions() == []


def test_no_body_is_422(world: World) -> None:
    request = event("put-capacity", key=None)
    del request["body"]
    assert_error(*call(request)[:2], 422, "body")


def test_errors_never_echo_the_input(world: World) -> None:
    _, body, _ = call(capacity(3, "secret-ish-value"))
    assert "secret-ish-value" not in json.dumps(body)


def test_bad_idempotency_key_is_422(world: World) -> None:
    assert_error(*call(capacity(3, 5, key="has space"))[:2], 422, "idempotency-key")


def test_scale_while_another_operation_runs_is_409_naming_it(world: World) -> None:
    world.operations.acquire(CLUSTER, "op-repair-1", OperationKind.REPAIR, 600)
    status, body, _ = call(capacity(3, 5, key=None))
    assert_error(status, body, 409)
    assert body["operation_id"] == "op-repair-1"
    assert "op-repair-1" in body["message"]
    assert world.executions() == []


def test_same_key_returns_the_same_operation_and_starts_one_workflow(world: World) -> None:
    first = call(capacity(3, 5, key="key-1"))
    again = call(capacity(3, 5, key="key-1"))
    assert first[0] == again[0] == 202
    assert first[1]["operation_id"] == again[1]["operation_id"] == operation_id("key-1", CLUSTER)
    assert len(world.executions()) == 1


def test_same_key_is_the_same_operation_even_after_the_idempotency_record_expired(world: World) -> None:
    first = call(capacity(3, 5, key="key-1"))
    boto3.client("dynamodb").delete_table(TableName="idempotency")
    _table("idempotency", [("id", "HASH")])
    again = call(capacity(3, 5, key="key-1"))
    assert again[:2] == (202, first[1])
    assert len(world.executions()) == 1


def test_same_key_with_another_body_is_422(world: World) -> None:
    call(capacity(3, 5, key="key-1"))
    assert_error(*call(capacity(3, 6, key="key-1"))[:2], 422, "Idempotency-Key")
    assert len(world.executions()) == 1


def test_a_duplicate_arriving_while_the_first_is_in_progress_is_409(world: World) -> None:
    # The first request holds its Idempotency-Key record while it starts the workflow; a duplicate
    # in another execution environment (here: the use case, below the process-wide handler lock) waits.
    started, release = threading.Event(), threading.Event()
    original = world.api._a.workflows.start

    def slow_start(*args: Any) -> str:
        started.set()
        release.wait(10)
        return original(*args)

    world.api._a.workflows.start = slow_start  # type: ignore[method-assign]
    first: list[Any] = []
    thread = threading.Thread(target=lambda: first.append(call(capacity(3, 5, key="key-1"))))
    thread.start()
    assert started.wait(10)
    routes.app.lambda_context = Context()  # type: ignore[assignment]
    with pytest.raises(routes.IdempotencyAlreadyInProgressError):
        routes._once("scale", "key-1", {"managers": 3, "workers": 5}, lambda: {})
    release.set()
    thread.join(10)
    assert first[0][0] == 202
    assert len(world.executions()) == 1


def at_once[T](work: Callable[[int], T], count: int = 10) -> list[T | Exception]:
    """`work(0..count-1)` on as many threads, released together; each result or exception."""
    barrier = threading.Barrier(count)

    def one(index: int) -> T | Exception:
        barrier.wait(10)
        try:
            return work(index)
        except Exception as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_ten_concurrent_requests_one_operation_nine_conflicts(world: World) -> None:
    results = at_once(lambda i: call(capacity(3, 3 + i, key=f"key-{i}")))
    answers = [r for r in results if not isinstance(r, Exception)]
    assert sorted(status for status, _, _ in answers) == [202] + [409] * 9
    winner = next(body["operation_id"] for status, body, _ in answers if status == 202)
    assert all(body["operation_id"] == winner for status, body, _ in answers if status == 409)
    assert len(world.executions()) == 1


def test_ten_concurrent_scales_below_the_handler_one_wins(world: World) -> None:
    """The guarantee on AWS, where each request has its own environment: the DynamoDB lock alone."""
    results = at_once(lambda i: world.api.scale(Capacity(managers=3, workers=3 + i), None))
    assert sum(isinstance(r, Conflict) for r in results) == 9
    assert [r[0] for r in results if isinstance(r, tuple)] == [202]
    assert len(world.executions()) == 1


def test_scale_to_the_desired_counts_is_200_and_starts_nothing(world: World) -> None:
    status, body, _ = call(capacity(3, 2, key=None))
    assert status == 200
    assert body["operation_id"] is None
    assert body["status"] == "unchanged"
    assert world.executions() == []


def test_a_workflow_that_cannot_start_releases_the_lock_and_fails_the_operation(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("stepfunctions").delete_state_machine(stateMachineArn=SCALE_ARN)
    status, body, _ = call(capacity(3, 5, key="key-1"))
    assert_error(status, body, 503)
    assert world.operations.holders(CLUSTER) == []
    operation = world.operations.get(CLUSTER, operation_id("key-1", CLUSTER))
    assert operation is not None
    assert operation.status is OperationStatus.FAILED
    assert operation.error


def test_scale_of_a_cluster_still_provisioning_is_409(world: World) -> None:
    world.store.set_status(CLUSTER, ClusterStatus.PROVISIONING)
    assert_error(*call(capacity(3, 5, key=None))[:2], 409)


# ------------------------------------------------------------------ GET /operations/{id}


def test_operation_shows_status_steps_and_error(world: World) -> None:
    world.operations.create(CLUSTER, Operation(id="op-3f2a9c1d", kind=OperationKind.SCALE, request={"workers": 4}))
    world.operations.update(CLUSTER, "op-3f2a9c1d", step="plan", status=OperationStatus.RUNNING)
    world.operations.update(CLUSTER, "op-3f2a9c1d", step="launch", status=OperationStatus.FAILED, error="no capacity")
    status, body, _ = call(event("get-operation"))
    assert status == 200, body
    assert body["id"] == "op-3f2a9c1d"
    assert body["status"] == "failed"
    assert body["error"] == "no capacity"
    assert [s["name"] for s in body["steps"]] == ["plan", "launch"]
    assert all(s["at"] for s in body["steps"])
    assert "execution_arn" not in body


def test_unknown_operation_is_404(world: World) -> None:
    assert_error(*call(event("get-operation"))[:2], 404)


def test_malformed_operation_id_is_422(world: World) -> None:
    assert_error(*call(event("get-operation", path="/operations/op%20x"))[:2], 422, "operation_id")


# ------------------------------------------------------------------ services

SERVICE = json.loads((EVENTS / "http-api-v2-create-service.json").read_text())["body"]


def service(key: str | None = None, **changes: Any) -> dict[str, Any]:
    return event("create-service", body=json.loads(SERVICE) | changes, key=key)


def test_create_service_runs_the_script_on_a_manager_with_each_item_on_its_own_line(world: World) -> None:
    status, body, headers = call(service(env={"GREETING": "hello world", "QUOTED": "it's $HOME `x`"}))
    assert status == 201, body
    assert body == {"name": "web", "id": "svc-web", "image": "swarmwarden/busybox:local", "replicas": 2}
    assert headers["Location"] == "/services/web"
    instance, script, params = world.swarm.calls[-1]
    assert (instance, script) == ("i-m0", "service-create")
    assert params["SW_ENV"] == "GREETING=hello world\nQUOTED=it's $HOME `x`"
    assert params["SW_COMMAND"] == "httpd\n-f\n-p\n8080"
    assert params["SW_PORTS"] == "8080:8080:tcp"
    assert params["SW_CONSTRAINTS"] == "node.role==worker"
    assert params["SW_RESOLVE_IMAGE"] == "never"


def test_create_an_existing_service_is_409(world: World) -> None:
    assert call(service(key=None))[0] == 201
    assert_error(*call(service(key=None))[:2], 409)


def test_retried_create_with_the_same_key_answers_the_same_and_creates_once(world: World) -> None:
    first = call(service(key="svc-key"))
    again = call(service(key="svc-key"))
    assert first[:2] == again[:2]
    assert first[0] == 201
    assert world.swarm.scripts().count("service-create") == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "-web"}, "name"),
        ({"name": "web/1"}, "name"),
        ({"name": "w" * 64}, "name"),
        ({"name": ""}, "name"),
        ({"image": "Not An Image"}, "image"),
        ({"image": "busybox:"}, "image"),
        ({"image": "busybox:t\u00e9st"}, "image"),  # docker's tags are ASCII
        ({"image": "UPPER/case"}, "image"),
        ({"image": ""}, "image"),
        ({"replicas": -1}, "replicas"),
        ({"replicas": "two"}, "replicas"),
        ({"ports": [{"published": 0, "target": 80}]}, "ports.0.published"),
        ({"ports": [{"published": 80, "target": 80, "protocol": "icmp"}]}, "ports.0.protocol"),
        ({"ports": [{"published": 80, "target": 80, "mode": "ingress"}]}, "ports.0.mode"),
        ({"ports": [{"published": 80, "target": 80}, {"published": 80, "target": 81}]}, "ports"),
        ({"env": {"BAD-NAME": "x"}}, "env.BAD-NAME.[key]"),
        ({"env": {"A": "two\nlines"}}, "env.A"),
        ({"command": ["sh", "-c", "a\nb"]}, "command.2"),
        ({"command": ["x" * 1000] * 5}, "command"),
        ({"env": {f"K{i}": "v" * 1000 for i in range(9)}}, "env"),
        ({"constraints": ["node.role=worker"]}, "constraints.0"),
        ({"constraints": ["rm -rf /"]}, "constraints.0"),
        ({"mounts": ["/:/host"]}, "mounts"),
    ],
)
def test_bad_service_is_422_naming_the_field(world: World, changes: dict[str, Any], field: str) -> None:
    assert_error(*call(service(key=None, **changes))[:2], 422, field)
    assert "service-create" not in world.swarm.scripts()


def test_services_list_tasks_per_node_with_instance_ids(world: World) -> None:
    call(service(key=None))
    status, body, _ = call(event("list-services"))
    assert status == 200, body
    (web,) = body["services"]
    assert web["name"] == "web"
    assert web["replicas"] == 2
    assert web["running"] == 2
    assert web["tasks"] == [
        {"node_id": "node-i-w0", "instance_id": "i-w0", "running": 1},
        {"node_id": "node-i-w1", "instance_id": "i-w1", "running": 1},
    ]


def test_get_service_and_404(world: World) -> None:
    assert_error(*call(event("get-service"))[:2], 404)
    call(service(key=None))
    status, body, _ = call(event("get-service"))
    assert status == 200
    assert body["name"] == "web"
    assert world.swarm.calls[-1][2] == {"SW_NAME": "web"}
    assert_error(*call(event("get-service", path="/services/-bad"))[:2], 422, "name")


def test_delete_service_is_204_then_404(world: World) -> None:
    call(service(key=None))
    status, body, _ = call(event("delete-service"))
    assert (status, body) == (204, None)
    assert "web" not in world.swarm.services
    assert_error(*call(event("delete-service"))[:2], 404)


def test_no_manager_answering_is_503(world: World) -> None:
    world.swarm.dead = {"i-m0", "i-m1", "i-m2"}
    for request in (event("list-services"), service(key=None), event("delete-service")):
        assert_error(*call(request)[:2], 503)


def test_a_refusing_swarm_is_502_with_its_reason(world: World) -> None:
    world.swarm.refuse = "rpc error: the swarm does not have a leader"
    for request in (event("list-services"), service(key=None), event("delete-service")):
        status, body, _ = call(request)
        assert_error(status, body, 502)
        assert "does not have a leader" in body["message"]


def test_an_unknown_route_is_404_json(world: World) -> None:
    request = event("get-cluster", path="/nothing")
    request["routeKey"] = "$default"
    assert_error(*call(request)[:2], 404)
