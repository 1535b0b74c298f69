"""The cluster table on moto's DynamoDB: records, node rows and optimistic locking."""

import boto3
import pytest
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, VersionConflict
from swarmwarden.domain.model import ClusterSpec, Host, NodeStatus, Role

SPEC = ClusterSpec(cluster_name="demo", ami_id="ami-0123456789abcdef0")


@pytest.fixture
def store(cluster_table: str) -> ClusterStore:
    return ClusterStore(boto3.client("dynamodb"), cluster_table)


def test_cluster_record_round_trips_and_versions_grow(store: ClusterStore) -> None:
    assert store.cluster("demo") is None
    first = store.put_cluster(SPEC, ClusterStatus.PROVISIONING)
    second = store.put_cluster(SPEC, ClusterStatus.READY, swarm_id="swarm-1")
    third = store.set_status("demo", ClusterStatus.TEARING_DOWN)
    assert (first.version, second.version) == (1, 2)
    assert third is not None
    assert third.version == 3
    stored = store.cluster("demo")
    assert stored is not None
    assert (stored.spec, stored.status, stored.swarm_id) == (SPEC, ClusterStatus.TEARING_DOWN, "swarm-1")


def test_a_writer_holding_a_stale_version_loses(store: ClusterStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put_cluster(SPEC, ClusterStatus.READY)
    stale = store.cluster("demo")
    store.put_cluster(SPEC, ClusterStatus.TEARING_DOWN)  # someone else wins the race
    monkeypatch.setattr(store, "cluster", lambda name: stale)
    with pytest.raises(VersionConflict, match="demo changed"):
        store.put_cluster(SPEC, ClusterStatus.READY)


def test_nodes_are_written_with_their_swarm_ids_and_deleted(store: ClusterStore) -> None:
    hosts = [
        Host(instance_id="i-1", role=Role.MANAGER, slot="manager-0", az="us-east-1a", private_ip="10.42.0.10"),
        Host(instance_id="i-2", role=Role.WORKER, slot="worker-0", az="us-east-1b", private_ip="10.42.32.10"),
    ]
    nodes = [
        NodeStatus(
            id="abc",
            hostname="h1",
            addr="10.42.0.10",
            role=Role.MANAGER,
            status="ready",
            availability="active",
            leader=True,
        )
    ]
    assert store.put_nodes("demo", hosts, nodes) == 2
    records = {r.instance_id: r for r in store.nodes("demo")}
    assert records["i-1"].node_id == "abc"
    assert records["i-2"].node_id == ""
    assert records["i-2"].az == "us-east-1b"
    assert store.delete_nodes("demo") == 2
    assert store.nodes("demo") == []
