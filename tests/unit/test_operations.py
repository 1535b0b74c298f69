"""Operations and the per-cluster lock, on moto's DynamoDB."""

import threading

import boto3
import pytest
from swarmwarden.adapters.operations import (
    LockHeld,
    Operation,
    OperationExists,
    OperationKind,
    Operations,
    OperationStatus,
)
from swarmwarden.adapters.store import ClusterStore, NodeState
from swarmwarden.domain.model import Host, Role


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(cluster_table: str) -> str:
    return cluster_table


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def operations(table: str, clock: Clock) -> Operations:
    return Operations(boto3.client("dynamodb"), table, clock=clock)


def test_one_holder_at_a_time_and_the_holder_may_take_it_again(operations: Operations) -> None:
    operations.acquire("demo", "op-1", OperationKind.SCALE, 600)
    operations.acquire("demo", "op-1", OperationKind.SCALE, 600)  # a retried step
    with pytest.raises(LockHeld, match="scale operation op-1 is in progress") as refused:
        operations.acquire("demo", "op-2", OperationKind.REPAIR, 600)
    assert refused.value.holder.operation_id == "op-1"
    assert operations.release("demo", "op-2") is False
    assert operations.release("demo", "op-1") is True
    operations.acquire("demo", "op-2", OperationKind.REPAIR, 600)


def test_an_expired_lease_is_taken_over(operations: Operations, clock: Clock) -> None:
    operations.acquire("demo", "crashed", OperationKind.SCALE, 60)
    clock.now += 61
    assert operations.holders("demo") == []
    assert operations.acquire("demo", "next", OperationKind.REPAIR, 60).operation_id == "next"


def test_clusters_have_separate_locks(operations: Operations) -> None:
    operations.acquire("a", "op-1", OperationKind.SCALE, 600)
    operations.acquire("b", "op-2", OperationKind.SCALE, 600)
    assert [h.operation_id for h in operations.holders("a")] == ["op-1"]
    assert [h.operation_id for h in operations.holders("b")] == ["op-2"]


def test_repairs_share_the_cluster_up_to_the_limit_and_exclude_a_scale(operations: Operations) -> None:
    operations.acquire("demo", "repair-1", OperationKind.REPAIR, 600, max_repairs=2)
    operations.acquire("demo", "repair-2", OperationKind.REPAIR, 600, max_repairs=2)
    with pytest.raises(LockHeld, match="repair operation repair-1"):
        operations.acquire("demo", "repair-3", OperationKind.REPAIR, 600, max_repairs=2)
    with pytest.raises(LockHeld, match="repair operation"):
        operations.acquire("demo", "scale-1", OperationKind.SCALE, 600)
    operations.release("demo", "repair-1")
    operations.release("demo", "repair-2")
    operations.acquire("demo", "scale-1", OperationKind.SCALE, 600)
    with pytest.raises(LockHeld, match="scale operation scale-1"):
        operations.acquire("demo", "repair-4", OperationKind.REPAIR, 600, max_repairs=2)


def test_ten_concurrent_takers_one_wins(table: str) -> None:
    operations = Operations(boto3.client("dynamodb"), table)
    winners, losers = [], []
    barrier = threading.Barrier(10)

    def take(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            operations.acquire("demo", f"op-{index}", OperationKind.SCALE, 600)
            winners.append(index)
        except LockHeld:
            losers.append(index)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(winners) == 1
    assert len(losers) == 9


def test_operations_record_steps_status_and_error(operations: Operations) -> None:
    operations.create("demo", Operation(id="op-1", kind=OperationKind.SCALE, request={"workers": 4}))
    with pytest.raises(OperationExists):
        operations.create("demo", Operation(id="op-1", kind=OperationKind.SCALE))
    operations.update("demo", "op-1", status=OperationStatus.RUNNING, step="launch", detail="2 hosts")
    operations.update("demo", "op-1", status=OperationStatus.FAILED, step="join", error="ScriptFailed: x")
    stored = operations.get("demo", "op-1")
    assert stored is not None
    assert [s.name for s in stored.steps] == ["launch", "join"]
    assert stored.steps[0].detail == "2 hosts"
    assert (stored.status, stored.error, stored.request) == (OperationStatus.FAILED, "ScriptFailed: x", {"workers": 4})
    assert operations.get("demo", "missing") is None


def test_node_states_move_and_unknown_nodes_say_so(table: str) -> None:
    store = ClusterStore(boto3.client("dynamodb"), table)
    host = Host(instance_id="i-1", role=Role.WORKER, slot="worker-0", az="us-east-1a", private_ip="10.42.0.5")
    store.put_nodes("demo", [host], [])
    assert store.set_node_state("demo", "i-1", NodeState.RETIRING) is True
    assert store.node("demo", "i-1").state is NodeState.RETIRING
    assert store.set_node_state("demo", "i-9", NodeState.FAILED) is False
    store.delete_node("demo", "i-1")
    assert store.node("demo", "i-1") is None
