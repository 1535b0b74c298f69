"""The provision workflow in moto's ASL engine: the path taken (execution history), not only the status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from swarmwarden.errors import ScriptFailed

from tests.statemachines.aslrunner import AslRunner, Execution, LambdaError, LambdaStubs
from tests.statemachines.samples import (
    joined,
    launch_result,
    load_definition,
    stub_provision_happy,
    workflow_input,
)

DEFINITION = load_definition("provision")

HAPPY_PATH = [
    "EnsureNetwork",
    "EnsureEcsCluster",
    "LaunchHosts",
    "StartReadinessWait",
    "WaitForHosts",
    "CheckHostsReady",
    "AreHostsReady",
    "InitSwarm",
    "JoinNodes",
    "VerifySwarm",
    "RecordCluster",
    "ShouldReportSuccess",
]


def top_path(execution: Execution) -> list[str]:
    return execution.top_level_states(DEFINITION)


def scheduled_in_state(execution: Execution, state: str) -> int:
    """How many Lambda invocations were scheduled while `state` was the current top-level state."""
    count, current = 0, None
    for event in execution.history:
        if event["type"].endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if name in DEFINITION["States"]:
                current = name
        elif event["type"] == "LambdaFunctionScheduled" and current == state:
            count += 1
    return count


def map_iteration_events(execution: Execution, map_state: str) -> list[str]:
    """The MapIteration* event types of one Map state, in order."""
    found = []
    for event in execution.history:
        if event["type"].startswith("MapIteration"):
            details = next(v for k, v in event.items() if k.endswith("EventDetails"))
            if details["name"] == map_state:
                found.append(event["type"])
    return found


def assert_status(execution: Execution, status: str) -> None:
    assert execution.status == status, execution.describe()


def test_happy_path_without_cfn(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result(managers=3, workers=4)
    stub_provision_happy(stubs, launch, ready_rounds=2)

    execution = runner.run(provision_arn, workflow_input("provision"), name="prov-happy")

    assert_status(execution, "SUCCEEDED")
    # Not ready in round 1, ready in round 2: the loop went round once.
    expected = [*HAPPY_PATH[:7], "WaitForHosts", "CheckHostsReady", "AreHostsReady", *HAPPY_PATH[7:]]
    assert top_path(execution) == [*expected, "Provisioned"]
    assert not stubs.calls_to("custom_resource"), "no cfn in the input: nothing to report"
    assert not stubs.calls_to("hosts", "terminate_run")

    # The run id that tags the instances is the execution name.
    (launch_call,) = stubs.calls_to("hosts", "launch")
    assert launch_call.payload["run_id"] == "prov-happy"
    assert launch_call.payload["network"]["vpc_id"] == "vpc-0a1b2c3d4e5f60708"

    # The wait loop polls every instance of the cluster and counts its rounds.
    checks = stubs.calls_to("hosts", "check_ready")
    assert [c.payload["attempt"] for c in checks] == [0, 1]
    assert all(c.payload["instance_ids"] == launch["instance_ids"] for c in checks)
    assert all(c.payload["max_attempts"] == 3 for c in checks)

    (init,) = stubs.calls_to("swarm", "init")
    assert init.payload["seed"] == launch["seed"]

    # Every manager but the seed and every worker joined exactly once; the managers in order.
    joins = stubs.calls_to("swarm", "join")
    joined_ids = [c.payload["host"]["instance_id"] for c in joins]
    expected_ids = [h["instance_id"] for h in (*launch["managers"], *launch["workers"])]
    assert sorted(joined_ids) == sorted(expected_ids)
    assert len(joined_ids) == len(set(joined_ids))
    manager_ids = [h["instance_id"] for h in launch["managers"]]
    assert [i for i in joined_ids if i in manager_ids] == manager_ids
    assert launch["seed"]["instance_id"] not in joined_ids
    # Managers one at a time: each iteration ends before the next starts.
    assert map_iteration_events(execution, "JoinManagers") == ["MapIterationStarted", "MapIterationSucceeded"] * 2
    # A join gets only what it needs of the swarm.
    assert all(c.payload["swarm"] == {"swarm_id": "swarm0123456789", "manager_addr": "10.42.0.10:2377"} for c in joins)
    assert all(c.payload["spec"]["cluster_name"] == "demo" for c in joins)

    (verify,) = stubs.calls_to("swarm", "verify")
    assert verify.payload["hosts"] == launch
    (record,) = stubs.calls_to("cluster_state", "provisioned")
    assert record.payload["hosts"] == launch
    assert record.payload["swarm"] == {"swarm_id": "swarm0123456789", "manager_addr": "10.42.0.10:2377"}
    assert len(record.payload["nodes"]) == 7

    # The Map results are dropped: the state stays small.
    assert set(execution.output) == {
        "spec",
        "poll",
        "network",
        "ecs",
        "hosts",
        "readiness",
        "swarm",
        "verified",
        "recorded",
    }


def test_happy_path_with_cfn_reports_success(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result()
    stub_provision_happy(stubs, launch)
    execution_input = workflow_input("provision", cfn=True)

    execution = runner.run(provision_arn, execution_input, name="prov-cfn")

    assert_status(execution, "SUCCEEDED")
    assert top_path(execution) == [*HAPPY_PATH, "ReportSuccess", "Provisioned"]
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["status"] == "SUCCESS"
    assert report.payload["cfn"] == execution_input["cfn"]
    assert report.payload["data"] == {"hosts": launch, "swarm": execution.output["swarm"]}


def test_one_manager_no_workers_runs_empty_maps(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result(managers=1, workers=0)
    stub_provision_happy(stubs, launch)

    execution = runner.run(provision_arn, workflow_input("provision", managers=1, workers=0))

    assert_status(execution, "SUCCEEDED")
    assert top_path(execution) == [*HAPPY_PATH, "Provisioned"]
    assert not stubs.calls_to("swarm", "join")


def test_transient_failure_is_retried(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result()
    stub_provision_happy(stubs, launch)
    stubs.on("hosts", "launch", LambdaError("TransientError", "RequestLimitExceeded"), launch)

    execution = runner.run(provision_arn, workflow_input("provision"))

    assert_status(execution, "SUCCEEDED")
    assert top_path(execution) == [*HAPPY_PATH, "Provisioned"]
    # One state, two invocations: the Retry, not a second pass through the state.
    assert top_path(execution).count("LaunchHosts") == 1
    assert scheduled_in_state(execution, "LaunchHosts") == 2
    failed = execution.events_of("LambdaFunctionFailed")
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == ["TransientError"]
    assert len(stubs.calls_to("hosts", "launch")) == 2
    assert not stubs.calls_to("hosts", "terminate_run")


@pytest.mark.slow
def test_join_script_failure_is_retried(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result(managers=1, workers=1)
    stub_provision_happy(stubs, launch)
    failures = iter([ScriptFailed("join timed out")])

    def join_fails_once(payload: dict[str, Any]) -> dict[str, Any]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return joined(payload)

    stubs.on("swarm", "join", join_fails_once)

    execution = runner.run(provision_arn, workflow_input("provision", managers=1, workers=1))

    assert_status(execution, "SUCCEEDED")
    joins = stubs.calls_to("swarm", "join")
    assert [c.payload["host"]["instance_id"] for c in joins] == [launch["workers"][0]["instance_id"]] * 2
    assert execution.entered_states().count("JoinWorker") == 1


@pytest.mark.slow
def test_verify_retries_while_nodes_settle(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result(managers=1, workers=1)
    stub_provision_happy(stubs, launch)
    stubs.on("swarm", "verify", LambdaError("SwarmNotAsPlanned", "worker-0 not Ready"), {"nodes": []})

    execution = runner.run(provision_arn, workflow_input("provision", managers=1, workers=1))

    assert_status(execution, "SUCCEEDED")
    assert scheduled_in_state(execution, "VerifySwarm") == 2


def test_permanent_failure_compensates_and_fails(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result()
    stub_provision_happy(stubs, launch)
    stubs.on("swarm", "init", LambdaError("ScriptFailed", "docker swarm init exited 1 on manager-0"))
    execution_input = workflow_input("provision", cfn=True)

    execution = runner.run(provision_arn, execution_input, name="prov-init-fails")

    assert_status(execution, "FAILED")
    assert top_path(execution) == [
        *HAPPY_PATH[:7],
        "InitSwarm",
        "Compensate",
        "ShouldReportFailure",
        "ReportFailure",
        "ProvisionFailed",
    ]
    # ScriptFailed is not retried on init.
    assert len(stubs.calls_to("swarm", "init")) == 1
    assert not stubs.calls_to("swarm", "join")
    # Compensation terminates this run's instances: the ones tagged with the execution name.
    (terminate,) = stubs.calls_to("hosts", "terminate_run")
    assert terminate.payload["run_id"] == "prov-init-fails" == execution.name
    assert terminate.payload["run_id"] == stubs.calls_to("hosts", "launch")[0].payload["run_id"]
    # CloudFormation hears why.
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["status"] == "FAILED"
    assert report.payload["cfn"] == execution_input["cfn"]
    assert report.payload["reason"].startswith("ScriptFailed: ")
    assert "docker swarm init exited 1 on manager-0" in report.payload["reason"]
    # The execution fails with the original error and cause.
    assert execution.error == "ScriptFailed"
    assert execution.cause is not None
    assert json.loads(execution.cause)["errorMessage"] == "docker swarm init exited 1 on manager-0"


def test_failure_before_launch_terminates_nothing(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    stub_provision_happy(stubs, launch_result())
    stubs.on("network", "ensure_network", LambdaError("InvalidRequest", "vpc_cidr overlaps"))
    stubs.on("hosts", "terminate_run", {"terminated": []})

    execution = runner.run(provision_arn, workflow_input("provision"), name="prov-no-network")

    assert_status(execution, "FAILED")
    assert top_path(execution) == ["EnsureNetwork", "Compensate", "ShouldReportFailure", "ProvisionFailed"]
    assert len(stubs.calls_to("network", "ensure_network")) == 1, "InvalidRequest is never retried"
    assert not stubs.calls_to("hosts", "launch")
    assert [c.payload["run_id"] for c in stubs.calls_to("hosts", "terminate_run")] == ["prov-no-network"]
    assert not stubs.calls_to("custom_resource")
    assert execution.error == "InvalidRequest"


def test_failed_compensation_still_reports_and_fails(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    stub_provision_happy(stubs, launch_result())
    stubs.on("swarm", "verify", LambdaError("InvalidRequest", "hosts do not match the spec"))
    stubs.on("hosts", "terminate_run", LambdaError("InvalidRequest", "cannot terminate"))

    execution = runner.run(provision_arn, workflow_input("provision", cfn=True))

    assert_status(execution, "FAILED")
    assert top_path(execution)[-5:] == [
        "VerifySwarm",
        "Compensate",
        "ShouldReportFailure",
        "ReportFailure",
        "ProvisionFailed",
    ]
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["reason"].startswith("InvalidRequest: ")
    assert "hosts do not match the spec" in report.payload["reason"]
    # The original failure, not the compensation's, is what the execution fails with.
    assert execution.error == "InvalidRequest"
    assert "hosts do not match the spec" in (execution.cause or "")


def test_wait_loop_times_out_with_clear_cause(runner: AslRunner, stubs: LambdaStubs, provision_arn: str) -> None:
    launch = launch_result()
    stub_provision_happy(stubs, launch)
    summary = "not ready after 3 attempts: i-00000000000000003 (ssm agent offline), i-00000000000000004 (no ecs)"

    def never_ready(payload: dict[str, Any]) -> dict[str, Any]:
        attempt = payload["attempt"] + 1
        return {
            "ready": False,
            "exhausted": attempt >= payload["max_attempts"],
            "attempt": attempt,
            "summary": summary,
            "not_ready": {"ssm": ["i-00000000000000003"], "ecs": ["i-00000000000000004"]},
        }

    stubs.on("hosts", "check_ready", never_ready)

    execution = runner.run(provision_arn, workflow_input("provision", cfn=True), name="prov-timeout")

    assert_status(execution, "FAILED")
    loop = ["WaitForHosts", "CheckHostsReady", "AreHostsReady"]
    assert top_path(execution) == [
        *HAPPY_PATH[:4],
        *loop * 3,
        "HostsNotReady",
        "Compensate",
        "ShouldReportFailure",
        "ReportFailure",
        "ProvisionFailed",
    ]
    assert [c.payload["attempt"] for c in stubs.calls_to("hosts", "check_ready")] == [0, 1, 2]
    assert execution.error == "HostsNotReady"
    assert execution.cause == summary
    assert [c.payload["run_id"] for c in stubs.calls_to("hosts", "terminate_run")] == ["prov-timeout"]
    (report,) = stubs.calls_to("custom_resource", "report")
    assert report.payload["reason"] == f"HostsNotReady: {summary}"
    assert not stubs.calls_to("swarm")


@pytest.mark.slow
def test_largest_cluster_stays_within_step_functions_limits(
    runner: AslRunner, stubs: LambdaStubs, provision_arn: str
) -> None:
    """7 managers and 100 workers: every state's data stays far below 256 KB, the history below 25,000 events."""
    launch = launch_result(managers=7, workers=100)
    stub_provision_happy(stubs, launch, ready_rounds=3)
    execution_input = workflow_input("provision", cfn=True, managers=7, workers=100, max_workers=100)
    execution_input["poll"]["max_attempts"] = 5

    execution = runner.run(provision_arn, execution_input, timeout=120)

    assert_status(execution, "SUCCEEDED")
    assert len(stubs.calls_to("swarm", "join")) == 106
    sizes = [
        len(str(details.get("input") or details.get("output") or "").encode())
        for event in execution.history
        for key, details in event.items()
        if key.endswith("EventDetails") and isinstance(details, dict)
    ]
    print(f"largest state data {max(sizes)} bytes, {len(execution.history)} history events")
    assert max(sizes) < 128 * 1024, f"largest state data: {max(sizes)} bytes"
    assert len(execution.history) < 25_000
