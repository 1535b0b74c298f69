"""ClusterStateFunction's lock and operation actions, through its real handler on moto's DynamoDB."""

import importlib.util
from pathlib import Path

import boto3
import pytest
from swarmwarden.adapters.operations import LockHeld, Operation, OperationKind, Operations

SPEC = {"cluster_name": "demo", "ami_id": "ami-0123456789abcdef0"}
ROOT = Path(__file__).parents[2]


class Context:
    function_name = "cluster-state"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cluster-state"
    aws_request_id = "req-1"


@pytest.fixture
def handler(cluster_table: str, monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "CLUSTER_NAME": "demo",
        "TABLE_NAME": cluster_table,
        "TOKEN_PARAMETER_PREFIX": "/swarmwarden/demo/tokens",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("cluster_state_app", ROOT / "functions/cluster_state/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda event: module.lambda_handler(event, Context())


def test_the_lock_is_taken_renewed_refused_and_released(handler) -> None:
    take = {"action": "acquire_lock", "spec": SPEC, "operation_id": "scale-1", "kind": "scale"}
    assert handler(take)["operation_id"] == "scale-1"
    assert handler(take)["operation_id"] == "scale-1"
    with pytest.raises(LockHeld, match="scale operation scale-1 is in progress"):
        handler(take | {"operation_id": "repair-1", "kind": "repair"})
    assert handler({"action": "release_lock", "spec": SPEC, "operation_id": "scale-1"}) == {"released": True}
    assert handler({"action": "release_lock", "spec": SPEC, "operation_id": "scale-1"}) == {"released": False}


def test_operation_steps_are_recorded_with_status_and_error(handler) -> None:
    Operations(boto3.client("dynamodb"), "ClusterTable").create("demo", Operation(id="op-1", kind=OperationKind.SCALE))
    step = {"action": "operation_step", "spec": SPEC, "operation_id": "op-1"}
    assert handler(step | {"step": "launch", "status": "running"}) == {
        "operation_id": "op-1",
        "status": "running",
        "steps": 1,
    }
    done = handler(step | {"step": "failed", "status": "failed", "error": "ScriptFailed: join"})
    assert done == {"operation_id": "op-1", "status": "failed", "steps": 2}
    stored = Operations(boto3.client("dynamodb"), "ClusterTable").get("demo", "op-1")
    assert stored.error == "ScriptFailed: join"
    assert [s.name for s in stored.steps] == ["launch", "failed"]
