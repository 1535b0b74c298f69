"""ClusterStateFunction: records what the workflows did in the cluster table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from swarmwarden.adapters.operations import Lock, OperationKind, Operations, OperationStatus
from swarmwarden.adapters.store import ClusterStatus, ClusterStore
from swarmwarden.domain.model import ClusterSpec, Contract, LaunchResult, NodeStatus, SwarmRef


class Provisioned(Contract):
    action: Literal["provisioned"]
    spec: ClusterSpec
    hosts: LaunchResult
    swarm: SwarmRef
    nodes: tuple[NodeStatus, ...]


class TearingDown(Contract):
    action: Literal["tearing_down"]
    spec: ClusterSpec


class TornDown(Contract):
    action: Literal["torn_down"]
    spec: ClusterSpec


class AcquireLock(Contract):
    """Takes (or renews) the operation's lease; raises LockHeld (never retried here: the workflow
    decides whether to wait) naming the operation in the way."""

    action: Literal["acquire_lock"]
    spec: ClusterSpec
    operation_id: str
    kind: OperationKind
    lease_seconds: int = Field(default=3600, ge=60, le=86400)
    max_repairs: int = Field(default=1, ge=1, le=10)


class ReleaseLock(Contract):
    action: Literal["release_lock"]
    spec: ClusterSpec
    operation_id: str


class OperationStep(Contract):
    """Records a step of an operation (with the time), and optionally its new status or error."""

    action: Literal["operation_step"]
    spec: ClusterSpec
    operation_id: str
    step: str
    detail: str = ""
    status: OperationStatus | None = None
    error: str | None = None


ClusterStateRequest = Annotated[
    Provisioned | TearingDown | TornDown | AcquireLock | ReleaseLock | OperationStep,
    Field(discriminator="action"),
]
REQUEST: TypeAdapter[ClusterStateRequest] = TypeAdapter(ClusterStateRequest)


class Recorded(Contract):
    recorded: int


class StatusResult(Contract):
    status: ClusterStatus


class LockResult(Contract):
    operation_id: str
    kind: OperationKind
    expires_at: float


class Released(Contract):
    released: bool


class StepRecorded(Contract):
    operation_id: str
    status: OperationStatus
    steps: int


@dataclass(frozen=True)
class Adapters:
    store: ClusterStore
    operations: Operations


def _lock_result(lock: Lock) -> LockResult:
    return LockResult(operation_id=lock.operation_id, kind=lock.kind, expires_at=lock.expires_at)


def run(request: ClusterStateRequest, adapters: Adapters) -> Contract:
    store, operations = adapters.store, adapters.operations
    match request:
        case AcquireLock(spec=spec):
            lock = operations.acquire(
                spec.cluster_name, request.operation_id, request.kind, request.lease_seconds, request.max_repairs
            )
            return _lock_result(lock)
        case ReleaseLock(spec=spec):
            return Released(released=operations.release(spec.cluster_name, request.operation_id))
        case OperationStep(spec=spec):
            updated = operations.update(
                spec.cluster_name,
                request.operation_id,
                status=request.status,
                step=request.step,
                detail=request.detail,
                error=request.error,
            )
            return StepRecorded(operation_id=updated.id, status=updated.status, steps=len(updated.steps))
        case Provisioned(spec=spec, hosts=hosts, swarm=swarm, nodes=nodes):
            store.put_cluster(spec, ClusterStatus.READY, swarm_id=swarm.swarm_id)
            return Recorded(
                recorded=store.put_nodes(spec.cluster_name, [hosts.seed, *hosts.managers, *hosts.workers], nodes)
            )
        case TearingDown(spec=spec):
            # Written even when provision never recorded the cluster, so repair can tell our terminations apart.
            store.put_cluster(spec, ClusterStatus.TEARING_DOWN)
            return StatusResult(status=ClusterStatus.TEARING_DOWN)
        case TornDown(spec=spec):
            store.delete_nodes(spec.cluster_name)
            store.put_cluster(spec, ClusterStatus.DELETED)
            return StatusResult(status=ClusterStatus.DELETED)
