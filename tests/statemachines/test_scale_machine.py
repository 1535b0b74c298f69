"""The scale workflow in moto's ASL engine: the path taken, what each step was asked, and that every
way out records the result on the operation and releases the lock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter
from swarmwarden.domain.model import Host, LaunchResult, Role, SwarmRef
from swarmwarden.domain.placement import Placement
from swarmwarden.steps import cluster_state, custom_resource, hosts, scale, swarm

from tests.statemachines.aslrunner import AslRunner, Execution, LambdaError, LambdaStubs
from tests.statemachines.samples import EVENTS, FAST_POLL, NETWORK, host, load_definition
from tests.statemachines.samples import joined as join_answer

DEFINITION = load_definition("scale")
REQUESTS: dict[str, TypeAdapter[Any]] = {
    "network": TypeAdapter(dict),
    "hosts": hosts.REQUEST,
    "swarm": swarm.REQUEST,
    "cluster_state": cluster_state.REQUEST,
    "custom_resource": custom_resource.REPORT,
    "scale": scale.REQUEST,
}
START = ["AcquireLock", "RecordStarted", "EnsureNetwork", "Plan", "RecordPlan", "HasAdditions"]
FINISH = ["VerifySwarm", "RecordCluster", "RecordSucceeded", "ReleaseLock", "ShouldReportSuccess"]
FAILED = ["Compensate", "WereNodesLeaving", "RecordFailure", "ReleaseLockAfterFailure", "ShouldReportFailure"]
RESTORED = ["Compensate", "WereNodesLeaving", "RestoreLeaving", *FAILED[2:]]


@pytest.fixture
def scale_arn(runner: AslRunner) -> str:
    from tests.statemachines.samples import STATEMACHINES

    return runner.create("scale", STATEMACHINES / "scale.asl.json")


def scale_input(*, cfn: bool = False, **spec: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"scale-input{'-cfn' if cfn else ''}.json").read_text())
    data["poll"] = dict(FAST_POLL)
    data["spec"].update(spec)
    return data


def hosts_of(managers: int, workers: int, first_worker: int = 0) -> tuple[list[Host], list[Host]]:
    m = [Host.model_validate(host(i, "manager", f"manager-{i}")) for i in range(managers)]
    w = [
        Host.model_validate(host(100 + i, "worker", f"worker-{i}")) for i in range(first_worker, first_worker + workers)
    ]
    return m, w


def keep_of(managers: list[Host], workers: list[Host]) -> LaunchResult:
    everyone = [*managers, *workers]
    return LaunchResult(
        seed=managers[0],
        managers=tuple(managers[1:]),
        workers=tuple(workers),
        instance_ids=tuple(h.instance_id for h in everyone),
        launched_instance_ids=(),
    )


def plan_of(keep: LaunchResult, added: list[Placement], retirees: list[Host]) -> dict[str, Any]:
    plan = scale.ScalePlan(
        summary=f"add {len(added)}; remove {len(retirees)}",
        adds=len(added),
        removes=len(retirees),
        added=tuple(added),
        keep=keep,
        retirees=tuple(scale.Retiree(host=h, node_id=f"node-{h.slot}") for h in retirees),
        retiring_ids=tuple(h.instance_id for h in retirees),
        manager=keep.seed,
        swarm=SwarmRef(swarm_id="swarm0123456789", manager_addr=keep.seed.private_ip),
    )
    return plan.model_dump(mode="json")


def nodes_of(result: LaunchResult) -> list[dict[str, Any]]:
    everyone = [result.seed, *result.managers, *result.workers]
    return [
        {
            "id": f"node-{h.slot}",
            "hostname": h.slot,
            "addr": h.private_ip,
            "role": h.role.value,
            "status": "ready",
            "availability": "active",
            "leader": h is result.seed,
            "reachability": "reachable" if h.role is Role.MANAGER else None,
        }
        for h in everyone
    ]


def launched(payload: dict[str, Any]) -> dict[str, Any]:
    """launch_slots: a new instance per placement, all of this run."""
    new = [host(200 + i, p["role"], p["slot"]) | {"az": p["az"]} for i, p in enumerate(payload["placements"])]
    ids = [h["instance_id"] for h in new]
    return {"hosts": new, "instance_ids": ids, "launched_instance_ids": ids}


def drained_after(rounds: int) -> Any:
    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        attempt = payload["attempt"] + 1
        done = attempt >= rounds
        return {
            "done": done,
            "exhausted": not done and attempt >= payload["max_attempts"],
            "attempt": attempt,
            "summary": "tasks moved" if done else "web 3/4 (updating)",
        }

    return answer


def ready(payload: dict[str, Any]) -> dict[str, Any]:
    return {"ready": True, "exhausted": False, "attempt": payload["attempt"] + 1, "summary": "ready", "not_ready": {}}


def stub_common(stubs: LambdaStubs, plan: dict[str, Any], final: LaunchResult) -> None:
    stubs.on("cluster_state", "acquire_lock", {"operation_id": "op", "kind": "scale", "expires_at": 1.0})
    stubs.on("cluster_state", "operation_step", {"operation_id": "op", "status": "running", "steps": 1})
    stubs.on("cluster_state", "release_lock", {"released": True})
    stubs.on("cluster_state", "provisioned", {"recorded": len(final.instance_ids)})
    stubs.on("network", "ensure_network", NETWORK)
    stubs.on("scale", "plan", plan)
    stubs.on("scale", "target", lambda p: scale.target(scale.Target.model_validate(p)).model_dump(mode="json"))
    stubs.on("hosts", "launch_slots", launched)
    stubs.on("hosts", "check_ready", ready)
    stubs.on("hosts", "terminate_run", {"terminated": []})
    stubs.on("swarm", "join", join_answer)
    stubs.on("swarm", "rebalance", {"updated": ["web"], "skipped": []})
    stubs.on("swarm", "verify", {"nodes": nodes_of(final)})
    stubs.on("scale", "retire", lambda p: {"marked": [r["host"]["instance_id"] for r in p["retirees"]]})
    stubs.on("scale", "evacuate", {"paused": ["node-worker-4"], "updated": ["web"]})
    stubs.on("scale", "check_drained", drained_after(2))
    stubs.on("swarm", "drain", lambda p: {"node": p["node"], "availability": "drain"})
    stubs.on("swarm", "remove_node", lambda p: {"node": p["node"], "removed": True, "was_manager": False})
    stubs.on("hosts", "terminate_instances", lambda p: {"terminated": p["instance_ids"]})
    stubs.on("scale", "forget", lambda p: {"forgotten": [r["host"]["instance_id"] for r in p["retirees"]]})
    stubs.on("scale", "restore", lambda p: {"activated": [r["node_id"] for r in p["retirees"]], "absent": []})
    stubs.on("custom_resource", "report", {"reported": True})


def top_path(execution: Execution) -> list[str]:
    return execution.top_level_states(DEFINITION)


def check_requests(stubs: LambdaStubs) -> None:
    """Every request the workflow built parses as the function's own request model."""
    for call in stubs.calls:
        REQUESTS[call.function].validate_python(call.payload)


