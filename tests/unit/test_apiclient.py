"""The API client CLI against the local HTTP API server (real SigV4 verification) and a scripted function."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws
from swarmwarden.adapters.operations import OperationStatus

from localcloud import apiclient
from localcloud.cli import _parser, main
from localcloud.httpapi import HttpApiServer
from localcloud.template import Route

REGION, ACCOUNT = "us-east-1", "123456789012"
API_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:swarmwarden-api"
ROUTES = [
    Route(method, path, API_ARN)
    for method, path in (
        ("GET", "/cluster"),
        ("PUT", "/cluster/capacity"),
        ("GET", "/operations/{id}"),
        ("GET", "/services"),
        ("POST", "/services"),
        ("GET", "/services/{name}"),
        ("DELETE", "/services/{name}"),
    )
]
Answer = tuple[int, Any]


@dataclass
class ScriptedApi:
    """Answers each route key with the next of its scripted answers (the last one repeats)."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, function_arn: str, event: dict[str, Any]) -> tuple[Any, str | None]:
        self.events.append(event)
        queue = self.answers[event["routeKey"]]
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}, None


@pytest.fixture
def api() -> Iterator[tuple[ScriptedApi, str]]:
    function = ScriptedApi()
    server = HttpApiServer(ROUTES, function, region=REGION, account=ACCOUNT)
    server.start()
    try:
        yield function, server.url
    finally:
        server.stop()


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(api: tuple[ScriptedApi, str], capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        # Before any `--`, after which everything is the service's command.
        end = argv.index("--") if "--" in argv else len(argv)
        code = main([*argv[:end], "--api", api[1], *argv[end:]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


NODE = {"node_id": "n1", "hostname": "ip-10-0-0-1", "swarm_state": "ready", "availability": "active", "leader": False}
# Shaped as docs/api.md shows the API's answers.
CLUSTER = {
    "name": "demo",
    "status": "ready",
    "desired": {"managers": 1, "workers": 2},
    "actual": {"managers": 1, "workers": 1},
    "nodes": [
        NODE
        | {"instance_id": "i-0aa", "role": "manager", "az": "us-east-1a", "state": "active", "tasks": 2}
        | {"leader": True},
        NODE
        | {"instance_id": "i-0bb", "role": "worker", "az": "us-east-1b", "state": "active", "tasks": 1}
        | {"availability": "drain"},
    ],
    "operation": {"id": "op-7", "kind": "scale", "status": "running", "request": {}, "steps": [], "error": None},
    "swarm_error": None,
}


def test_status_is_signed_and_shown_as_json_or_a_table(api: tuple[ScriptedApi, str], run: Run) -> None:
    function, _ = api
    function.answers["GET /cluster"] = [(200, CLUSTER)]
    code, out, _ = run("status", "--json")
    assert (code, json.loads(out)) == (0, CLUSTER)
    # The server let it through: the signature verified, and API Gateway's IAM caller reached the function.
    assert function.events[0]["requestContext"]["authorizer"]["iam"]["accessKey"] == "testing"
    code, out, _ = run("status")
    assert code == 0
    assert "cluster demo: ready; managers + workers wanted 1 + 2, ready 1 + 1" in out
    assert "operation op-7: scale running" in out
    assert "ready/leader" in out
    assert "ready/drain" in out
    assert "us-east-1b" in out


def test_scale_sends_the_counts_and_an_idempotency_key(api: tuple[ScriptedApi, str], run: Run) -> None:
    function, _ = api
    function.answers["PUT /cluster/capacity"] = [(202, {"operation_id": "op-1", "status": "pending", "message": ""})]
    code, out, _ = run("scale", "--managers", "3", "--workers", "2", "--idempotency-key", "k-1")
    assert code == 0
    assert "operation op-1 accepted, pending (Idempotency-Key k-1)" in out
    event = function.events[-1]
    assert json.loads(event["body"]) == {"managers": 3, "workers": 2}
    assert event["headers"]["idempotency-key"] == "k-1"
    # Without --idempotency-key, each invocation gets a key of its own.
    run("scale", "--managers", "3", "--workers", "2")
    run("scale", "--managers", "3", "--workers", "2")
    keys = {e["headers"]["idempotency-key"] for e in function.events}
    assert len(keys) == 3


def test_scale_to_the_current_counts_starts_nothing(api: tuple[ScriptedApi, str], run: Run) -> None:
    unchanged = {"operation_id": None, "status": "unchanged", "message": "already 1 managers and 1 workers"}
    api[0].answers["PUT /cluster/capacity"] = [(200, unchanged)]
    assert run("scale", "--managers", "1", "--workers", "1", "--wait") == (0, unchanged["message"] + "\n", "")


@pytest.mark.parametrize(("final", "code"), [("succeeded", 0), ("failed", 1)])
def test_scale_wait_follows_the_steps_until_the_operation_ends(
    api: tuple[ScriptedApi, str], run: Run, final: str, code: int
) -> None:
    function, _ = api
    function.answers["PUT /cluster/capacity"] = [(202, {"operation_id": "op-2", "status": "pending", "message": ""})]
    step = {"name": "plan", "at": "2026-11-27T06:00:00Z", "detail": "out by 1 worker"}
    function.answers["GET /operations/{id}"] = [
        (200, {"id": "op-2", "status": "running", "steps": []}),
        (200, {"id": "op-2", "status": "running", "steps": [step]}),
        (200, {"id": "op-2", "status": final, "steps": [step], "error": "boom" if final == "failed" else None}),
    ]
    result, out, _ = run("scale", "--managers", "1", "--workers", "1", "--wait", "--poll", "0.01")
    assert result == code
    assert out.count("2026-11-27T06:00:00Z  plan  out by 1 worker") == 1
    assert f"operation op-2: {final}" in out
    assert ("boom" in out) == (final == "failed")
    assert function.events[-1]["pathParameters"] == {"id": "op-2"}


def test_the_final_statuses_are_the_operations_own() -> None:
    assert {OperationStatus.SUCCEEDED, OperationStatus.FAILED} == apiclient.FINAL_STATUSES
    assert apiclient.SUCCEEDED == OperationStatus.SUCCEEDED


def test_wait_gives_up_after_its_timeout(api: tuple[ScriptedApi, str]) -> None:
    function, url = api
    function.answers["GET /operations/{id}"] = [(200, {"id": "op-3", "status": "running", "steps": []})]
    target = apiclient.Api.local(url)
    with pytest.raises(apiclient.ApiError, match="still running after 5 s") as raised:
        apiclient.wait_for(target, "op-3", timeout=5, poll=1, sleep=lambda _s: None)
    assert raised.value.exit_code == 1


@pytest.mark.parametrize(
    ("status", "body", "code", "expected"),
    [
        (
            422,
            {"message": "invalid request", "errors": [{"field": "managers", "problem": "must be 1, 3, 5 or 7"}]},
            2,
            ["HTTP 422: invalid request", "managers: must be 1, 3, 5 or 7"],
        ),
        (
            409,
            {"message": "a scale is running", "errors": [], "operation_id": "op-9"},
            2,
            ["HTTP 409: a scale is running (operation op-9)"],
        ),
        (503, {"message": "no manager answered", "errors": []}, 1, ["HTTP 503: no manager answered"]),
        (500, "oops", 1, ["HTTP 500: oops"]),
    ],
)
def test_errors_show_the_message_and_fields_and_exit_by_kind(
    api: tuple[ScriptedApi, str], run: Run, status: int, body: Any, code: int, expected: list[str]
) -> None:
    api[0].answers["PUT /cluster/capacity"] = [(status, body)]
    result, out, err = run("scale", "--managers", "2", "--workers", "1")
    assert (result, out) == (code, "")
    for text in expected:
        assert text in err


def test_a_field_the_message_names_already_is_not_repeated(api: tuple[ScriptedApi, str], run: Run) -> None:
    problem = {"field": "workers", "problem": "must be at most 5"}
    body = {"message": "workers: must be at most 5", "errors": [problem, problem | {"field": "managers"}]}
    api[0].answers["PUT /cluster/capacity"] = [(422, body)]
    _, _, err = run("scale", "--managers", "1", "--workers", "9")
    assert err.count("workers: must be at most 5") == 1
    assert "\n  managers: must be at most 5\n" in err


def test_services_create_show_list_delete(api: tuple[ScriptedApi, str], run: Run) -> None:
    function, _ = api
    tasks = [
        {"node_id": "n1", "instance_id": "i-0aa", "running": 1},
        {"node_id": "n2", "instance_id": None, "running": 1},
    ]
    service = {"name": "web", "id": "s1", "image": "swarmwarden/busybox:local", "mode": "replicated"}
    service |= {"replicas": 2, "running": 2, "tasks": tasks}
    function.answers |= {
        "POST /services": [(201, service)],
        "GET /services": [(200, {"services": [service]})],
        "GET /services/{name}": [(200, service)],
        "DELETE /services/{name}": [(200, {"name": "web", "deleted": True})],
    }
    argv = ["services", "create", "--name", "web", "--image", "swarmwarden/busybox:local", "--replicas", "2"]
    extra = ["--port", "8080:80", "--port", "5353:53/udp", "--env", "A=1", "--env", "B=x=y"]
    extra += ["--constraint", "node.role==worker", "--json", "--", "sleep", "--long", "1000"]
    code, out, _ = run(*argv, *extra)
    assert (code, json.loads(out)) == (0, service)
    assert json.loads(function.events[-1]["body"]) == {
        "name": "web",
        "image": "swarmwarden/busybox:local",
        "replicas": 2,
        "ports": [
            {"published": 8080, "target": 80, "protocol": "tcp"},
            {"published": 5353, "target": 53, "protocol": "udp"},
        ],
        "env": {"A": "1", "B": "x=y"},
        "constraints": ["node.role==worker"],
        "command": ["sleep", "--long", "1000"],
    }
    code, out, _ = run("services", "list")
    assert code == 0
    assert "i-0aa:1 n2:1" in out
    code, out, _ = run("services", "show", "web")
    assert code == 0
    assert "swarmwarden/busybox:local" in out
    assert function.events[-1]["pathParameters"] == {"name": "web"}
    assert run("services", "delete", "web")[:2] == (0, "deleted web\n")
    assert function.events[-1]["routeKey"] == "DELETE /services/{name}"


@pytest.mark.parametrize(
    "argv",
    [
        ["scale", "--managers", "3"],
        ["services", "create", "--name", "x", "--image", "y", "--port", "80"],
        ["services", "create", "--name", "x", "--image", "y", "--env", "NOVALUE"],
        ["services"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 2


def test_an_unreachable_api_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 on loopback: nothing listens (discard is never served here).
    assert main(["status", "--api", "http://127.0.0.1:9", "--request-timeout", "2"]) == 1
    assert "no answer" in capsys.readouterr().err


def test_a_local_cloud_prefix_is_checked_before_it_names_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--prefix", "../etc"]) == 2
    assert "--prefix '../etc' must be" in capsys.readouterr().err


def test_a_deployed_stack_is_found_through_its_outputs_and_signed_with_the_callers_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    # Local clouds other tests run on this machine must not count.
    monkeypatch.setattr(apiclient, "_local_api", lambda _prefix: None)
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": url}},
    }
    with mock_aws():
        # Inside mock_aws, which sets fake credentials of its own.
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="swarmwarden", TemplateBody=json.dumps(template)
        )
        target = apiclient.resolve(_parser().parse_args(["status"]))
        with pytest.raises(apiclient.ApiError, match="stack other in eu-west-1"):
            apiclient.resolve(_parser().parse_args(["status", "--stack", "other"]))
    assert target == apiclient.Api(url, "eu-west-1", "AKIAEXAMPLE", "secret", "token")
    # The region of an execute-api URL is the one to sign for.
    direct = apiclient.resolve(_parser().parse_args(["status", "--api", url.replace("eu-west-1", "ap-south-1")]))
    assert direct.region == "ap-south-1"
