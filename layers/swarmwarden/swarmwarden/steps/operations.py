"""Starting a scale operation: the one way every entry point does it (the HTTP API's PUT
/cluster/capacity, the custom resource's Update).

Order matters: the lock first (a refusal leaves nothing behind), then the operation record, then the
workflow under the operation's id, which makes the execution name the idempotency key. The workflow
renews the same lease at its start and releases it at its end, on every path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from swarmwarden.adapters.operations import Operation, OperationExists, OperationKind, Operations, OperationStatus
from swarmwarden.domain.model import ClusterSpec, Poll

# Longer than any scale runs with the default poll (40 rounds of 15 s per wait loop); a crashed run's
# lease runs out on its own.
SCALE_LEASE_SECONDS = 3600


class Starter(Protocol):
    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class ScaleStart:
    operations: Operations
    workflows: Starter
    state_machine_arn: str
    poll: Poll


def start_scale(
    target: ClusterSpec,
    operation_id: str,
    request: dict[str, Any],
    adapters: ScaleStart,
    cfn: dict[str, Any] | None = None,
) -> tuple[Operation, bool]:
    """Takes the cluster lock for `operation_id`, creates the operation and starts the scale workflow.

    Returns the operation and whether this call started it: False when the operation already existed
    (a retried request), whose own start is not repeated. Raises LockHeld (naming the holder) when
    another operation holds the cluster. If the workflow cannot start, the operation is marked failed,
    the lock released, and the error raised."""
    cluster, operations = target.cluster_name, adapters.operations
    # A retry after the run has ended must not take a lease that nothing would release.
    if (existing := operations.get(cluster, operation_id)) is not None:
        return existing, False
    operations.acquire(cluster, operation_id, OperationKind.SCALE, lease_seconds=SCALE_LEASE_SECONDS)
    try:
        operations.create(cluster, Operation(id=operation_id, kind=OperationKind.SCALE, request=request))
    except OperationExists:
        # A concurrent duplicate created it first, and starts the workflow itself.
        if (existing := operations.get(cluster, operation_id)) is None:
            raise
        return existing, False
    payload: dict[str, Any] = {
        "spec": target.model_dump(mode="json"),
        "operation_id": operation_id,
        "poll": adapters.poll.model_dump(),
    }
    if cfn is not None:
        payload["cfn"] = cfn
    try:
        arn = adapters.workflows.start(adapters.state_machine_arn, operation_id, payload)
    except (ClientError, BotoCoreError) as error:
        operations.release(cluster, operation_id)
        operations.update(cluster, operation_id, status=OperationStatus.FAILED, step="start", error=str(error))
        raise
    return operations.update(cluster, operation_id, step="workflow started", execution_arn=arn), True
