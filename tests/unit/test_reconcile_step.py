"""ReconcileFunction's use cases on moto's DynamoDB, with EC2 and the hosts simulated: what it starts,
terminates and removes, what it leaves alone, and the rebalance after a `running` event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from swarmwarden.adapters.hosts import Hosts
from swarmwarden.adapters.operations import OperationKind, Operations
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeState, item_key
from swarmwarden.adapters.tags import tag_specification
from swarmwarden.adapters.tokens import TokenParameters
from swarmwarden.domain.model import ClusterSpec, Host, NodeStatus, Poll, Role
from swarmwarden.domain.reconcile import Instance
from swarmwarden.errors import ScriptFailed
from swarmwarden.steps import reconcile, swarm
from swarmwarden.steps.operations import ScaleStart
from swarmwarden.steps.repair import Metrics, TriggerResult

NOW = 2_000_000.0
TABLE = "ClusterTable"
SPEC = ClusterSpec(cluster_name="demo", managers=3, workers=1, ami_id="ami-0123456789abcdef0")
HOSTS = [
    Host(instance_id="i-m0", role=Role.MANAGER, slot="manager-0", az="a", private_ip="10.0.0.1"),
    Host(instance_id="i-m1", role=Role.MANAGER, slot="manager-1", az="b", private_ip="10.0.0.2"),
    Host(instance_id="i-m2", role=Role.MANAGER, slot="manager-2", az="c", private_ip="10.0.0.3"),
    Host(instance_id="i-w0", role=Role.WORKER, slot="worker-0", az="a", private_ip="10.0.0.4"),
]


def _node(host: Host, status: str = "ready") -> NodeStatus:
    return NodeStatus(
        id=f"node-{host.instance_id}",
        hostname=host.instance_id,
        addr=host.private_ip,
        role=host.role,
        status=status,
        availability="active",
        leader=host.instance_id == "i-m0",
    )


@dataclass
class World:
    """EC2 and the swarm as the test arranges them; every call reconcile makes is recorded."""

    instances: dict[str, Instance] = field(default_factory=dict)
    nodes: list[NodeStatus] = field(default_factory=list)
    dead_managers: set[str] = field(default_factory=set)
    scripts: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    executions: dict[str, str] = field(default_factory=dict)
    scales: list[tuple[str, int]] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    metrics: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def inventory(self, cluster: str) -> list[Instance]:
        return list(self.instances.values())

    def terminate(self, cluster: str, instance_ids: Sequence[str]) -> list[str]:
        self.terminated.extend(instance_ids)
        return list(instance_ids)

    def run(self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int) -> dict[str, Any]:
        self.scripts.append((instance_id, script, parameters))
        if instance_id in self.dead_managers:
            raise ScriptFailed(f"{script} on {instance_id} failed: docker is not answering")
        match script:
            case "status":
                return {"swarm_id": "s", "nodes": [n.model_dump(mode="json") for n in self.nodes]}
            case "remove-dead-node":
                self.nodes = [n for n in self.nodes if n.id != parameters["SW_NODE"]]
                return {"removed": True, "node": parameters["SW_NODE"], "was_manager": False}
            case "rebalance":
                return {"updated": ["web"], "skipped": []}
        raise AssertionError(f"unexpected script {script}")

    def start_repair(self, spec: ClusterSpec, instance_id: str, attempt: int) -> TriggerResult:
        """Step Functions' names: a name already used gives the execution started under it."""
        name = f"repair-{instance_id}" + (f"-{attempt}" if attempt else "")
        if name in self.executions:
            return TriggerResult(outcome="duplicate", instance_id=instance_id, execution_arn=name)
        self.executions[name] = "RUNNING"
        self.repairs.append(name)
        return TriggerResult(outcome="started", instance_id=instance_id, execution_arn=name)

    def execution_status(self, name: str) -> str:
        return self.executions.get(name, "")

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """The scale workflow's start (steps.operations.Starter)."""
        self.scales.append((name, payload["spec"]["workers"]))
        return f"{state_machine_arn}:{name}"


@pytest.fixture
def world(mocked_aws: None) -> tuple[World, reconcile.Adapters]:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    store = ClusterStore(dynamodb, TABLE)
    world = World()
    for host in HOSTS:
        world.instances[host.instance_id] = Instance(host.instance_id, host.role, "running", host.private_ip, 0.0)
        world.nodes.append(_node(host))
    store.put_cluster(SPEC, ClusterStatus.READY, swarm_id="s")
    store.put_nodes("demo", HOSTS, world.nodes)
    operations = Operations(dynamodb, TABLE, clock=lambda: NOW)
    adapters = reconcile.Adapters(
        cluster="demo",
        store=store,
        operations=operations,
        hosts=world,
        swarm=swarm.Adapters(
            runner=world,
            tokens=TokenParameters(boto3.client("ssm"), "/p"),
            region="us-east-1",
            token_prefix="/p",
            command_timeout_seconds=60,
        ),
        start_repair=world.start_repair,
        execution_status=world.execution_status,
        scale=ScaleStart(operations, world, "arn:aws:states:us-east-1:123456789012:stateMachine:demo-scale", Poll()),
        metrics=Metrics("demo", lambda name, value, unit, dims: world.metrics.append((name, dims))),
        grace_seconds=600,
        clock=lambda: NOW,
    )
    return world, adapters


