"""The teardown workflow in moto's ASL engine: order, idempotence, and a bounded wait."""

from __future__ import annotations

import pytest

from tests.statemachines.aslrunner import AslRunner, Execution, LambdaError, LambdaStubs
from tests.statemachines.samples import load_definition, stub_teardown_happy, workflow_input

DEFINITION = load_definition("teardown")
INSTANCES = ["i-00000000000000000", "i-00000000000000001", "i-00000000000000002"]

HAPPY_PATH = [
    "MarkTearingDown",
    "TerminateHosts",
    "StartTerminationWait",
    "WaitForTermination",
    "CheckHostsTerminated",
    "AreHostsTerminated",
    "DeleteTokens",
    "DeleteNetwork",
    "DeleteEcsCluster",
    "MarkTornDown",
    "ShouldReportSuccess",
]
HAPPY_ACTIONS = [
    ("cluster_state", "tearing_down"),
    ("hosts", "terminate_cluster"),
    ("hosts", "check_terminated"),
    ("swarm", "delete_tokens"),
    ("network", "delete_network"),
    ("network", "delete_ecs_cluster"),
    ("cluster_state", "torn_down"),
]


def assert_status(execution: Execution, status: str) -> None:
    assert execution.status == status, execution.describe()


def test_teardown_happy_path_in_order(runner: AslRunner, stubs: LambdaStubs, teardown_arn: str) -> None:
    stub_teardown_happy(stubs, INSTANCES)
    execution_input = workflow_input("teardown", cfn=True)

    execution = runner.run(teardown_arn, execution_input)

    assert_status(execution, "SUCCEEDED")
    assert execution.top_level_states(DEFINITION) == [*HAPPY_PATH, "ReportSuccess", "TornDown"]
    assert stubs.actions() == [*HAPPY_ACTIONS, ("custom_resource", "report")]
    assert all(c.payload["spec"]["cluster_name"] == "demo" for c in stubs.calls if c.function != "custom_resource")
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["status"] == "SUCCESS"
    assert report.payload["cfn"] == execution_input["cfn"]


def test_teardown_waits_until_terminated(runner: AslRunner, stubs: LambdaStubs, teardown_arn: str) -> None:
    stub_teardown_happy(stubs, INSTANCES, done_after=2)

    execution = runner.run(teardown_arn, workflow_input("teardown"))

    assert_status(execution, "SUCCEEDED")
    loop = ["WaitForTermination", "CheckHostsTerminated", "AreHostsTerminated"]
    assert execution.top_level_states(DEFINITION) == [*HAPPY_PATH[:6], *loop, *HAPPY_PATH[6:], "TornDown"]
    assert [c.payload["attempt"] for c in stubs.calls_to("hosts", "check_terminated")] == [0, 1]
    assert not stubs.calls_to("custom_resource")


def test_teardown_twice_succeeds(runner: AslRunner, stubs: LambdaStubs, teardown_arn: str) -> None:
    stub_teardown_happy(stubs, INSTANCES)
    first = runner.run(teardown_arn, workflow_input("teardown"), name="teardown-1")
    assert_status(first, "SUCCEEDED")

    # The second run finds nothing left: every step answers "nothing to do".
    stub_teardown_happy(stubs, [])
    stubs.on("swarm", "delete_tokens", {"deleted": []})
    stubs.on("network", "delete_network", {"deleted": {}})
    stubs.on("network", "delete_ecs_cluster", {"deleted": False})
    second = runner.run(teardown_arn, workflow_input("teardown"), name="teardown-2")

    assert_status(second, "SUCCEEDED")
    assert second.top_level_states(DEFINITION) == [*HAPPY_PATH, "TornDown"]
    assert stubs.actions() == HAPPY_ACTIONS * 2


def test_teardown_wait_exhausted_fails_with_cause(runner: AslRunner, stubs: LambdaStubs, teardown_arn: str) -> None:
    stub_teardown_happy(stubs, INSTANCES, done_after=99)

    execution = runner.run(teardown_arn, workflow_input("teardown", cfn=True))

    assert_status(execution, "FAILED")
    loop = ["WaitForTermination", "CheckHostsTerminated", "AreHostsTerminated"]
    assert execution.top_level_states(DEFINITION) == [
        *HAPPY_PATH[:3],
        *loop * 3,
        "HostsNotTerminated",
        "ShouldReportFailure",
        "ReportFailure",
        "TeardownFailed",
    ]
    assert execution.error == "HostsNotTerminated"
    assert execution.cause == f"still running: {', '.join(INSTANCES)}"
    # Nothing is deleted under running hosts.
    assert not stubs.calls_to("network")
    assert not stubs.calls_to("swarm")
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["status"] == "FAILED"
    assert report.payload["reason"] == f"HostsNotTerminated: still running: {', '.join(INSTANCES)}"


@pytest.mark.parametrize("with_cfn", [True, False])
def test_teardown_step_failure_reports_and_fails(
    runner: AslRunner, stubs: LambdaStubs, teardown_arn: str, with_cfn: bool
) -> None:
    stub_teardown_happy(stubs, INSTANCES)
    stubs.on("network", "delete_network", LambdaError("InvalidRequest", "vpc-1 has dependencies: eni-1"))

    execution = runner.run(teardown_arn, workflow_input("teardown", cfn=with_cfn))

    assert_status(execution, "FAILED")
    reported = ["ReportFailure"] if with_cfn else []
    assert execution.top_level_states(DEFINITION) == [
        *HAPPY_PATH[:8],
        "ShouldReportFailure",
        *reported,
        "TeardownFailed",
    ]
    assert execution.error == "InvalidRequest"
    assert "vpc-1 has dependencies" in (execution.cause or "")
    assert not stubs.calls_to("network", "delete_ecs_cluster")
    reports = stubs.calls_to("custom_resource", "report")
    assert [r.payload["status"] for r in reports] == (["FAILED"] if with_cfn else [])


def test_teardown_transient_failure_is_retried(runner: AslRunner, stubs: LambdaStubs, teardown_arn: str) -> None:
    stub_teardown_happy(stubs, INSTANCES)
    stubs.on("swarm", "delete_tokens", LambdaError("TransientError", "ThrottlingException"), {"deleted": []})

    execution = runner.run(teardown_arn, workflow_input("teardown"))

    assert_status(execution, "SUCCEEDED")
    assert execution.top_level_states(DEFINITION) == [*HAPPY_PATH, "TornDown"]
    assert len(stubs.calls_to("swarm", "delete_tokens")) == 2
