"""Repair: the trigger that turns EC2 state-change events into repair executions, and the repair
workflow's own steps (RepairFunction). The rules themselves are pure, in domain/repair.py."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from swarmwarden import aws
from swarmwarden.adapters.instances import Instances
from swarmwarden.adapters.operations import Operation, OperationExists, OperationKind, Operations, OperationStatus
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeRecord, NodeState
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.domain import repair as rules
from swarmwarden.domain.model import ClusterSpec, Contract, Host, NetworkRef, NodeStatus, Poll, Role, SwarmRef
from swarmwarden.domain.placement import Placement
from swarmwarden.errors import InsufficientCapacity, InvalidRequest
from swarmwarden.observability import emit_metric
from swarmwarden.settings import Settings
from swarmwarden.steps.swarm import HealthyManagerResult


# ---------------------------------------------------------------- metrics
class Metrics:
    """EMF metrics of one cluster (dimension `cluster`, so each stack's alarms see only their own)."""

    def __init__(self, cluster: str, emit: Callable[[str, float, str, dict[str, str]], None]) -> None:
        self._cluster = cluster
        self._emit = emit

    def count(self, name: str, **dimensions: str) -> None:
        self._emit(name, 1, MetricUnit.Count.value, {"cluster": self._cluster, **dimensions})

    def seconds(self, name: str, value: float) -> None:
        self._emit(name, value, MetricUnit.Seconds.value, {"cluster": self._cluster})


# ---------------------------------------------------------------- the trigger
class Ec2StateChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    instance_id: str = Field(alias="instance-id", pattern=r"^i-[0-9a-f]{8,17}$")
    state: str


class Ec2StateChangeEvent(EventBridgeModel):
    detail: Ec2StateChange


class Limits(Contract):
    max_repairs: int = Field(default=2, ge=1, le=10)
    pause_threshold_percent: int = Field(default=30, ge=1, le=100)


class RepairInput(Contract):
    """The repair workflow's input: only what the instance id determines, so every duplicate event
    starts the same execution with the same input."""

    spec: ClusterSpec
    instance_id: str
    poll: Poll
    limits: Limits


class TriggerResult(Contract):
    outcome: Literal["started", "duplicate", "ignored", "paused"]
    instance_id: str
    reason: str = ""
    execution_arn: str = ""


@dataclass(frozen=True)
class TriggerAdapters:
    store: ClusterStore
    instances: Instances
    start: Callable[[str, dict[str, Any]], tuple[str, bool]]  # (name, input) -> (arn, started now)
    metrics: Metrics
    cluster: str
    poll: Poll
    limits: Limits


def trigger(event: Ec2StateChangeEvent, adapters: TriggerAdapters) -> TriggerResult:
    instance_id, cluster = event.detail.instance_id, adapters.cluster

    def ignored(reason: str) -> TriggerResult:
        return TriggerResult(outcome="ignored", instance_id=instance_id, reason=reason)

    if event.detail.state not in rules.FAILURE_STATES:
        return ignored(f"state {event.detail.state} is no failure")
    facts = adapters.instances.facts([instance_id]).get(instance_id)
    if facts is None or facts.cluster != cluster:
        return ignored(f"not an instance of cluster {cluster}")
    record = adapters.store.cluster(cluster)
    if record is None or record.status in {ClusterStatus.TEARING_DOWN, ClusterStatus.DELETED}:
        return ignored(f"cluster {cluster} is {record.status.value if record else 'not recorded'}: our own teardown")
    node = adapters.store.node(cluster, instance_id)
    if node is None:
        return ignored("no node record: it never joined (reconcile's business)")
    if node.state is not NodeState.ACTIVE:
        return ignored(f"node is {node.state.value}: a workflow of ours is ending or replacing it")
    if (reason := adapters.store.repairs_paused(cluster)) is not None:
        adapters.metrics.count("RepairPaused")
        return TriggerResult(outcome="paused", instance_id=instance_id, reason=reason)
    return start_repair(record.spec, instance_id, adapters)


def start_repair(spec: ClusterSpec, instance_id: str, adapters: TriggerAdapters, attempt: int = 0) -> TriggerResult:
    """Starts the instance's repair, or finds the one started before (the trigger and reconcile share this)."""
    payload = RepairInput(spec=spec, instance_id=instance_id, poll=adapters.poll, limits=adapters.limits)
    # Started, or found still running under that name (StartExecution's idempotency). RepairsStarted is
    # counted where each execution creates its operation, so a duplicate never counts twice.
    arn, started = adapters.start(rules.execution_name(instance_id, attempt), payload.model_dump(mode="json"))
    return TriggerResult(outcome="started" if started else "duplicate", instance_id=instance_id, execution_arn=arn)


def trigger_adapters(config: Settings) -> TriggerAdapters:
    workflows = Workflows(aws.stepfunctions())

    def start(name: str, payload: dict[str, Any]) -> tuple[str, bool]:
        return workflows.start_new(config.repair_state_machine_arn, name, payload)

    return TriggerAdapters(
        store=ClusterStore(aws.dynamodb(), config.table_name),
        instances=Instances(aws.ec2()),
        start=start,
        metrics=Metrics(config.cluster_name, emit_metric),
        cluster=config.cluster_name,
        poll=Poll(interval_seconds=config.poll_interval_seconds, max_attempts=config.poll_max_attempts),
        limits=Limits(
            max_repairs=config.max_concurrent_repairs, pause_threshold_percent=config.repair_pause_threshold_percent
        ),
    )


# ---------------------------------------------------------------- the workflow's steps
class FailedNode(Contract):
    host: Host
    node_id: str


class Classify(Contract):
    action: Literal["classify"]
    spec: ClusterSpec
    instance_id: str


class Guard(Contract):
    action: Literal["guard"]
    spec: ClusterSpec
    operation_id: str
    instance_id: str
    healthy: HealthyManagerResult
    limits: Limits


class Claim(Contract):
    action: Literal["claim"]
    spec: ClusterSpec
    operation_id: str
    failed: FailedNode
    manager: Host


class Record(Contract):
    action: Literal["record"]
    spec: ClusterSpec
    operation_id: str
    failed: FailedNode
    added: Host
    nodes: tuple[NodeStatus, ...]
    started_at: datetime


class Fail(Contract):
    action: Literal["fail"]
    spec: ClusterSpec
    operation_id: str
    instance_id: str
    error: str
    cause: str = ""


class Classified(Contract):
    failed: FailedNode
    candidates: tuple[Host, ...] = Field(description="live managers other than the failed node, to try in order")


class GuardResult(Contract):
    proceed: bool
    reason: str
    unhealthy: int
    total: int


class Claimed(Contract):
    placement: Placement
    refused_azs: tuple[str, ...] = ()
    swarm: SwarmRef
    instance_gone: bool = Field(
        description="EC2 says the failed instance is going away or gone (looked up right before the removal): "
        "its node is removed at once, with force"
    )


class Replan(Contract):
    action: Literal["replan"]
    spec: ClusterSpec
    failed: FailedNode
    claim: Claimed = Field(description="the claim whose placement EC2 refused")
    network: NetworkRef


RepairRequest = Annotated[Classify | Guard | Claim | Replan | Record | Fail, Field(discriminator="action")]
REQUEST: TypeAdapter[RepairRequest] = TypeAdapter(RepairRequest)


class Recorded(Contract):
    replaced: str
    by: str
    duration_seconds: float


class Failed(Contract):
    recorded: bool


@dataclass(frozen=True)
class Adapters:
    store: ClusterStore
    operations: Operations
    instances: Instances
    metrics: Metrics
    clock: Callable[[], float] = time.time


def _host(record: NodeRecord) -> Host:
    return Host(
        instance_id=record.instance_id,
        role=record.role,
        slot=record.slot,
        az=record.az,
        private_ip=record.private_ip,
    )


def classify(request: Classify, adapters: Adapters) -> Classified:
    cluster = request.spec.cluster_name
    records = adapters.store.nodes(cluster)
    failed = next((r for r in records if r.instance_id == request.instance_id), None)
    if failed is None:
        raise InvalidRequest(f"{request.instance_id} has no node record in cluster {cluster}")
    managers = [r for r in records if r.role is Role.MANAGER and r.state is NodeState.ACTIVE and r is not failed]
    facts = adapters.instances.facts(r.instance_id for r in managers)
    live = [r for r in managers if r.instance_id in facts and facts[r.instance_id].state == "running"]
    return Classified(
        failed=FailedNode(host=_host(failed), node_id=failed.node_id),
        candidates=tuple(_host(r) for r in sorted(live, key=lambda r: r.slot)),
    )


def _ensure_operation(adapters: Adapters, cluster: str, operation_id: str, instance_id: str) -> None:
    """Creates the repair's operation once (a retried step finds it) and counts RepairsStarted then."""
    operation = Operation(
        id=operation_id,
        kind=OperationKind.REPAIR,
        status=OperationStatus.RUNNING,
        request={"instance_id": instance_id},
    )
    with suppress(OperationExists):
        adapters.operations.create(cluster, operation)
        adapters.metrics.count("RepairsStarted")


def guard(request: Guard, adapters: Adapters) -> GuardResult:
    cluster = request.spec.cluster_name
    _ensure_operation(adapters, cluster, request.operation_id, request.instance_id)
    # Records a workflow is ending on purpose (retiring) or that already have a replacement are not members.
    records = [r for r in adapters.store.nodes(cluster) if r.state in {NodeState.ACTIVE, NodeState.FAILED}]
    facts = adapters.instances.facts(r.instance_id for r in records)
    members = [
        rules.Member(
            instance_id=r.instance_id,
            role=r.role,
            node_id=r.node_id,
            instance_state=facts[r.instance_id].state if r.instance_id in facts else None,
        )
        for r in records
    ]
    verdict = rules.judge(
        members,
        request.healthy.nodes,
        have_manager=request.healthy.manager is not None,
        threshold_percent=request.limits.pause_threshold_percent,
    )
    if verdict.proceed:
        adapters.operations.update(cluster, request.operation_id, step="guard", detail=verdict.reason)
    else:
        adapters.store.pause_repairs(cluster, verdict.reason)
        adapters.operations.update(
            cluster,
            request.operation_id,
            status=OperationStatus.FAILED,
            step="paused",
            detail=verdict.reason,
            error=f"automatic repair paused: {verdict.reason}",
        )
        adapters.metrics.count("RepairPaused")
    return GuardResult(proceed=verdict.proceed, reason=verdict.reason, unhealthy=verdict.unhealthy, total=verdict.total)


def claim(request: Claim, adapters: Adapters) -> Claimed:
    """Marks the dead node FAILED (so neither the trigger nor reconcile acts on it again) and claims
    a new slot for its replacement, in the failed node's AZ."""
    cluster, owner = request.spec.cluster_name, request.operation_id
    record = adapters.store.cluster(cluster)
    if record is None or not record.swarm_id:
        raise InvalidRequest(f"cluster {cluster} has no recorded swarm")
    adapters.store.set_node_state(cluster, request.failed.host.instance_id, NodeState.FAILED)
    role = request.failed.host.role
    claims = adapters.store.slot_claims(cluster)
    mine = [slot for slot, holder in claims.items() if holder == owner]
    slot = mine[0] if mine else None
    taken = {r.slot for r in adapters.store.nodes(cluster)} | set(claims)
    while slot is None:
        candidate = rules.next_slot(role, taken)
        if adapters.store.claim_slot(cluster, candidate, owner):
            slot = candidate
        taken.add(candidate)
    adapters.operations.update(cluster, owner, step="claimed", detail=f"replacement slot {slot}")
    # Looked up here, the step before the removal: the guard and the lock may have waited minutes.
    facts = adapters.instances.facts([request.failed.host.instance_id]).get(request.failed.host.instance_id)
    return Claimed(
        placement=Placement(slot=slot, role=role, az=request.failed.host.az),
        swarm=SwarmRef(swarm_id=record.swarm_id, manager_addr=request.manager.private_ip),
        instance_gone=rules.instance_gone(facts.state if facts else None),
    )


def replan(request: Replan, adapters: Adapters) -> Claimed:
    """EC2 refused capacity in the claim's AZ: the AZ with the fewest live nodes of the role."""
    claim = request.claim
    refused = (*claim.refused_azs, claim.placement.az)
    role = request.failed.host.role
    placed = Counter(
        r.az
        for r in adapters.store.nodes(request.spec.cluster_name)
        if r.role is role and r.state is NodeState.ACTIVE and r.instance_id != request.failed.host.instance_id
    )
    az = rules.choose_az(request.failed.host.az, [s.az for s in request.network.subnets], refused, placed)
    if az is None:
        raise InsufficientCapacity(f"no AZ has {request.spec.instance_type} capacity: refused {', '.join(refused)}")
    return claim.model_copy(update={"placement": claim.placement.model_copy(update={"az": az}), "refused_azs": refused})


def record(request: Record, adapters: Adapters) -> Recorded:
    cluster, added = request.spec.cluster_name, request.added
    node_id = next((n.id for n in request.nodes if n.addr == added.private_ip and n.status == rules.READY), "")
    adapters.store.put_nodes(cluster, [added], request.nodes)
    adapters.store.delete_node(cluster, request.failed.host.instance_id)
    adapters.store.release_slot(cluster, added.slot)
    duration = max(0.0, adapters.clock() - request.started_at.timestamp())
    adapters.operations.update(
        cluster,
        request.operation_id,
        status=OperationStatus.SUCCEEDED,
        step="recorded",
        detail=f"{request.failed.host.instance_id} replaced by {added.instance_id} ({added.slot}, node {node_id})",
    )
    adapters.metrics.count("RepairsSucceeded")
    adapters.metrics.count("NodesReplaced", role=added.role.value)
    adapters.metrics.seconds("RepairDuration", duration)
    return Recorded(replaced=request.failed.host.instance_id, by=added.instance_id, duration_seconds=duration)


def _message(cause: str) -> str:
    """A Lambda error's Cause is its JSON error body; the operation keeps just the message."""
    try:
        body = json.loads(cause)
    except ValueError:
        return cause
    return str(body.get("errorMessage", cause)) if isinstance(body, dict) else cause


def fail(request: Fail, adapters: Adapters) -> Failed:
    """Every failure path ends here: the error goes on the operation, RepairsFailed is counted, and the
    slot this run claimed is given back (its instance, if any, was terminated by compensation)."""
    cluster = request.spec.cluster_name
    _ensure_operation(adapters, cluster, request.operation_id, request.instance_id)
    adapters.operations.update(
        cluster,
        request.operation_id,
        status=OperationStatus.FAILED,
        step="failed",
        error=f"{request.error}: {_message(request.cause)}" if request.cause else request.error,
    )
    for slot, owner in adapters.store.slot_claims(cluster).items():
        if owner == request.operation_id:
            adapters.store.release_slot(cluster, slot)
    adapters.metrics.count("RepairsFailed")
    return Failed(recorded=True)


def run(request: RepairRequest, adapters: Adapters) -> Contract:
    match request:
        case Classify():
            return classify(request, adapters)
        case Guard():
            return guard(request, adapters)
        case Claim():
            return claim(request, adapters)
        case Replan():
            return replan(request, adapters)
        case Record():
            return record(request, adapters)
        case Fail():
            return fail(request, adapters)
