"""Repair's smoke test on real hosts: a worker of a 1-manager, 2-worker cluster is terminated, and
the EC2 event alone gets it replaced, once, in its AZ, with the service back to full strength.

(5b's test_self_healing.py covers the leader, duplicates, our own terminations and the breaker.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localcloud.cloud import LocalCloud
from localcloud.image import IMAGE
from tests.e2e.conftest import start_cloud

pytestmark = pytest.mark.slow
PREFIX = "swr"
SERVICE = "web"
REPLICAS = 4


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    # A VPC range of its own, so it can run next to the other e2e clouds.
    yield from start_cloud(PREFIX, parameters={"ManagerCount": "1", "WorkerCount": "2", "VpcCidr": "10.61.0.0/16"})


def wait_for[T](what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def explain(cloud: LocalCloud) -> str:
    """The repair executions' failures and the functions' errors, for a failing assertion."""
    sfn, lines = cloud.client("stepfunctions"), []
    for execution in cloud.executions():
        lines.append(f"{execution['machine']} {execution['name']}: {execution['status']}")
        for event in sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]:
            if event["type"].endswith("Failed"):
                details = next((v for k, v in event.items() if k.endswith("Details")), {})
                lines.append(f"  {event['type']}: {str(details)[:400]}")
    for call in cloud.runtime.invocations:
        if call.error_type:
            lines.append(f"{call.function}.{call.action}: {call.error_type}: {call.response[:400]}")
    return "\n".join(lines)


def manager(cloud: LocalCloud) -> Any:
    (view,) = [v for v in cloud.nodes(with_swarm=False) if v.role == "manager" and v.state == "running"]
    return cloud.hosts[view.instance_id]


def swarm_nodes(cloud: LocalCloud) -> list[dict[str, Any]]:
    import docker

    client = docker.DockerClient(base_url=manager(cloud).docker_host, timeout=10)
    try:
        return [n.attrs for n in client.nodes.list()]
    finally:
        client.close()


def running_replicas(cloud: LocalCloud) -> int:
    out = manager(cloud).docker(
        "service", "ps", SERVICE, "--filter", "desired-state=running", "--format", "{{.CurrentState}}"
    )
    return sum(line.startswith("Running") for line in out.stdout.splitlines())


def test_a_killed_worker_is_replaced_once_in_its_az_and_the_service_converges(cloud: LocalCloud) -> None:
    try:
        repaired(cloud)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{explain(cloud)}") from None


def repaired(cloud: LocalCloud) -> None:
    cloud.up(timeout=600)
    manager(cloud).docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
        "--replicas", str(REPLICAS), "--stop-grace-period", "1s", IMAGE, "sleep", "1000000",
    )  # fmt: skip
    wait_for("the service at full strength", lambda: True if running_replicas(cloud) == REPLICAS else None, 120)
    before = {v.instance_id: v for v in cloud.nodes(with_swarm=False) if v.state == "running"}
    victim = next(v for v in sorted(before.values(), key=lambda v: v.slot) if v.role == "worker")
    dead_node = next(n["ID"] for n in swarm_nodes(cloud) if n["Status"]["Addr"] == victim.ip)

    killed_at = time.monotonic()
    cloud.kill(victim.instance_id, mode="terminate")

    def replacement() -> Any:
        new = [v for v in cloud.nodes(with_swarm=False) if v.instance_id not in before and v.state == "running"]
        return new or None

    (new,) = wait_for("a replacement instance", replacement, 300)
    launched_at = time.monotonic()

    def replaced() -> list[dict[str, Any]] | None:
        nodes = swarm_nodes(cloud)
        # A node still joining has no address yet.
        addrs = {n["Status"].get("Addr"): n for n in nodes}
        joined = new.ip in addrs and addrs[new.ip]["Status"]["State"] == "ready"
        return nodes if joined and all(n["ID"] != dead_node for n in nodes) else None

    nodes = wait_for("the replacement joined and the dead node removed", replaced, 300)
    joined_at = time.monotonic()
    wait_for("the service back to full strength", lambda: True if running_replicas(cloud) == REPLICAS else None, 180)
    converged_at = time.monotonic()

    (execution,) = [e for e in cloud.executions() if e["machine"].endswith("-repair")]
    assert execution["name"] == f"repair-{victim.instance_id}"
    sfn = cloud.client("stepfunctions")
    wait_for(
        "the repair to finish",
        lambda: True if sfn.describe_execution(executionArn=execution["executionArn"])["status"] != "RUNNING" else None,
        120,
    )
    assert sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "SUCCEEDED"

    # Exactly one replacement, same role and AZ, in a new slot; the swarm is back to 3 nodes.
    after = [v for v in cloud.nodes(with_swarm=False) if v.state == "running"]
    assert sorted(v.instance_id for v in after) == sorted(
        [*(i for i in before if i != victim.instance_id), new.instance_id]
    )
    assert (new.role, new.az) == ("worker", victim.az)
    assert new.slot not in {v.slot for v in before.values()}
    assert len(nodes) == 3
    print(
        f"\nrepair of {victim.slot}: kill -> replacement running {launched_at - killed_at:.1f} s, "
        f"-> joined (dead node gone) {joined_at - killed_at:.1f} s, "
        f"-> service converged {converged_at - killed_at:.1f} s"
    )
