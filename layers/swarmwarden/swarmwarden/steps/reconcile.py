"""ReconcileFunction: the scheduled sweep that catches what no EC2 event reports, and the rebalance
that follows one of our instances coming up.

Reconcile gathers the three views of the cluster (EC2's tagged instances, a healthy manager's
`docker node ls`, the table's node records), lets `domain.reconcile` find the differences, and
carries out the actions it may take now: start a repair (under the repair trigger's execution name,
so it and the trigger never start two), terminate a host that never joined, remove a ghost node,
start a scale back to the spec's counts (as the API and the custom resource start one). It does nothing while the cluster is not `ready` (provisioning, tearing down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError
from pydantic import Field

from swarmwarden.adapters.operations import LockHeld, OperationKind, Operations
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeRecord, NodeState
from swarmwarden.domain.model import ClusterSpec, Contract, Host, NodeStatus, Role
from swarmwarden.domain.reconcile import Action, Finding, Instance, Locks, Record, View, reconcile
from swarmwarden.domain.repair import execution_name
from swarmwarden.errors import SwarmwardenError
from swarmwarden.observability import logger
from swarmwarden.steps import swarm
from swarmwarden.steps.operations import ScaleStart, start_scale
from swarmwarden.steps.repair import Metrics, TriggerResult

# Repairs of one instance that may end without replacing it (paused, failed early) before reconcile
# stops retrying it and leaves it to the operator (the RepairsFailed and RepairPaused alarms).
MAX_REPAIR_ATTEMPTS = 3


class Inventory(Protocol):
    """EC2's side (adapters.hosts.Hosts)."""

    def inventory(self, cluster: str) -> list[Instance]: ...

    def terminate(self, cluster: str, instance_ids: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Adapters:
    cluster: str
    store: ClusterStore
    operations: Operations
    hosts: Inventory
    swarm: swarm.Adapters
    # Starts (or finds) an instance's repair the way the repair trigger does, under attempt N's name.
    start_repair: Callable[[ClusterSpec, str, int], TriggerResult]
    # A repair execution's name -> RUNNING, SUCCEEDED, FAILED, ..., or "" when there is none.
    execution_status: Callable[[str], str]
    scale: ScaleStart
    metrics: Metrics
    grace_seconds: float
    clock: Callable[[], float]


class Done(Contract):
    kind: str
    action: str
    target: str
    detail: str
    deferred: str = ""
    outcome: str = ""  # what acting did: an execution ARN, "terminated", "removed", or the error


class ReconcileResult(Contract):
    status: str  # the cluster's status, or "unknown" when it has no record
    swarm_known: bool = False
    findings: tuple[Done, ...] = ()


class RebalanceResult(Contract):
    instance_id: str
    rebalanced: bool
    reason: str
    updated: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


class Ec2StateChange(Contract):
    """The `detail` of an EC2 Instance State-change Notification."""

    instance_id: str = Field(alias="instance-id")
    state: str


def _record(node: NodeRecord) -> Record:
    return Record(node.instance_id, node.role, node.node_id, owned=node.state is not NodeState.ACTIVE)


def _manager_hosts(records: Sequence[NodeRecord], instances: Sequence[Instance]) -> list[Host]:
    """The managers worth asking: recorded, active, and running."""
    running = {i.instance_id for i in instances if i.state == "running"}
    return [
        Host(instance_id=r.instance_id, role=r.role, slot=r.slot, az=r.az, private_ip=r.private_ip)
        for r in records
        if r.role is Role.MANAGER and r.state is NodeState.ACTIVE and r.instance_id in running
    ]


def swarm_view(
    spec: ClusterSpec, managers: Sequence[Host], adapters: swarm.Adapters
) -> tuple[list[NodeStatus], Host] | None:
    """`docker node ls` from the first manager that answers, and that manager; None when none does
    (every manager dead, or the swarm has lost quorum: the runbook's case)."""
    for manager in managers:
        try:
            return swarm.status(spec, manager, adapters), manager
        except (SwarmwardenError, ClientError) as error:
            logger.info("manager did not answer", extra={"instance_id": manager.instance_id, "error": str(error)})
    return None


def _start_repair(spec: ClusterSpec, instance_id: str, adapters: Adapters) -> str:
    """Starts the instance's repair, or finds the one running. A closed repair that left the node as it
    was (it ended at the guard's pause, or failed before claiming the node) is retried under the next
    attempt's name: this is how repair resumes once the operator lifts the pause."""
    for attempt in range(MAX_REPAIR_ATTEMPTS):
        # Asked first: Step Functions answers a start under a running execution's name and input with
        # that execution, so the start alone cannot tell a new repair from one already running.
        name = execution_name(instance_id, attempt)
        status = adapters.execution_status(name)
        if status == "RUNNING":
            return f"running {name}"
        if not status:
            result = adapters.start_repair(spec, instance_id, attempt)
            return f"{result.outcome} {result.execution_arn or result.reason}"
    adapters.metrics.count("ReconcileRepairsExhausted")
    return f"not started: {MAX_REPAIR_ATTEMPTS} repairs of {instance_id} ended without replacing it"


def _start_scale(spec: ClusterSpec, adapters: Adapters) -> str:
    """A scale to the spec's own counts, started the way every entry point starts one; the workflow
    plans from the live nodes, so it launches what is missing and retires what is extra."""
    request = {"managers": spec.managers, "workers": spec.workers, "by": "reconcile"}
    operation_id = f"op-reconcile-{int(adapters.clock())}"
    try:
        operation, _started = start_scale(spec, operation_id, request, adapters.scale)
    except LockHeld as held:
        return f"not started: {held}"
    return f"scale {operation.id} {operation.execution_arn}"


def _act(finding: Finding, spec: ClusterSpec, manager: Host | None, adapters: Adapters) -> str:
    cluster = spec.cluster_name
    match finding.action:
        case Action.REPAIR:
            return _start_repair(spec, finding.target, adapters)
        case Action.TERMINATE:
            return f"terminated {adapters.hosts.terminate(cluster, [finding.target])}"
        case Action.REMOVE_NODE if manager is not None:
            removed = swarm.remove_node(
                swarm.RemoveNode(action="remove_node", spec=spec, manager=manager, node=finding.target), adapters.swarm
            )
            return "removed" if removed.removed else "already gone"
        case Action.SCALE:
            return _start_scale(spec, adapters)
    return "reported only"


def run_reconcile(adapters: Adapters) -> ReconcileResult:
    cluster = adapters.cluster
    record = adapters.store.cluster(cluster)
    if record is None or record.status is not ClusterStatus.READY:
        # Provision and teardown own the hosts until the cluster is ready, and after.
        return ReconcileResult(status=record.status.value if record else "unknown")
    spec = record.spec
    instances = adapters.hosts.inventory(cluster)
    records = adapters.store.nodes(cluster)
    found = swarm_view(spec, _manager_hosts(records, instances), adapters.swarm)
    holders = adapters.operations.holders(cluster)
    view = View(
        desired={Role.MANAGER: spec.managers, Role.WORKER: spec.workers},
        instances=instances,
        records=[_record(r) for r in records],
        swarm=found[0] if found else None,
        now=adapters.clock(),
        grace_seconds=adapters.grace_seconds,
        paused=adapters.store.repairs_paused(cluster) is not None,
        locks=Locks(
            scale=any(h.kind is OperationKind.SCALE for h in holders),
            repairs=sum(h.kind is OperationKind.REPAIR for h in holders),
        ),
    )
    if found is None:
        adapters.metrics.count("ReconcileSwarmUnreachable")
    findings = reconcile(view)
    if view.paused and any(f.action is Action.REPAIR for f in findings):
        # As the trigger does for a held event: the RepairPaused alarm keeps firing while nodes wait.
        adapters.metrics.count("RepairPaused")
    done = []
    scaled = ""
    for finding in findings:
        outcome = ""
        if finding.actionable and finding.action is Action.SCALE and scaled:
            outcome = f"the same scale: {scaled}"  # one scale brings every role to the spec
        elif finding.actionable:
            try:
                outcome = _act(finding, spec, found[1] if found else None, adapters)
            except (SwarmwardenError, ClientError) as error:
                # One failed action must not stop the others; the next round tries again.
                outcome = f"failed: {error}"
            if finding.action is Action.SCALE:
                scaled = outcome
        adapters.metrics.count("ReconcileFindings", kind=finding.kind.value)
        logger.info("reconcile finding", extra={"finding": finding.__dict__, "outcome": outcome})
        done.append(
            Done(
                kind=finding.kind.value,
                action=finding.action.value,
                target=finding.target,
                detail=finding.detail,
                deferred=finding.deferred,
                outcome=outcome,
            )
        )
    return ReconcileResult(status=record.status.value, swarm_known=found is not None, findings=tuple(done))


def run_rebalance(instance_id: str, adapters: Adapters) -> RebalanceResult:
    """Rebalances the swarm once the instance that came up is a Ready node, unless a scale holds the
    cluster (it rebalances at its end; a drain may be under way) or the cluster is not ready."""

    def skip(reason: str) -> RebalanceResult:
        logger.info("no rebalance", extra={"instance_id": instance_id, "reason": reason})
        return RebalanceResult(instance_id=instance_id, rebalanced=False, reason=reason)

    cluster = adapters.cluster
    record = adapters.store.cluster(cluster)
    if record is None or record.status is not ClusterStatus.READY:
        return skip("the cluster is not ready")
    instances = {i.instance_id: i for i in adapters.hosts.inventory(cluster)}
    if instance_id not in instances:
        return skip("not an instance of this cluster")
    if any(h.kind is OperationKind.SCALE for h in adapters.operations.holders(cluster)):
        return skip("a scale operation holds the cluster and rebalances when it ends")
    found = swarm_view(
        record.spec, _manager_hosts(adapters.store.nodes(cluster), list(instances.values())), adapters.swarm
    )
    if found is None:
        return skip("no manager answers")
    nodes, manager = found
    ip = instances[instance_id].private_ip
    if not any(n.addr == ip and n.status == "ready" for n in nodes):
        return skip("not a Ready swarm node yet: the workflow that joins it rebalances afterwards")
    result = swarm.rebalance(swarm.Rebalance(action="rebalance", spec=record.spec, manager=manager), adapters.swarm)
    return RebalanceResult(
        instance_id=instance_id, rebalanced=True, reason="joined", updated=result.updated, skipped=result.skipped
    )


def handle(event: dict[str, Any], adapters: Adapters) -> Contract:
    """A scheduled event reconciles; an EC2 state change to `running` rebalances."""
    if event.get("detail-type") == "EC2 Instance State-change Notification":
        change = Ec2StateChange.model_validate(event["detail"])
        if change.state == "running":
            return run_rebalance(change.instance_id, adapters)
        return RebalanceResult(instance_id=change.instance_id, rebalanced=False, reason=f"state {change.state}")
    return run_reconcile(adapters)
