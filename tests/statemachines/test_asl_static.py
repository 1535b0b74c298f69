"""Static checks on the ASL files and the workflow-input samples: no engine needed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from swarmwarden import errors
from swarmwarden.domain.model import ClusterSpec, Poll

from tests.statemachines.aslrunner import FUNCTIONS, PLACEHOLDER
from tests.statemachines.samples import EVENTS, STATEMACHINES

MACHINES = ["provision", "teardown", "scale"]
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    # Not in the contract table, but AWS recommends retrying it too (bp-lambda-serviceexception).
    "Lambda.ClientExecutionTimeoutException",
}
TRANSIENT = {"TransientError", *LAMBDA_SERVICE_ERRORS}
# docs/architecture.md: which function serves which action.
CONTRACT_ACTIONS = {
    "NetworkFunctionArn": {"ensure_network", "ensure_ecs_cluster", "delete_network", "delete_ecs_cluster"},
    "HostsFunctionArn": {
        "launch",
        "launch_slots",
        "check_ready",
        "terminate_run",
        "terminate_instances",
        "terminate_cluster",
        "check_terminated",
    },
    "SwarmFunctionArn": {"init", "join", "verify", "delete_tokens", "drain", "remove_node", "rebalance"},
    "ClusterStateFunctionArn": {
        "provisioned",
        "tearing_down",
        "torn_down",
        "acquire_lock",
        "release_lock",
        "operation_step",
    },
    "CustomResourceFunctionArn": {"report"},
    "ScaleFunctionArn": {"plan", "target", "retire", "evacuate", "check_drained", "restore", "forget"},
}
OUR_ERRORS = {
    name
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.SwarmwardenError) and obj is not errors.SwarmwardenError
}


def load(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads((STATEMACHINES / f"{name}.asl.json").read_text())
    return definition


def walk(states: dict[str, Any], top: bool = True) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every state, with whether it is at the top level (not inside a Map's ItemProcessor or a Parallel's
    branch)."""
    for name, state in states.items():
        yield name, state, top
        processor = state.get("ItemProcessor") or state.get("Iterator")
        for inner in [processor] if processor else state.get("Branches", []):
            yield from walk(inner["States"], top=False)


def targets(state: dict[str, Any]) -> list[str]:
    found = [state[k] for k in ("Next", "Default") if k in state]
    found += [c["Next"] for c in state.get("Choices", [])]
    found += [c["Next"] for c in state.get("Catch", [])]
    return found


def placeholder_of(state: dict[str, Any]) -> str:
    match = PLACEHOLDER.fullmatch(state["Resource"])
    assert match, f"Resource must be exactly one substitution, got {state['Resource']!r}"
    return match.group(1)


@pytest.mark.parametrize("name", MACHINES)
def test_placeholders_are_the_known_substitutions(name: str) -> None:
    text = (STATEMACHINES / f"{name}.asl.json").read_text()
    used = set(PLACEHOLDER.findall(text))
    assert used, "the function ARNs must come in through DefinitionSubstitutions"
    assert used <= set(FUNCTIONS), f"unknown substitutions: {used - set(FUNCTIONS)}"
    assert not re.search(r"arn:aws[a-z-]*:lambda:", text), "no hard-coded Lambda ARNs"
    assert "SWMTKN-" not in text


@pytest.mark.parametrize("name", MACHINES)
def test_graph_is_closed_and_reachable(name: str) -> None:
    def check(states: dict[str, Any], start: str) -> None:
        assert start in states
        for state_name, state in states.items():
            for target in targets(state):
                assert target in states, f"{state_name} -> {target}: no such state"
            assert state["Type"] in {"Task", "Pass", "Wait", "Choice", "Map", "Parallel", "Succeed", "Fail"}
            if state["Type"] not in {"Choice", "Succeed", "Fail"}:
                assert ("Next" in state) != bool(state.get("End")), f"{state_name}: exactly one of Next/End"
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(targets(states[current]))
        assert seen == set(states), f"unreachable: {set(states) - seen}"

    definition = load(name)
    check(definition["States"], definition["StartAt"])
    for _, state, _ in walk(definition["States"]):
        for inner in [state["ItemProcessor"]] if state["Type"] == "Map" else state.get("Branches", []):
            check(inner["States"], inner["StartAt"])


@pytest.mark.parametrize("name", MACHINES)
def test_every_task_retries_and_every_top_level_step_catches(name: str) -> None:
    for state_name, state, top in walk(load(name)["States"]):
        if state["Type"] == "Task":
            retries = state.get("Retry", [])
            assert retries, f"{state_name}: no Retry"
            transient = retries[0]
            assert set(transient["ErrorEquals"]) == TRANSIENT, state_name
            assert transient["BackoffRate"] == 2, state_name
            assert transient["JitterStrategy"] == "FULL", state_name
            assert transient["MaxAttempts"] >= 3, state_name
            assert "MaxDelaySeconds" in transient, state_name
            for retry in retries:
                assert "States.ALL" not in retry["ErrorEquals"], f"{state_name}: never retry everything"
                assert retry["JitterStrategy"] == "FULL", state_name
                assert set(retry["ErrorEquals"]) <= OUR_ERRORS | LAMBDA_SERVICE_ERRORS, state_name
                assert "InvalidRequest" not in retry["ErrorEquals"], f"{state_name}: InvalidRequest is final"
        if top and state["Type"] in {"Task", "Map", "Parallel"}:
            catches = state.get("Catch", [])
            assert [c["ErrorEquals"] for c in catches] == [["States.ALL"]], f"{state_name}: Catch States.ALL"
        if not top and state["Type"] in {"Task", "Map"}:
            assert "Catch" not in state, f"{state_name}: inside a Map or a branch, the outer state's Catch handles it"


