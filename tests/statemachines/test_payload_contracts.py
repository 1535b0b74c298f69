"""The requests the workflows build parse as the functions' own request models, and the stubs answer
what the functions really return: so the stubbed runs prove something about the real ones."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter
from swarmwarden.domain.model import LaunchResult, NetworkRef, Readiness
from swarmwarden.steps import cluster_state, custom_resource, hosts, network, swarm

from tests.statemachines.aslrunner import AslRunner, Call, LambdaError, LambdaStubs
from tests.statemachines.samples import (
    launch_result,
    stub_provision_happy,
    stub_teardown_happy,
    workflow_input,
)

REQUESTS: dict[str, TypeAdapter[Any]] = {
    "network": network.REQUEST,
    "hosts": hosts.REQUEST,
    "swarm": swarm.REQUEST,
    "cluster_state": cluster_state.REQUEST,
    "custom_resource": custom_resource.REPORT,
}
RESULTS: dict[tuple[str, str], type[BaseModel]] = {
    ("network", "ensure_network"): NetworkRef,
    ("network", "ensure_ecs_cluster"): network.EcsClusterRef,
    ("network", "delete_network"): network.NetworkDeleted,
    ("network", "delete_ecs_cluster"): network.EcsClusterDeleted,
    ("hosts", "launch"): LaunchResult,
    ("hosts", "check_ready"): Readiness,
    ("hosts", "terminate_run"): hosts.Terminated,
    ("hosts", "terminate_cluster"): hosts.Terminating,
    ("hosts", "check_terminated"): hosts.Termination,
    ("swarm", "init"): swarm.InitResult,
    ("swarm", "join"): swarm.JoinResult,
    ("swarm", "verify"): swarm.VerifyResult,
    ("swarm", "delete_tokens"): swarm.DeleteTokensResult,
    ("cluster_state", "provisioned"): cluster_state.Recorded,
    ("cluster_state", "tearing_down"): cluster_state.StatusResult,
    ("cluster_state", "torn_down"): cluster_state.StatusResult,
}


def check_calls(calls: list[Call]) -> set[tuple[str, str]]:
    for call in calls:
        REQUESTS[call.function].validate_python(call.payload)
        if call.error is None and (call.function, call.action) in RESULTS:
            RESULTS[(call.function, call.action)].model_validate(call.result)
    return {(c.function, c.action) for c in calls}


@pytest.mark.slow
def test_provision_requests_and_stub_results_match_the_contracts(
    runner: AslRunner, stubs: LambdaStubs, provision_arn: str
) -> None:
    stub_provision_happy(stubs, launch_result(), ready_rounds=2)
    ok = runner.run(provision_arn, workflow_input("provision", cfn=True))
    assert ok.status == "SUCCEEDED", ok.describe()

    stubs.on("cluster_state", "provisioned", LambdaError("TransientError"), LambdaError("InvalidRequest", "no"))
    failed = runner.run(provision_arn, workflow_input("provision", cfn=True))
    assert failed.status == "FAILED", failed.describe()

    seen = check_calls(stubs.calls)
    assert seen == {
        ("network", "ensure_network"),
        ("network", "ensure_ecs_cluster"),
        ("hosts", "launch"),
        ("hosts", "check_ready"),
        ("hosts", "terminate_run"),
        ("swarm", "init"),
        ("swarm", "join"),
        ("swarm", "verify"),
        ("cluster_state", "provisioned"),
        ("custom_resource", "report"),
    }
    assert {c.payload["status"] for c in stubs.calls_to("custom_resource", "report")} == {"SUCCESS", "FAILED"}
    # The data the report function turns into ManagerInstanceIds and SwarmId.
    success = next(c for c in stubs.calls_to("custom_resource", "report") if c.payload["status"] == "SUCCESS")
    data = custom_resource.report_data(custom_resource.REPORT.validate_python(success.payload).data)
    assert set(data) == {"ManagerInstanceIds", "SwarmId"}
    assert len(data["ManagerInstanceIds"].split(",")) == 3


def test_teardown_requests_and_stub_results_match_the_contracts(
    runner: AslRunner, stubs: LambdaStubs, teardown_arn: str
) -> None:
    stub_teardown_happy(stubs, ["i-00000000000000000", "i-00000000000000001"], done_after=2)
    ok = runner.run(teardown_arn, workflow_input("teardown", cfn=True))
    assert ok.status == "SUCCEEDED", ok.describe()
    stubs.on("network", "delete_network", LambdaError("InvalidRequest", "no"))
    failed = runner.run(teardown_arn, workflow_input("teardown", cfn=True))
    assert failed.status == "FAILED", failed.describe()

    seen = check_calls(stubs.calls)
    assert seen == {
        ("cluster_state", "tearing_down"),
        ("hosts", "terminate_cluster"),
        ("hosts", "check_terminated"),
        ("swarm", "delete_tokens"),
        ("network", "delete_network"),
        ("network", "delete_ecs_cluster"),
        ("cluster_state", "torn_down"),
        ("custom_resource", "report"),
    }
