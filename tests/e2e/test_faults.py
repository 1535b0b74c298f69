"""Fault injection mid-provision: the state machine's Retry and Catch, against real handlers and hosts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from localcloud.cloud import CloudError, LocalCloud
from localcloud.hosts import leftovers
from tests.e2e.conftest import start_cloud

pytestmark = pytest.mark.slow
SMALL = {"ManagerCount": "1", "WorkerCount": "1"}


def _entered(cloud: LocalCloud) -> list[str]:
    (execution,) = [e for e in cloud.executions() if e["machine"].endswith("-provision")]
    history = cloud.client("stepfunctions").get_execution_history(
        executionArn=execution["executionArn"], maxResults=1000
    )
    return [e["stateEnteredEventDetails"]["name"] for e in history["events"] if e["type"].endswith("StateEntered")]


def _wait_all_terminated(cloud: LocalCloud, timeout: float = 60) -> list[str]:
    ec2 = cloud.client("ec2")
    deadline = time.monotonic() + timeout
    while True:
        states = {
            i["InstanceId"]: i["State"]["Name"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        }
        if all(s == "terminated" for s in states.values()) and not cloud.hosts:
            return sorted(states)
        if time.monotonic() > deadline:
            raise AssertionError(f"instances not terminated after {timeout} s: {states}, hosts {sorted(cloud.hosts)}")
        time.sleep(0.5)


@pytest.fixture
def transient_cloud() -> Iterator[LocalCloud]:
    yield from start_cloud("swf1", parameters=SMALL, faults="HostsFunction.launch:TransientError=1")


@pytest.fixture
def permanent_cloud() -> Iterator[LocalCloud]:
    # More failures than the join's Retry allows (1 try + 2 retries).
    yield from start_cloud("swf2", parameters=SMALL, faults="SwarmFunction.join:ScriptFailed=5")


def test_a_transient_launch_failure_is_retried_and_provision_succeeds(transient_cloud: LocalCloud) -> None:
    outputs = transient_cloud.up(timeout=300)
    launches = [
        i for i in transient_cloud.runtime.invocations if i.function == "HostsFunction" and i.action == "launch"
    ]
    assert [i.error_type for i in launches] == ["TransientError", None]
    assert _entered(transient_cloud).count("LaunchHosts") == 1  # one state, two attempts inside it
    assert outputs["ManagerInstanceIds"].startswith("i-")
    running = [v for v in transient_cloud.nodes() if v.state == "running"]
    assert sorted(v.swarm.split("/")[1] for v in running) == ["ready", "ready"]


def test_a_permanent_join_failure_compensates_and_leaves_no_orphan(permanent_cloud: LocalCloud) -> None:
    with pytest.raises(CloudError, match="ScriptFailed"):
        permanent_cloud.up(timeout=300)
    joins = [i for i in permanent_cloud.runtime.invocations if i.function == "SwarmFunction" and i.action == "join"]
    assert [i.error_type for i in joins] == ["ScriptFailed"] * 3
    path = _entered(permanent_cloud)
    assert path[-3:] == ["ShouldReportFailure", "ReportFailure", "ProvisionFailed"]
    assert "Compensate" in path
    assert "RecordCluster" not in path
    (compensation,) = [i for i in permanent_cloud.runtime.invocations if i.action == "terminate_run"]
    launched = next(i for i in permanent_cloud.runtime.invocations if i.action == "launch")
    assert '"terminated"' in compensation.response
    terminated = _wait_all_terminated(permanent_cloud)
    assert all(instance_id in compensation.response for instance_id in terminated)
    assert all(instance_id in launched.response for instance_id in terminated)
    # CloudFormation then rolls the stack back with a Delete: teardown removes the rest.
    permanent_cloud.down(timeout=300)
    permanent_cloud.close()
    assert leftovers("swf2") == []