def _findings(result: reconcile.ReconcileResult) -> list[tuple[str, str, str]]:
    return [(f.kind, f.target, f.outcome) for f in result.findings]


def test_a_healthy_cluster_needs_nothing(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    result = reconcile.run_reconcile(adapters)
    assert result.swarm_known
    assert result.findings == ()
    assert [s[1] for s in w.scripts] == ["status"]


def test_a_dead_daemon_starts_one_repair_and_a_second_run_none(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.nodes[3] = _node(HOSTS[3], "down")
    first = reconcile.run_reconcile(adapters)
    assert _findings(first) == [("dead_daemon", "i-w0", "started repair-i-w0")]
    assert w.repairs == ["repair-i-w0"]
    assert ("ReconcileFindings", {"cluster": "demo", "kind": "dead_daemon"}) in w.metrics
    # The repair takes its lease and marks the node failed: from then on the node is the repair's.
    adapters.operations.acquire("demo", "repair-i-w0", OperationKind.REPAIR, lease_seconds=600, max_repairs=2)
    adapters.store.set_node_state("demo", "i-w0", NodeState.FAILED)
    second = reconcile.run_reconcile(adapters)
    assert w.repairs == ["repair-i-w0"]
    assert [f.kind for f in second.findings] == []


def test_status_comes_from_the_first_manager_that_answers(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.dead_managers = {"i-m0"}
    w.nodes[0] = _node(HOSTS[0], "down")
    result = reconcile.run_reconcile(adapters)
    assert [s[0] for s in w.scripts if s[1] == "status"] == ["i-m0", "i-m1"]
    assert _findings(result) == [("dead_daemon", "i-m0", "started repair-i-m0")]


def test_no_manager_answering_leaves_the_swarm_unknown(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.dead_managers = {"i-m0", "i-m1", "i-m2"}
    result = reconcile.run_reconcile(adapters)
    assert not result.swarm_known
    assert result.findings == ()
    assert ("ReconcileSwarmUnreachable", {"cluster": "demo"}) in w.metrics


def test_an_unrecorded_host_that_never_joined_is_terminated(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.instances["i-x"] = Instance("i-x", Role.WORKER, "running", "10.0.0.9", NOW - 601)
    w.instances["i-young"] = Instance("i-young", Role.WORKER, "running", "10.0.0.10", NOW - 60)
    result = reconcile.run_reconcile(adapters)
    assert w.terminated == ["i-x"]
    assert [(f.kind, f.target) for f in result.findings if f.action != "scale"] == [("never_joined", "i-x")]


def test_a_ghost_node_is_removed_on_the_manager_that_answered(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    ghost = Host(instance_id="i-gone", role=Role.WORKER, slot="worker-9", az="a", private_ip="10.0.0.99")
    w.nodes.append(_node(ghost, "down"))
    result = reconcile.run_reconcile(adapters)
    assert _findings(result) == [("ghost_node", "node-i-gone", "removed")]
    assert ("i-m0", "remove-dead-node", {"SW_NODE": "node-i-gone", "SW_FORCE": "0"}) in [
        (i, s, {k: v for k, v in p.items() if k in {"SW_NODE", "SW_FORCE"}}) for i, s, p in w.scripts
    ]


def test_paused_repair_and_a_scale_in_flight_only_report(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.nodes[3] = _node(HOSTS[3], "down")
    adapters.store.pause_repairs("demo", "3 of 5 nodes unhealthy")
    paused = reconcile.run_reconcile(adapters)
    assert [f.deferred for f in paused.findings] == ["automatic repair is paused"]
    assert ("RepairPaused", {"cluster": "demo"}) in w.metrics
    # The operator's resume: delete the pause item (docs/operations.md).
    boto3.client("dynamodb").delete_item(TableName=TABLE, Key=item_key("demo", "PAUSE"))
    adapters.operations.acquire("demo", "op-1", OperationKind.SCALE, lease_seconds=600)
    scaling = reconcile.run_reconcile(adapters)
    assert [f.deferred for f in scaling.findings] == ["a scale operation holds the cluster"]
    assert w.repairs == []


def test_drift_starts_one_scale_back_to_the_spec_and_a_second_sweep_none(
    world: tuple[World, reconcile.Adapters],
) -> None:
    w, adapters = world
    del w.instances["i-w0"]
    w.nodes.pop()
    adapters.store.delete_node("demo", "i-w0")
    result = reconcile.run_reconcile(adapters)
    (drift,) = result.findings
    assert (drift.kind, drift.target) == ("drift", "worker")
    assert drift.outcome.startswith(f"scale op-reconcile-{int(NOW)} ")
    assert w.scales == [(f"op-reconcile-{int(NOW)}", 1)]
    # The scale holds the cluster until it ends: the next sweep sees no drift to act on.
    assert reconcile.run_reconcile(adapters).findings == ()
    assert len(w.scales) == 1


def test_nothing_happens_unless_the_cluster_is_ready(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.nodes[3] = _node(HOSTS[3], "down")
    adapters.store.set_status("demo", ClusterStatus.TEARING_DOWN)
    assert reconcile.run_reconcile(adapters) == reconcile.ReconcileResult(status="tearing_down")
    assert w.scripts == []


def _running(instance_id: str) -> dict[str, Any]:
    return {
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "detail": {"instance-id": instance_id, "state": "running"},
    }


def test_a_joined_instance_coming_up_rebalances(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    result = reconcile.handle(_running("i-w0"), adapters)
    assert result == reconcile.RebalanceResult(instance_id="i-w0", rebalanced=True, reason="joined", updated=("web",))
    assert ("i-m0", "rebalance") in [(i, s) for i, s, _ in w.scripts]


@pytest.mark.parametrize("case", ["not joined", "not ours", "scale"])
def test_no_rebalance_before_the_join_for_others_or_during_a_scale(
    world: tuple[World, reconcile.Adapters], case: str
) -> None:
    w, adapters = world
    instance = "i-new"
    if case == "not joined":
        w.instances[instance] = Instance(instance, Role.WORKER, "running", "10.0.0.50", NOW)
    if case == "scale":
        instance = "i-w0"
        adapters.operations.acquire("demo", "op-1", OperationKind.SCALE, lease_seconds=600)
    result = reconcile.handle(_running(instance), adapters)
    assert isinstance(result, reconcile.RebalanceResult)
    assert not result.rebalanced
    assert "rebalance" not in [s for _, s, _ in w.scripts]


def test_ec2_inventory_and_termination_keep_to_the_cluster(mocked_aws: None, ecs_ami: str) -> None:
    ec2 = boto3.client("ec2")

    def launch(cluster: str, role: str) -> str:
        tags = tag_specification("instance", {"swarmwarden:cluster": cluster, "swarmwarden:role": role})
        launched = ec2.run_instances(ImageId=ecs_ami, MinCount=1, MaxCount=1, TagSpecifications=[tags])
        return str(launched["Instances"][0]["InstanceId"])

    manager, worker, other = launch("demo", "manager"), launch("demo", "worker"), launch("other", "worker")
    hosts = Hosts(ec2, boto3.client("ssm"), {})
    found = {i.instance_id: i for i in hosts.inventory("demo")}
    assert set(found) == {manager, worker}
    assert (found[manager].role, found[worker].role) == (Role.MANAGER, Role.WORKER)
    assert found[manager].state == "running"
    assert found[manager].launched_at > 0
    assert hosts.terminate("demo", [worker, other]) == [worker]
    assert {i.instance_id: i.state for i in hosts.inventory("demo")}[worker] in {"shutting-down", "terminated"}


def test_a_repair_still_running_is_not_started_again(world: tuple[World, reconcile.Adapters]) -> None:
    w, adapters = world
    w.nodes[3] = _node(HOSTS[3], "down")
    reconcile.run_reconcile(adapters)
    again = reconcile.run_reconcile(adapters)
    assert _findings(again) == [("dead_daemon", "i-w0", "running repair-i-w0")]
    assert w.repairs == ["repair-i-w0"]


def test_after_the_pause_is_lifted_a_repair_that_ended_at_the_guard_is_retried(
    world: tuple[World, reconcile.Adapters],
) -> None:
    w, adapters = world
    w.nodes[3] = _node(HOSTS[3], "down")
    w.executions["repair-i-w0"] = "SUCCEEDED"  # ended at the guard's pause; the node is still active
    assert _findings(reconcile.run_reconcile(adapters)) == [("dead_daemon", "i-w0", "started repair-i-w0-1")]
    w.executions["repair-i-w0-1"] = "FAILED"
    w.executions["repair-i-w0-2"] = "FAILED"
    (gave_up,) = reconcile.run_reconcile(adapters).findings
    assert gave_up.outcome == "not started: 3 repairs of i-w0 ended without replacing it"
    assert ("ReconcileRepairsExhausted", {"cluster": "demo"}) in w.metrics