def steps_recorded(stubs: LambdaStubs) -> list[tuple[str, str | None]]:
    return [(c.payload["step"], c.payload.get("status")) for c in stubs.calls_to("cluster_state", "operation_step")]


def assert_status(execution: Execution, status: str) -> None:
    assert execution.status == status, execution.describe()


def test_scale_out_launches_only_the_new_slots_and_joins_managers_one_at_a_time(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str
) -> None:
    managers, workers = hosts_of(1, 2)
    keep = keep_of(managers, workers)
    added = [
        Placement(slot="manager-1", role=Role.MANAGER, az="us-east-1b"),
        Placement(slot="manager-2", role=Role.MANAGER, az="us-east-1c"),
        *(Placement(slot=f"worker-{i}", role=Role.WORKER, az="us-east-1a") for i in (2, 3, 4)),
    ]
    final = scale.target(
        scale.Target.model_validate(
            {
                "action": "target",
                "spec": scale_input()["spec"],
                "keep": keep.model_dump(mode="json"),
                "launched": launched({"placements": [p.model_dump(mode="json") for p in added]}),
            }
        )
    ).hosts
    stub_common(stubs, plan_of(keep, added, []), final)

    execution = runner.run(scale_arn, scale_input(managers=3), name="scale-out")

    assert_status(execution, "SUCCEEDED")
    assert top_path(execution) == [
        *START, "LaunchHosts", "Target", "StartReadinessWait", "WaitForHosts", "CheckHostsReady", "AreHostsReady",
        "JoinManagers", "JoinWorkers", "RecordJoined", "HasRemovals", "Rebalance", *FINISH, "Scaled",
    ]  # fmt: skip
    check_requests(stubs)
    (launch,) = stubs.calls_to("hosts", "launch_slots")
    assert [p["slot"] for p in launch.payload["placements"]] == [p.slot for p in added]
    assert launch.payload["run_id"] == "scale-out"
    # Only the new hosts wait and join; the managers first, in order (one at a time).
    (check,) = stubs.calls_to("hosts", "check_ready")
    assert len(check.payload["instance_ids"]) == 5
    joins = [c.payload["host"]["slot"] for c in stubs.calls_to("swarm", "join")]
    assert joins[:2] == ["manager-1", "manager-2"]
    assert sorted(joins[2:]) == ["worker-2", "worker-3", "worker-4"]
    assert all(c.payload["swarm"]["swarm_id"] == "swarm0123456789" for c in stubs.calls_to("swarm", "join"))
    # The whole cluster is verified and recorded, with the new spec.
    (verify,) = stubs.calls_to("swarm", "verify")
    assert len(verify.payload["hosts"]["instance_ids"]) == 8
    (record,) = stubs.calls_to("cluster_state", "provisioned")
    assert record.payload["spec"]["managers"] == 3
    assert record.payload["spec"]["workers"] == 5
    assert steps_recorded(stubs) == [("started", "running"), ("planned", None), ("joined", None), ("done", "succeeded")]
    (release,) = stubs.calls_to("cluster_state", "release_lock")
    assert release.payload["operation_id"] == "scale-demo-3b1f2c"
    assert not stubs.calls_to("scale", "retire")
    assert not stubs.calls_to("custom_resource", "report")