@pytest.mark.parametrize("name", MACHINES)
def test_every_task_calls_a_contract_action(name: str) -> None:
    definition = load(name)
    for state_name, state, top in walk(definition["States"]):
        if state["Type"] == "Map":
            selector = state["ItemSelector"]
            (task,) = state["ItemProcessor"]["States"].values()
            assert "Parameters" not in task, "the Map's ItemSelector builds the whole request"
            assert selector["spec.$"] == "$.spec", state_name
            assert selector["action"] in CONTRACT_ACTIONS[placeholder_of(task)], state_name
        if state["Type"] == "Task" and top:
            params = state["Parameters"]
            assert params["action"] in CONTRACT_ACTIONS[placeholder_of(state)], state_name
            if params["action"] == "report":
                # The report request (steps.custom_resource.Report) carries cfn, not the spec.
                assert "spec.$" not in params, state_name
                assert params["cfn.$"] == "$.cfn", state_name
            else:
                assert params["spec.$"] == "$.spec", state_name


def test_provision_specifics() -> None:
    states = {name: state for name, state, _top in walk(load("provision")["States"])}
    # The run id that tags launched instances and the one compensation terminates are both the execution name.
    assert states["LaunchHosts"]["Parameters"]["run_id.$"] == "$$.Execution.Name"
    assert states["Compensate"]["Parameters"]["run_id.$"] == "$$.Execution.Name"
    assert states["Compensate"]["Parameters"]["action"] == "terminate_run"
    # Raft members join one at a time; workers in bounded parallel (an inline Map runs at most 40).
    assert states["JoinManagers"]["MaxConcurrency"] == 1
    assert 1 < states["JoinWorkers"]["MaxConcurrency"] <= 40
    # ...side by side: both run under one Parallel.
    (joins,) = [s for s in states.values() if s["Type"] == "Parallel"]
    assert {b["StartAt"] for b in joins["Branches"]} == {"JoinManagers", "JoinWorkers"}
    for map_name in ("JoinManagers", "JoinWorkers"):
        assert states[map_name]["ResultPath"] is None, "join results are not kept: the state stays small"
        (task,) = states[map_name]["ItemProcessor"]["States"].values()
        script_retry = [r for r in task["Retry"] if r["ErrorEquals"] == ["ScriptFailed"]]
        assert [r["MaxAttempts"] for r in script_retry] == [2]
    verify_retries = [r["ErrorEquals"] for r in states["VerifySwarm"]["Retry"]]
    assert ["SwarmNotAsPlanned"] in verify_retries
    # Compensation failing must not stop the report and the Fail.
    assert states["Compensate"]["Catch"][0]["Next"] == states["Compensate"]["Next"]
    assert states["Compensate"]["Catch"][0]["ResultPath"] != "$.failure", "keep the original failure"


@pytest.mark.parametrize("name", MACHINES)
def test_waits_and_fails_take_their_values_from_the_input(name: str) -> None:
    states = load(name)["States"]
    waits = [s for s in states.values() if s["Type"] == "Wait"]
    assert waits
    assert all(s == {"Type": "Wait", "SecondsPath": "$.poll.interval_seconds", "Next": s["Next"]} for s in waits)
    fails = [s for s in states.values() if s["Type"] == "Fail"]
    assert len(fails) == 1
    assert fails[0]["ErrorPath"] == "$.failure.Error"
    assert fails[0]["CausePath"] == "$.failure.Cause"


@pytest.mark.parametrize(
    "sample",
    [
        "provision-input",
        "provision-input-cfn",
        "teardown-input",
        "teardown-input-cfn",
        "scale-input",
        "scale-input-cfn",
    ],
)
def test_workflow_input_samples_match_the_contract(sample: str) -> None:
    data = json.loads((EVENTS / f"{sample}.json").read_text())
    ClusterSpec.model_validate(data["spec"])
    Poll.model_validate(data["poll"])
    expected = {"spec", "poll", "cfn"} if sample.endswith("-cfn") else {"spec", "poll"}
    if sample.startswith("scale"):
        expected.add("operation_id")
    assert set(data) == expected
    if "cfn" in data:
        assert set(data["cfn"]) == {
            "response_url",
            "stack_id",
            "request_id",
            "logical_resource_id",
            "physical_resource_id",
        }


def test_cfn_lint_accepts_the_definitions() -> None:
    """cfn-lint's StateMachine schema (E3601 and friends), on the files inlined as `Definition`."""
    from cfnlint.api import lint_all

    template: dict[str, Any] = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}
    for name in MACHINES:
        template["Resources"][name.title()] = {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "RoleArn": "arn:aws:iam::123456789012:role/swarmwarden-statemachine",
                "Definition": load(name),
                "DefinitionSubstitutions": {
                    key: f"arn:aws:lambda:us-east-1:123456789012:function:{key}" for key in FUNCTIONS
                },
            },
        }
    problems = [m for m in lint_all(json.dumps(template)) if m.rule.id[0] in "EW"]
    assert not problems, "\n".join(f"{m.rule.id} {m.message}" for m in problems)
