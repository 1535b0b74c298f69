"""Operations (scale, repair) and the per-cluster lock that keeps them from overlapping.

The lock is one item, `LOCK`, next to the cluster record, holding leases: a scale holds the cluster
alone; up to `max_repairs` repairs may hold it together. A lease that has run out (a crashed holder)
no longer counts, and taking a lease one already holds renews it (a retried step). Every change is
a write conditional on the version read, so concurrent takers cannot both win.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from swarmwarden.adapters.store import from_item, item_key, now_iso, to_item
from swarmwarden.errors import SwarmwardenError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


# Rounds of read-then-conditional-write before a busy lock counts as transient.
_WRITE_ROUNDS = 20


class OperationKind(StrEnum):
    SCALE = "scale"
    REPAIR = "repair"


class OperationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Step(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    at: str
    detail: str = ""


class Operation(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: OperationKind
    status: OperationStatus = OperationStatus.PENDING
    request: dict[str, Any] = Field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    error: str | None = None
    execution_arn: str = ""
    created_at: str = ""
    updated_at: str = ""


class Lock(BaseModel):
    model_config = ConfigDict(frozen=True)

    operation_id: str
    kind: OperationKind
    expires_at: float


class LockHeld(SwarmwardenError):
    """Another operation holds the cluster; the message names it."""

    def __init__(self, holder: Lock) -> None:
        super().__init__(f"{holder.kind.value} operation {holder.operation_id} is in progress")
        self.holder = holder


class OperationExists(SwarmwardenError):
    """An operation with that id was already created."""


class Operations:
    def __init__(self, dynamodb: DynamoDBClient, table: str, clock: Callable[[], float] = time.time) -> None:
        self._db = dynamodb
        self._table = table
        self._clock = clock

    # ------------------------------------------------------------------ operations
    def create(self, cluster: str, operation: Operation) -> Operation:
        stamped = operation.model_copy(update={"created_at": now_iso(), "updated_at": now_iso()})
        try:
            self._db.put_item(
                TableName=self._table,
                Item=item_key(cluster, f"OP#{operation.id}") | to_item({"operation": stamped.model_dump_json()}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise OperationExists(f"operation {operation.id} exists") from None
            raise
        return stamped

    def get(self, cluster: str, operation_id: str) -> Operation | None:
        item = self._db.get_item(
            TableName=self._table, Key=item_key(cluster, f"OP#{operation_id}"), ConsistentRead=True
        ).get("Item")
        return None if item is None else Operation.model_validate_json(from_item(item)["operation"])

    def update(
        self,
        cluster: str,
        operation_id: str,
        *,
        status: OperationStatus | None = None,
        step: str | None = None,
        detail: str = "",
        error: str | None = None,
        execution_arn: str | None = None,
    ) -> Operation:
        """Appends a step and/or sets fields. Operations have one writer at a time (the lock holder)."""
        current = self.get(cluster, operation_id)
        if current is None:
            raise OperationExists(f"operation {operation_id} does not exist")
        changes: dict[str, Any] = {"updated_at": now_iso()}
        if status is not None:
            changes["status"] = status
        if step is not None:
            changes["steps"] = (*current.steps, Step(name=step, at=now_iso(), detail=detail))
        if error is not None:
            changes["error"] = error
        if execution_arn is not None:
            changes["execution_arn"] = execution_arn
        updated = current.model_copy(update=changes)
        self._db.put_item(
            TableName=self._table,
            Item=item_key(cluster, f"OP#{operation_id}") | to_item({"operation": updated.model_dump_json()}),
        )
        return updated

    def running(self, cluster: str) -> Operation | None:
        """The first operation that holds a live lease, if any."""
        holders = self.holders(cluster)
        return None if not holders else self.get(cluster, holders[0].operation_id)

    # ------------------------------------------------------------------ the lock
    def _read_lock(self, cluster: str) -> tuple[list[Lock], int | None]:
        item = self._db.get_item(TableName=self._table, Key=item_key(cluster, "LOCK"), ConsistentRead=True).get("Item")
        if item is None:
            return [], None
        values = from_item(item)
        now = self._clock()
        leases = [
            Lock(operation_id=op_id, kind=OperationKind(lease["kind"]), expires_at=int(lease["expires_at_ms"]) / 1000)
            for op_id, lease in values.get("holders", {}).items()
        ]
        live = sorted((lease for lease in leases if lease.expires_at > now), key=lambda lease: lease.expires_at)
        return live, int(values["version"])

    def _write_lock(self, cluster: str, holders: list[Lock], read_version: int | None) -> bool:
        """Writes the leases if nobody wrote since our read; False when someone did."""
        guard: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if read_version is None
            else {
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {":read": {"N": str(read_version)}},
            }
        )
        leases = {
            lease.operation_id: {"kind": lease.kind.value, "expires_at_ms": int(lease.expires_at * 1000)}
            for lease in holders
        }
        try:
            self._db.put_item(
                TableName=self._table,
                Item=item_key(cluster, "LOCK") | to_item({"holders": leases, "version": (read_version or 0) + 1}),
                **guard,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def holders(self, cluster: str) -> list[Lock]:
        return self._read_lock(cluster)[0]

    def acquire(
        self, cluster: str, operation_id: str, kind: OperationKind, lease_seconds: int, max_repairs: int = 1
    ) -> Lock:
        """Takes (or renews) a lease, or raises LockHeld naming the holder in the way."""
        for _round in range(_WRITE_ROUNDS):
            holders, version = self._read_lock(cluster)
            others = [lease for lease in holders if lease.operation_id != operation_id]
            blocking = others if kind is OperationKind.SCALE else [o for o in others if o.kind is OperationKind.SCALE]
            if blocking:
                raise LockHeld(blocking[0])
            repairs = [o for o in others if o.kind is OperationKind.REPAIR]
            if kind is OperationKind.REPAIR and len(repairs) >= max_repairs:
                raise LockHeld(repairs[0])
            mine = Lock(operation_id=operation_id, kind=kind, expires_at=self._clock() + lease_seconds)
            if self._write_lock(cluster, [*others, mine], version):
                return mine
        raise TransientError(f"the lock of {cluster} kept changing under us")

    def release(self, cluster: str, operation_id: str) -> bool:
        """Gives the lease up; False when we did not hold one (released before, or expired)."""
        for _round in range(_WRITE_ROUNDS):
            holders, version = self._read_lock(cluster)
            remaining = [lease for lease in holders if lease.operation_id != operation_id]
            if len(remaining) == len(holders):
                return False
            if self._write_lock(cluster, remaining, version):
                return True
        raise TransientError(f"the lock of {cluster} kept changing under us")