def test_scale_in_moves_the_tasks_before_it_drains_removes_and_terminates(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str
) -> None:
    managers, workers = hosts_of(1, 2)
    _, leaving = hosts_of(1, 3, first_worker=2)
    keep = keep_of(managers, workers)
    stub_common(stubs, plan_of(keep, [], leaving), keep)

    execution = runner.run(scale_arn, scale_input(managers=1, workers=2), name="scale-in")

    assert_status(execution, "SUCCEEDED")
    assert top_path(execution) == [
        *START, "KeepHosts", "HasRemovals", "Retire", "Evacuate", "StartDrainWait",
        "WaitForTasks", "CheckTasksMoved", "AreTasksMoved", "WaitForTasks", "CheckTasksMoved", "AreTasksMoved",
        "DrainNodes", "RemoveNodes", "TerminateRetired", "ForgetRetired", "RecordRemoved", *FINISH, "Scaled",
    ]  # fmt: skip
    check_requests(stubs)
    ids = [h.instance_id for h in leaving]
    node_ids = [f"node-{h.slot}" for h in leaving]
    # RETIRING before anything touches them; removed in the plan's order, one at a time, with force.
    order = [c.action for c in stubs.calls if c.function in {"scale", "swarm", "hosts"}]
    assert order.index("retire") < order.index("evacuate") < order.index("drain") < order.index("remove_node")
    assert order.index("remove_node") < order.index("terminate_instances") < order.index("forget")
    assert [c.payload["node"] for c in stubs.calls_to("swarm", "remove_node")] == node_ids
    assert all(c.payload["force"] is True for c in stubs.calls_to("swarm", "remove_node"))
    assert sorted(c.payload["node"] for c in stubs.calls_to("swarm", "drain")) == sorted(node_ids)
    (terminate,) = stubs.calls_to("hosts", "terminate_instances")
    assert terminate.payload["instance_ids"] == ids
    assert len(stubs.calls_to("scale", "check_drained")) == 2
    (verify,) = stubs.calls_to("swarm", "verify")
    assert verify.payload["hosts"] == keep.model_dump(mode="json")
    assert not stubs.calls_to("hosts", "launch_slots")
    # No forced rebalance after a scale-in: it would stop tasks before their replacements run.
    assert not stubs.calls_to("swarm", "rebalance")
    assert steps_recorded(stubs)[-2:] == [("removed", None), ("done", "succeeded")]


def test_a_failed_scale_out_terminates_what_it_launched_records_the_error_and_releases(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str
) -> None:
    managers, workers = hosts_of(1, 2)
    keep = keep_of(managers, workers)
    added = [Placement(slot="worker-2", role=Role.WORKER, az="us-east-1a")]
    stub_common(stubs, plan_of(keep, added, []), keep)
    stubs.on("swarm", "join", LambdaError("InvalidRequest", "join: not a host of this cluster"))

    execution = runner.run(scale_arn, scale_input(workers=3), name="scale-fails")

    assert_status(execution, "FAILED")
    assert execution.error == "InvalidRequest"
    assert top_path(execution)[-7:] == ["JoinWorkers", *FAILED, "ScaleFailed"]
    assert not stubs.calls_to("scale", "restore")
    (compensate,) = stubs.calls_to("hosts", "terminate_run")
    assert compensate.payload["run_id"] == "scale-fails"
    (failed,) = [c for c in stubs.calls_to("cluster_state", "operation_step") if c.payload["step"] == "failed"]
    assert failed.payload["status"] == "failed"
    assert failed.payload["error"].startswith("InvalidRequest: ")
    assert len(stubs.calls_to("cluster_state", "release_lock")) == 1
    assert not stubs.calls_to("cluster_state", "provisioned")


