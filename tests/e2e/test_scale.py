"""Scaling through the HTTP API on real dockerd hosts: out from 2 to 5 workers, in from 5 to 2 while the
service's replicas are sampled through the Docker SDK, then 10 concurrent requests.

The tests run in file order on one cloud (1 manager, 2 workers). A retried request with the same
Idempotency-Key is test_services.py's (it scales through this workflow too).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import pytest
from swarmwarden.adapters.store import ClusterStore

from localcloud import apiclient
from localcloud.cloud import LocalCloud
from localcloud.image import IMAGE
from tests.e2e.conftest import start_cloud

pytestmark = pytest.mark.slow
PREFIX = "sws"
CLUSTER = "swarmwarden"
# A VPC range of its own, so that this cloud can run beside the others'.
PARAMETERS = {"ManagerCount": "1", "WorkerCount": "2", "MaxWorkers": "5", "VpcCidr": "10.83.0.0/16"}
SERVICE = "web"
REPLICAS = 4
SCALE_SECONDS = 240.0
# Figures for the report, printed at the end of the module (pytest -s shows them).
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    yield from start_cloud(PREFIX, parameters=PARAMETERS)
    if FIGURES:
        print(f"\nscale figures: {FIGURES}")


@pytest.fixture(scope="module")
def api(cloud: LocalCloud) -> apiclient.Api:
    cloud.up(timeout=600)
    return apiclient.Api.local(cloud.api_url, cloud.config.region, timeout=60)


@pytest.fixture(scope="module")
def swarm(cloud: LocalCloud, api: apiclient.Api) -> Iterator[docker.DockerClient]:
    """The Docker SDK on the manager (never removed: the only one), and the service that must keep running."""
    (manager,) = [cloud.hosts[v.instance_id] for v in cloud.nodes() if v.role == "manager"]
    manager.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
        "--replicas", str(REPLICAS), IMAGE, "sleep", "1000000",
    )  # fmt: skip
    client = docker.DockerClient(base_url=manager.docker_host, timeout=10)
    _settle(client)
    yield client
    client.close()


def _running(client: docker.DockerClient) -> int:
    """Tasks that run and are meant to: a task being replaced (desired shutdown) no longer counts."""
    tasks = client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
    return sum(t["Status"]["State"] == "running" for t in tasks)


def _settle(client: docker.DockerClient) -> None:
    deadline = time.monotonic() + 120
    while _running(client) < REPLICAS or client.services.get(SERVICE).attrs.get("UpdateStatus", {}).get("State") in {
        "updating",
        "rollback_started",
    }:
        assert time.monotonic() < deadline, "the service did not settle"
        time.sleep(1)


def _scale(api: apiclient.Api, workers: int) -> dict[str, Any]:
    """Requests the counts, follows the operation to its end, and says how long that took."""
    started = time.monotonic()
    accepted = api.request("PUT", "/cluster/capacity", {"managers": 1, "workers": workers})
    operation_id = accepted["operation_id"]
    while True:
        operation: dict[str, Any] = api.request("GET", f"/operations/{operation_id}")
        if operation["status"] in {"succeeded", "failed"}:
            return operation | {"seconds": round(time.monotonic() - started, 1)}
        assert time.monotonic() - started < SCALE_SECONDS, f"still {operation['status']}: {operation['steps']}"
        time.sleep(1)


def _consistent(cloud: LocalCloud, client: docker.DockerClient) -> dict[str, int]:
    """Instances, swarm nodes and DynamoDB node records are the same hosts; returns the counts by role."""
    pages = (
        cloud.client("ec2")
        .get_paginator("describe_instances")
        .paginate(
            Filters=[
                {"Name": "tag:swarmwarden:cluster", "Values": [CLUSTER]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
            ]
        )
    )
    instances = {
        i["PrivateIpAddress"]: i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]
    }
    nodes = {n.attrs["Status"]["Addr"]: n.attrs["Spec"]["Role"] for n in client.nodes.list()}
    store = ClusterStore(cloud.client("dynamodb"), cloud.outputs()["ClusterTableName"])
    records = store.nodes(CLUSTER)
    assert set(nodes) == set(instances), (nodes, instances)
    assert {r.instance_id for r in records} == set(instances.values())
    assert all(r.state.value == "active" for r in records)
    assert all(nodes[r.private_ip] == r.role.value for r in records)
    spec = store.cluster(CLUSTER)
    assert spec is not None
    roles = [r.role.value for r in records]
    assert (spec.spec.managers, spec.spec.workers) == (roles.count("manager"), roles.count("worker"))
    return {"managers": roles.count("manager"), "workers": roles.count("worker")}


def _assert_no_repair_for_our_own_terminations(cloud: LocalCloud, retired: int) -> None:
    """The repair trigger saw the retired instances terminate (EventBridge delivers asynchronously, so
    wait for it, bounded) and started nothing."""
    deadline = time.monotonic() + 30
    while True:
        seen = [
            json.loads(i.payload)["detail"]["instance-id"]
            for i in list(cloud.runtime.invocations)
            if i.function == "RepairTriggerFunction" and '"terminated"' in i.payload
        ]
        if len(set(seen)) >= retired or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(set(seen)) >= retired, f"the trigger saw {len(set(seen))} terminations, expected {retired}"
    outcomes = [
        json.loads(i.response).get("outcome")
        for i in cloud.runtime.invocations
        if i.function == "RepairTriggerFunction"
    ]
    assert "started" not in outcomes, outcomes
    assert [e["name"] for e in cloud.executions() if e["machine"].endswith("-repair")] == []


def test_scale_out_from_2_to_5_workers(cloud: LocalCloud, api: apiclient.Api, swarm: docker.DockerClient) -> None:
    assert _consistent(cloud, swarm) == {"managers": 1, "workers": 2}
    operation = _scale(api, 5)
    assert operation["status"] == "succeeded", operation
    assert [s["name"] for s in operation["steps"]][-3:] == ["planned", "joined", "done"]
    assert _consistent(cloud, swarm) == {"managers": 1, "workers": 5}
    FIGURES["scale_out_seconds"] = operation["seconds"]
    # The rebalance's forced update (stop-first) may still be rolling: let it finish before the scale-in.
    _settle(swarm)


def test_scale_in_from_5_to_2_never_drops_below_the_desired_replicas(
    cloud: LocalCloud, api: apiclient.Api, swarm: docker.DockerClient
) -> None:
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_running(swarm))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        operation = _scale(api, 2)
    finally:
        stop.set()
        sampler.join(timeout=10)
    assert operation["status"] == "succeeded", operation
    assert [s["name"] for s in operation["steps"]][-3:] == ["planned", "removed", "done"]
    assert len(samples) > 10
    assert min(samples) >= REPLICAS, samples
    assert _consistent(cloud, swarm) == {"managers": 1, "workers": 2}
    _assert_no_repair_for_our_own_terminations(cloud, retired=3)
    # Whether a leaving node ran a task of the service: then the evacuation moved it start-first.
    moved = swarm.services.get(SERVICE).attrs["Spec"].get("UpdateConfig", {}).get("Order") == "start-first"
    FIGURES.update(
        scale_in_seconds=operation["seconds"], min_replicas=min(samples), samples=len(samples), tasks_moved=moved
    )


def test_ten_concurrent_requests_run_one_operation_and_refuse_the_rest(
    cloud: LocalCloud, api: apiclient.Api, swarm: docker.DockerClient
) -> None:
    barrier = threading.Barrier(10)

    def request(_: int) -> tuple[int, Any]:
        barrier.wait()
        try:
            return 202, api.request("PUT", "/cluster/capacity", {"managers": 1, "workers": 3})
        except apiclient.ApiError as error:
            return error.status or 0, str(error)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(request, range(10)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] + [409] * 9, answers
    (accepted,) = [answer for status, answer in answers if status == 202]
    deadline = time.monotonic() + SCALE_SECONDS
    while (operation := api.request("GET", f"/operations/{accepted['operation_id']}"))["status"] not in {
        "succeeded",
        "failed",
    }:
        assert time.monotonic() < deadline, operation
        time.sleep(1)
    assert operation["status"] == "succeeded", operation
    assert _consistent(cloud, swarm) == {"managers": 1, "workers": 3}
    scales = [e for e in cloud.executions() if e["machine"].endswith("-scale")]
    assert len(scales) == 3, scales  # out, in, and the one of the ten
