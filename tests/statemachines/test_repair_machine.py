"""The repair workflow in moto's ASL engine, with stubbed tasks: the path taken, not only the status."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, TypeAdapter
from swarmwarden.domain.model import NetworkRef, Readiness
from swarmwarden.steps import cluster_state, hosts, network, repair, swarm

from tests.statemachines.aslrunner import (
    PLACEHOLDER,
    REGION,
    AslRunner,
    Call,
    Execution,
    LambdaError,
    LambdaStubs,
    default_substitutions,
    function_arn,
)
from tests.statemachines.samples import EVENTS, FAST_POLL, NETWORK, STATEMACHINES, host, load_definition
from tests.statemachines.test_asl_static import TRANSIENT, targets, walk

DEFINITION = load_definition("repair")
SUBSTITUTIONS = {**default_substitutions(), "RepairFunctionArn": function_arn("repair")}
FAILED_WORKER = host(4, "worker", "worker-1")  # us-east-1b
FAILED_MANAGER = host(1, "manager", "manager-1")  # us-east-1b
MANAGERS = [host(0, "manager", "manager-0"), host(2, "manager", "manager-2")]
SWARM_REF = {"swarm_id": "swarm0123456789", "manager_addr": MANAGERS[0]["private_ip"]}

WORKER_PATH = [
    "Classify",
    "FindHealthyManager",
    "Guard",
    "ShouldRepair",
    "AcquireLock",
    "Claim",
    "EnsureNetwork",
    "LaunchReplacement",
    "RemoveAndWait",
    "JoinReplacement",
    "VerifyReplacement",
    "Rebalance",
    "RotateTokens",
    "TerminateDeadInstance",
    "RecordRepair",
    "ReleaseLock",
    "Repaired",
]
# The two branches of RemoveAndWait, which run at the same time.
REMOVE_BRANCH = ["IsInSwarm", "RemoveDeadNode"]
WAIT_BRANCH = [
    "StartReadinessWait",
    "WaitForReplacement",
    "CheckReplacementReady",
    "IsReplacementReady",
    "ReplacementReady",
]
FAILURE_TAIL = ["Compensate", "RecordFailure", "ReleaseLockAfterFailure", "RepairFailed"]

REQUESTS: dict[str, TypeAdapter[Any]] = {
    "network": network.REQUEST,
    "hosts": hosts.REQUEST,
    "swarm": swarm.REQUEST,
    "cluster_state": cluster_state.REQUEST,
    "repair": repair.REQUEST,
}
RESULTS: dict[tuple[str, str], type[BaseModel]] = {
    ("repair", "classify"): repair.Classified,
    ("repair", "guard"): repair.GuardResult,
    ("repair", "claim"): repair.Claimed,
    ("repair", "replan"): repair.Claimed,
    ("repair", "record"): repair.Recorded,
    ("repair", "fail"): repair.Failed,
    ("swarm", "healthy_manager"): swarm.HealthyManagerResult,
    ("swarm", "remove_node"): swarm.RemoveNodeResult,
    ("swarm", "join"): swarm.JoinResult,
    ("swarm", "rotate_tokens"): swarm.RotateTokensResult,
    ("swarm", "rebalance"): swarm.RebalanceResult,
    ("swarm", "verify_replaced"): swarm.StatusResult,
    ("network", "ensure_network"): NetworkRef,
    ("hosts", "launch_slots"): hosts.LaunchedSlots,
    ("hosts", "check_ready"): Readiness,
    ("hosts", "terminate_run"): hosts.Terminated,
    ("hosts", "terminate_instances"): hosts.Terminated,
    ("cluster_state", "acquire_lock"): cluster_state.LockResult,
    ("cluster_state", "release_lock"): cluster_state.Released,
}


@pytest.fixture
def repair_arn(aws: None) -> str:
    return AslRunner(boto3.client("stepfunctions", region_name=REGION), SUBSTITUTIONS).create(
        "repair", STATEMACHINES / "repair.asl.json"
    )


def repair_input(failed: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / "repair-input.json").read_text())
    data["instance_id"] = failed["instance_id"]
    data["poll"] = dict(FAST_POLL)
    return data


def node(h: dict[str, str], *, status: str = "ready", leader: bool = False) -> dict[str, Any]:
    manager = h["role"] == "manager"
    return {
        "id": f"node-{h['slot']}",
        "hostname": f"ip-{h['private_ip']}",
        "addr": h["private_ip"],
        "role": h["role"],
        "status": status,
        "availability": "active",
        "leader": leader,
        "reachability": ("reachable" if status == "ready" else "unreachable") if manager else None,
    }


def stub_repair_happy(stubs: LambdaStubs, failed: dict[str, str]) -> dict[str, str]:
    """Every task answers as the functions would for one failed node; returns the replacement host."""
    role = failed["role"]
    replacement = host(9, role, f"{role}-5") | {"az": failed["az"]}
    stubs.on(
        "repair",
        "classify",
        {"failed": {"host": failed, "node_id": f"node-{failed['slot']}"}, "candidates": MANAGERS},
    )
    stubs.on(
        "swarm",
        "healthy_manager",
        {"manager": MANAGERS[0], "nodes": [node(MANAGERS[0], leader=True), node(failed, status="down")], "tried": []},
    )
    stubs.on("repair", "guard", {"proceed": True, "reason": "1 of 5 nodes unhealthy", "unhealthy": 1, "total": 5})
    stubs.on("cluster_state", "acquire_lock", lock_result)
    stubs.on("repair", "claim", lambda p: claimed(failed, replacement["slot"]))
    stubs.on(
        "swarm", "remove_node", {"node": f"node-{failed['slot']}", "removed": True, "was_manager": role == "manager"}
    )
    stubs.on("network", "ensure_network", NETWORK | {"subnets": [*NETWORK["subnets"], SUBNET_C]})
    stubs.on("hosts", "launch_slots", launched_in(replacement))
    stubs.on("hosts", "check_ready", ready)
    stubs.on(
        "swarm",
        "join",
        {"instance_id": replacement["instance_id"], "node_id": "node-new", "role": role, "joined": True},
    )
    stubs.on("swarm", "rotate_tokens", {"rotated": ["worker", "manager"]})
    stubs.on("swarm", "rebalance", {"updated": ["web"], "skipped": []})
    stubs.on("swarm", "verify_replaced", lambda p: {"nodes": [node(MANAGERS[0], leader=True), node(p["added"])]})
    stubs.on(
        "repair",
        "record",
        {"replaced": failed["instance_id"], "by": replacement["instance_id"], "duration_seconds": 42.0},
    )
    stubs.on("cluster_state", "release_lock", {"released": True})
    stubs.on("hosts", "terminate_run", {"terminated": [replacement["instance_id"]]})
    stubs.on("hosts", "terminate_instances", {"terminated": []})
    stubs.on("repair", "fail", {"recorded": True})
    return replacement


SUBNET_C = {"subnet_id": "subnet-0000000000000000c", "az": "us-east-1c", "cidr": "10.42.32.0/20"}


def lock_result(payload: dict[str, Any]) -> dict[str, Any]:
    return {"operation_id": payload["operation_id"], "kind": "repair", "expires_at": 1.0e9}


def claimed(failed: dict[str, str], slot: str, az: str | None = None) -> dict[str, Any]:
    return {
        "placement": {"slot": slot, "role": failed["role"], "az": az or failed["az"]},
        "refused_azs": [],
        "swarm": SWARM_REF,
        "instance_gone": True,
    }


def launched_in(replacement: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        (placement,) = payload["placements"]
        made = replacement | {"slot": placement["slot"], "az": placement["az"]}
        ids = [made["instance_id"]]
        return {"hosts": [made], "instance_ids": ids, "launched_instance_ids": ids}

    return answer


def ready(payload: dict[str, Any]) -> dict[str, Any]:
    return {"ready": True, "exhausted": False, "attempt": payload["attempt"] + 1, "summary": "ready", "not_ready": {}}


def check_contracts(calls: list[Call]) -> None:
    for call in calls:
        REQUESTS[call.function].validate_python(call.payload)
        if call.error is None and (call.function, call.action) in RESULTS:
            RESULTS[(call.function, call.action)].model_validate(call.result)


def top_path(execution: Execution) -> list[str]:
    return execution.top_level_states(DEFINITION)


def branch_path(execution: Execution, branch: list[str]) -> list[str]:
    """The states entered in one of RemoveAndLaunch's branches, in order."""
    return [name for name in execution.entered_states() if name in branch]