def test_tasks_that_do_not_move_stop_the_scale_in_before_anything_is_removed(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str
) -> None:
    managers, workers = hosts_of(1, 2)
    _, leaving = hosts_of(1, 1, first_worker=2)
    keep = keep_of(managers, workers)
    stub_common(stubs, plan_of(keep, [], leaving), keep)
    stubs.on("scale", "check_drained", drained_after(99))

    execution = runner.run(scale_arn, scale_input(workers=2), name="stuck")

    assert_status(execution, "FAILED")
    assert execution.error == "TasksNotMoved"
    assert top_path(execution)[-8:] == ["TasksNotMoved", *RESTORED, "ScaleFailed"]
    # The paused nodes go back to work: the cluster is as it was, the error on the operation.
    (restore,) = stubs.calls_to("scale", "restore")
    assert [r["node_id"] for r in restore.payload["retirees"]] == ["node-worker-2"]
    assert len(stubs.calls_to("scale", "check_drained")) == FAST_POLL["max_attempts"]
    for action in ("drain", "remove_node"):
        assert not stubs.calls_to("swarm", action)
    assert not stubs.calls_to("hosts", "terminate_instances")
    assert len(stubs.calls_to("cluster_state", "release_lock")) == 1


def test_a_held_lock_fails_the_run_without_touching_the_cluster(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str
) -> None:
    managers, workers = hosts_of(1, 2)
    keep = keep_of(managers, workers)
    stub_common(stubs, plan_of(keep, [], []), keep)
    stubs.on("cluster_state", "acquire_lock", LambdaError("LockHeld", "repair operation r-1 is in progress"))

    execution = runner.run(scale_arn, scale_input(), name="locked")

    assert_status(execution, "FAILED")
    assert execution.error == "LockHeld"
    assert top_path(execution) == ["AcquireLock", *FAILED, "ScaleFailed"]
    assert {c.function for c in stubs.calls} == {"cluster_state", "hosts"}
    # The release names this operation only: the holder's lease stays.
    (release,) = stubs.calls_to("cluster_state", "release_lock")
    assert release.payload["operation_id"] == "scale-demo-3b1f2c"


@pytest.mark.parametrize("fails", [False, True])
def test_a_run_started_by_cloudformation_reports_its_end(
    runner: AslRunner, stubs: LambdaStubs, scale_arn: str, fails: bool
) -> None:
    managers, workers = hosts_of(1, 2)
    keep = keep_of(managers, workers)
    stub_common(stubs, plan_of(keep, [], []), keep)
    if fails:
        stubs.on("swarm", "verify", LambdaError("InvalidRequest", "no"))

    execution = runner.run(scale_arn, scale_input(cfn=True), name=f"cfn-{fails}")

    assert_status(execution, "FAILED" if fails else "SUCCEEDED")
    (report,) = stubs.calls_to("custom_resource", "report")
    check_requests(stubs)
    assert report.payload["status"] == ("FAILED" if fails else "SUCCESS")
    if not fails:
        assert report.payload["data"]["hosts"] == keep.model_dump(mode="json")
        assert top_path(execution)[-2:] == ["ReportSuccess", "Scaled"]
    else:
        assert report.payload["reason"].startswith("InvalidRequest: ")
        assert top_path(execution)[-3:] == ["ShouldReportFailure", "ReportFailure", "ScaleFailed"]


def test_every_failure_path_records_the_error_and_releases_the_lock() -> None:
    states = DEFINITION["States"]

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name == goal:
                return True
            if name in seen:
                continue
            seen.add(name)
            state = states[name]
            todo += [state[k] for k in ("Next", "Default") if k in state]
            todo += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        return False

    catches = {c["Next"] for s in states.values() for c in s.get("Catch", [])} | {"HostsNotReady", "TasksNotMoved"}
    ending = {"ScaleFailed", "RecordFailure", "ReleaseLockAfterFailure", "ShouldReportFailure"}
    for start in catches - ending:
        assert reaches(start, "RecordFailure"), start
        assert reaches(start, "ReleaseLockAfterFailure"), start
    assert states["LaunchHosts"]["Parameters"]["run_id.$"] == "$$.Execution.Name"
    assert states["Compensate"]["Parameters"] == {
        "action": "terminate_run",
        "spec.$": "$.spec",
        "run_id.$": "$$.Execution.Name",
    }
    assert states["JoinManagers"]["MaxConcurrency"] == 1
    assert states["RemoveNodes"]["MaxConcurrency"] == 1, "managers leave one at a time"
    assert 1 < states["JoinWorkers"]["MaxConcurrency"] <= 40
    assert states["RemoveNodes"]["ItemSelector"]["force"] is True
