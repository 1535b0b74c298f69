"""The cluster table's repair items on moto's DynamoDB: the pause flag and slot claims."""

import boto3
import pytest
from swarmwarden.adapters.store import ClusterStore


@pytest.fixture
def store(cluster_table: str) -> ClusterStore:
    return ClusterStore(boto3.client("dynamodb"), cluster_table)


def test_pause_flag_is_set_read_and_cleared_by_deleting_the_item(store: ClusterStore) -> None:
    assert store.repairs_paused("demo") is None
    store.pause_repairs("demo", "3 of 5 nodes unhealthy")
    assert store.repairs_paused("demo") == "3 of 5 nodes unhealthy"
    assert store.repairs_paused("other") is None
    # The documented resume: delete the PAUSE item (docs/operations.md).
    boto3.client("dynamodb").delete_item(
        TableName="ClusterTable", Key={"pk": {"S": "CLUSTER#demo"}, "sk": {"S": "PAUSE"}}
    )
    assert store.repairs_paused("demo") is None


def test_a_slot_is_claimed_once_and_reclaimed_only_by_its_owner(store: ClusterStore) -> None:
    assert store.claim_slot("demo", "worker-3", "repair-i-1")
    assert store.claim_slot("demo", "worker-3", "repair-i-1"), "a retried claim is idempotent"
    assert not store.claim_slot("demo", "worker-3", "repair-i-2")
    assert store.claim_slot("demo", "worker-4", "repair-i-2")
    assert store.slot_claims("demo") == {"worker-3": "repair-i-1", "worker-4": "repair-i-2"}
    assert store.nodes("demo") == [], "claims are not node records"
    store.release_slot("demo", "worker-3")
    assert store.slot_claims("demo") == {"worker-4": "repair-i-2"}