def run(stubs: LambdaStubs, arn: str, failed: dict[str, str], name: str, timeout: float = 60) -> Execution:
    runner = AslRunner(boto3.client("stepfunctions", region_name=REGION), SUBSTITUTIONS)
    execution = runner.run(arn, repair_input(failed), name=name, timeout=timeout)
    check_contracts(stubs.calls)
    return execution


# ---------------------------------------------------------------- paths


def test_a_dead_worker_is_removed_replaced_in_its_az_joined_and_recorded(stubs: LambdaStubs, repair_arn: str) -> None:
    replacement = stub_repair_happy(stubs, FAILED_WORKER)

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-worker")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert top_path(execution) == WORKER_PATH
    assert branch_path(execution, REMOVE_BRANCH) == REMOVE_BRANCH
    assert branch_path(execution, WAIT_BRANCH) == WAIT_BRANCH
    (lock,) = stubs.calls_to("cluster_state", "acquire_lock")
    assert lock.payload | {"spec": None} == {
        "action": "acquire_lock",
        "spec": None,
        "operation_id": "repair-i-worker",
        "kind": "repair",
        "max_repairs": 2,
    }
    (remove,) = stubs.calls_to("swarm", "remove_node")
    assert remove.payload["manager"] == MANAGERS[0], "removed through the healthy manager"
    # EC2 says the instance is gone: removed at once, not after Swarm's heartbeat timeout.
    assert (remove.payload["node"], remove.payload["force"]) == ("node-worker-1", True)
    (launch,) = stubs.calls_to("hosts", "launch_slots")
    assert launch.payload["run_id"] == "repair-i-worker"
    assert launch.payload["placements"] == [{"slot": "worker-5", "role": "worker", "az": FAILED_WORKER["az"]}]
    (join,) = stubs.calls_to("swarm", "join")
    assert join.payload["host"]["instance_id"] == replacement["instance_id"]
    assert join.payload["swarm"] == SWARM_REF
    (record,) = stubs.calls_to("repair", "record")
    assert record.payload["added"]["slot"] == "worker-5"
    assert record.payload["failed"]["host"] == FAILED_WORKER
    assert record.payload["started_at"], "RepairDuration counts from the execution's start"
    # Order of the swarm changes: the dead node goes before its replacement joins; tokens rotate after.
    actions = [a for f, a in stubs.actions() if f == "swarm"]
    assert actions.index("remove_node") < actions.index("join") < actions.index("rotate_tokens")
    assert not stubs.calls_to("hosts", "terminate_run")
    assert not stubs.calls_to("repair", "fail")
    # A stopped instance is ended once its replacement is in; a terminated one is skipped by the function.
    (dead,) = stubs.calls_to("hosts", "terminate_instances")
    assert dead.payload["instance_ids"] == [FAILED_WORKER["instance_id"]]


def test_a_dead_manager_is_replaced_by_a_manager(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_MANAGER)

    execution = run(stubs, repair_arn, FAILED_MANAGER, "repair-i-manager")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert top_path(execution) == WORKER_PATH
    (healthy,) = stubs.calls_to("swarm", "healthy_manager")
    assert FAILED_MANAGER not in healthy.payload["candidates"]
    (remove,) = stubs.calls_to("swarm", "remove_node")
    assert remove.result["was_manager"] is True
    (launch,) = stubs.calls_to("hosts", "launch_slots")
    assert launch.payload["placements"][0]["role"] == "manager"
    (join,) = stubs.calls_to("swarm", "join")
    assert join.payload["host"]["role"] == "manager"


def test_the_guard_pauses_and_nothing_else_happens(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on("repair", "guard", {"proceed": False, "reason": "3 of 5 unhealthy", "unhealthy": 3, "total": 5})

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-paused")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert top_path(execution) == ["Classify", "FindHealthyManager", "Guard", "ShouldRepair", "Paused"]
    assert stubs.actions() == [("repair", "classify"), ("swarm", "healthy_manager"), ("repair", "guard")]


def test_a_node_without_swarm_id_skips_the_removal(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on(
        "repair",
        "classify",
        {"failed": {"host": FAILED_WORKER, "node_id": ""}, "candidates": MANAGERS},
    )

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-noid")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert branch_path(execution, [*REMOVE_BRANCH, "NotInSwarm"]) == ["IsInSwarm", "NotInSwarm"]
    assert not stubs.calls_to("swarm", "remove_node")
    assert stubs.calls_to("swarm", "rotate_tokens"), "it may still have read a token"


def test_a_dead_daemon_on_a_running_instance_is_removed_only_once_down(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on("repair", "claim", lambda p: claimed(FAILED_WORKER, "worker-5") | {"instance_gone": False})
    not_down = LambdaError("ScriptFailed", "node node-worker-1 is ready, not down")
    stubs.on("swarm", "remove_node", not_down, {"node": "node-worker-1", "removed": True, "was_manager": False})

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-daemon", timeout=90)

    assert execution.status == "SUCCEEDED", execution.describe()
    removals = stubs.calls_to("swarm", "remove_node")
    assert [c.payload["force"] for c in removals] == [False, False], "waits for Swarm, never forces"
    actions = [a for f, a in stubs.actions() if f == "swarm"]
    assert max(i for i, a in enumerate(actions) if a == "remove_node") < actions.index("join")


def test_an_election_in_progress_is_polled_every_second_then_the_repair_goes_on(
    stubs: LambdaStubs, repair_arn: str
) -> None:
    stub_repair_happy(stubs, FAILED_MANAGER)
    stubs.on(
        "swarm",
        "healthy_manager",
        LambdaError("SwarmSettling", "the swarm has no leader yet"),
        LambdaError("SwarmSettling", "i-0 does not know the state of ip-10-42-1-14 yet"),
        {"manager": MANAGERS[0], "nodes": [node(MANAGERS[0], leader=True)], "tried": []},
    )

    execution = run(stubs, repair_arn, FAILED_MANAGER, "repair-i-election")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert len(stubs.calls_to("swarm", "healthy_manager")) == 3
    assert top_path(execution) == WORKER_PATH


def test_a_failed_removal_terminates_the_replacement_launched_alongside(stubs: LambdaStubs, repair_arn: str) -> None:
    replacement = stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on("swarm", "remove_node", LambdaError("InvalidRequest", "refusing to remove the node this runs on"))

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-noremove")

    assert execution.status == "FAILED", execution.describe()
    assert execution.error == "InvalidRequest"
    assert top_path(execution)[-5:] == ["RemoveAndWait", *FAILURE_TAIL]
    assert not stubs.calls_to("swarm", "join")
    # The launch ended before the removal began, so compensation cannot miss an instance still being made.
    actions = stubs.actions()
    assert actions.index(("hosts", "launch_slots")) < actions.index(("swarm", "remove_node"))
    (compensate,) = stubs.calls_to("hosts", "terminate_run")
    assert compensate.payload["run_id"] == "repair-i-noremove"
    assert compensate.result == {"terminated": [replacement["instance_id"]]}


@pytest.mark.slow
def test_a_lock_held_by_a_scale_is_waited_for_then_the_repair_proceeds(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on(
        "cluster_state", "acquire_lock", LambdaError("LockHeld", "scale operation op-1 is in progress"), lock_result
    )

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-locked", timeout=90)

    assert execution.status == "SUCCEEDED", execution.describe()
    assert top_path(execution) == WORKER_PATH
    assert len(stubs.calls_to("cluster_state", "acquire_lock")) == 2
    assert top_path(execution).count("AcquireLock") == 1, "a Retry of the same state, not a loop"
    (held,) = [r for r in DEFINITION["States"]["AcquireLock"]["Retry"] if r["ErrorEquals"] == ["LockHeld"]]
    # Bounded: the waits add up to minutes, not forever.
    waits = [
        min(held["IntervalSeconds"] * held["BackoffRate"] ** i, held["MaxDelaySeconds"])
        for i in range(held["MaxAttempts"])
    ]
    assert 300 <= sum(waits) <= 1800


def test_no_capacity_in_the_az_moves_the_replacement_to_another(stubs: LambdaStubs, repair_arn: str) -> None:
    replacement = stub_repair_happy(stubs, FAILED_WORKER)
    refused = LambdaError("InsufficientCapacity", "no t3.small capacity in us-east-1b")
    stubs.on("hosts", "launch_slots", refused, launched_in(replacement))
    stubs.on(
        "repair",
        "replan",
        lambda p: (
            p["claim"] | {"placement": p["claim"]["placement"] | {"az": "us-east-1c"}, "refused_azs": ["us-east-1b"]}
        ),
    )

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-capacity")

    assert execution.status == "SUCCEEDED", execution.describe()
    path = top_path(execution)
    assert path[: path.index("RemoveAndWait")][-3:] == ["LaunchReplacement", "Replan", "LaunchReplacement"]
    (replan,) = stubs.calls_to("repair", "replan")
    assert replan.payload["claim"]["placement"]["az"] == FAILED_WORKER["az"], "the refused AZ"
    assert {s["az"] for s in replan.payload["network"]["subnets"]} == {"us-east-1a", "us-east-1b", "us-east-1c"}
    launches = stubs.calls_to("hosts", "launch_slots")
    assert [c.payload["placements"][0]["az"] for c in launches] == ["us-east-1b", "us-east-1c"]
    (join,) = stubs.calls_to("swarm", "join")
    assert join.payload["host"]["az"] == "us-east-1c"


def test_a_failure_after_launch_terminates_the_replacement_records_and_releases(
    stubs: LambdaStubs, repair_arn: str
) -> None:
    replacement = stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on("swarm", "join", LambdaError("InvalidRequest", "the swarm refused the node"))

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-fails")

    assert execution.status == "FAILED", execution.describe()
    assert execution.error == "InvalidRequest"
    assert json.loads(execution.cause or "")["errorMessage"] == "the swarm refused the node"
    path = top_path(execution)
    assert path[-5:] == ["JoinReplacement", *FAILURE_TAIL]
    (compensate,) = stubs.calls_to("hosts", "terminate_run")
    assert compensate.payload["run_id"] == "repair-i-fails", "exactly what this run launched"
    assert compensate.result == {"terminated": [replacement["instance_id"]]}
    (fail,) = stubs.calls_to("repair", "fail")
    assert (fail.payload["error"], fail.payload["cause"]) == ("InvalidRequest", execution.cause)
    assert fail.payload["operation_id"] == "repair-i-fails"
    (release,) = stubs.calls_to("cluster_state", "release_lock")
    assert release.payload["operation_id"] == "repair-i-fails"


@pytest.mark.parametrize(
    ("function", "action", "error"),
    [
        # The old tokens stay valid until the next rotation; the dead host is being terminated.
        ("swarm", "rotate_tokens", LambdaError("ScriptFailed", "rotate-tokens: cannot store the worker token")),
        # Reconcile finds a leftover instance later.
        ("hosts", "terminate_instances", LambdaError("InvalidRequest", "not the cluster's")),
    ],
)
def test_a_failure_after_the_join_keeps_the_replacement_and_records_the_repair(
    stubs: LambdaStubs, repair_arn: str, function: str, action: str, error: LambdaError
) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on(function, action, error)

    execution = run(stubs, repair_arn, FAILED_WORKER, f"repair-i-after-{action.replace('_', '-')}")

    assert execution.status == "SUCCEEDED", execution.describe()
    assert top_path(execution) == WORKER_PATH
    assert not stubs.calls_to("hosts", "terminate_run"), "a joined, rebalanced replacement is not thrown away"
    assert stubs.calls_to("repair", "record")


def test_a_replacement_that_never_gets_ready_is_compensated(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on(
        "hosts",
        "check_ready",
        lambda p: {
            "ready": False,
            "exhausted": p["attempt"] + 1 >= p["max_attempts"],
            "attempt": p["attempt"] + 1,
            "summary": "1 of 1 hosts not ready: SSM agent not online",
            "not_ready": {},
        },
    )

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-notready")

    assert execution.status == "FAILED", execution.describe()
    assert execution.error == "HostsNotReady"
    assert len(stubs.calls_to("hosts", "check_ready")) == FAST_POLL["max_attempts"]
    assert top_path(execution)[-5:] == ["RemoveAndWait", *FAILURE_TAIL]
    assert branch_path(execution, ["ReplacementNotReady"]) == ["ReplacementNotReady"]
    assert not stubs.calls_to("swarm", "join")
    (fail,) = stubs.calls_to("repair", "fail")
    assert (fail.payload["error"], fail.payload["cause"]) == (
        "HostsNotReady",
        "1 of 1 hosts not ready: SSM agent not online",
    )


def test_a_lock_never_freed_fails_the_repair_and_records_it(stubs: LambdaStubs, repair_arn: str) -> None:
    stub_repair_happy(stubs, FAILED_WORKER)
    stubs.on("cluster_state", "acquire_lock", LambdaError("InvalidRequest", "bad lease"))

    execution = run(stubs, repair_arn, FAILED_WORKER, "repair-i-nolock")

    assert execution.status == "FAILED", execution.describe()
    assert top_path(execution) == [*WORKER_PATH[:5], *FAILURE_TAIL]
    assert not stubs.calls_to("hosts", "launch_slots")
    assert stubs.calls_to("repair", "fail")


# ---------------------------------------------------------------- static shape


def test_the_definition_is_closed_reachable_and_every_task_retries_and_catches() -> None:
    states = DEFINITION["States"]
    branches = [b for s in states.values() for b in s.get("Branches", [])]
    for graph in [DEFINITION, *branches]:
        seen, todo = set(), [graph["StartAt"]]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(targets(graph["States"][current]))
        assert seen == set(graph["States"])
    every = {name: state for name, state, _top in walk(states)}
    used = set(PLACEHOLDER.findall((STATEMACHINES / "repair.asl.json").read_text()))
    assert used == {
        "RepairFunctionArn",
        "SwarmFunctionArn",
        "HostsFunctionArn",
        "NetworkFunctionArn",
        "ClusterStateFunctionArn",
    }
    for name, state, top in walk(states):
        if state["Type"] == "Parallel":
            assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        if state["Type"] != "Task":
            continue
        assert set(state["Retry"][0]["ErrorEquals"]) == TRANSIENT, name
        assert all(r["JitterStrategy"] == "FULL" and "States.ALL" not in r["ErrorEquals"] for r in state["Retry"]), name
        # Inside a branch an error ends the branch, and the Parallel's Catch compensates.
        assert (
            (state["Catch"][-1]["ErrorEquals"] == ["States.ALL"])
            if top
            else ("States.ALL" not in str(state.get("Catch")))
        ), name
        assert state["Parameters"]["spec.$"] == "$.spec", name
    # Every failure funnels into compensation, which always reaches the record and the release.
    failure_targets = {c["Next"] for s in states.values() for c in s.get("Catch", []) if c["ResultPath"] == "$.failure"}
    assert failure_targets == {"Compensate"}
    assert states["Compensate"]["Catch"][0]["Next"] == states["Compensate"]["Next"] == "RecordFailure"
    assert states["RecordFailure"]["Catch"][0]["Next"] == "ReleaseLockAfterFailure"
    assert [s for s in states.values() if s["Type"] == "Fail"] == [states["RepairFailed"]]
    waits = [s for s in every.values() if s["Type"] == "Wait"]
    assert all(s["SecondsPath"] == "$.poll.interval_seconds" for s in waits)
    # The operation and the run that tags the replacement are both this execution.
    for name in ("Guard", "AcquireLock", "Claim", "RecordRepair", "RecordFailure", "ReleaseLock"):
        assert states[name]["Parameters"]["operation_id.$"] == "$$.Execution.Name", name
    assert every["LaunchReplacement"]["Parameters"]["run_id.$"] == "$$.Execution.Name"
    assert every["RemoveDeadNode"]["Parameters"]["force.$"] == "$.claim.instance_gone"
    # Waiting out an election is bounded: about a minute of one-second retries.
    (settling,) = [r for r in states["FindHealthyManager"]["Retry"] if r["ErrorEquals"] == ["SwarmSettling"]]
    assert (settling["IntervalSeconds"], settling["BackoffRate"]) == (1, 1)
    assert 30 <= settling["MaxAttempts"] <= 120


def test_cfn_lint_accepts_the_definition() -> None:
    from cfnlint.api import lint_all

    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Repair": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/swarmwarden-statemachine",
                    "Definition": DEFINITION,
                    "DefinitionSubstitutions": {
                        key: f"arn:aws:lambda:us-east-1:123456789012:function:{key}" for key in SUBSTITUTIONS
                    },
                },
            }
        },
    }
    problems = [m for m in lint_all(json.dumps(template)) if m.rule.id[0] in "EW"]
    assert not problems, "\n".join(f"{m.rule.id} {m.message}" for m in problems)


def test_the_input_sample_is_what_the_trigger_starts() -> None:
    repair.RepairInput.model_validate_json((EVENTS / "repair-input.json").read_text())
