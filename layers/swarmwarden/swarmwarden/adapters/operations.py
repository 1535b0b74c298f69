"""Operations (scale, repair) and the per-cluster lock that keeps them from overlapping.

The lock is one item, `LOCK`, next to the cluster record. Taking it is a conditional write that
succeeds when nobody holds it, when its lease has run out (a crashed holder), or when the caller
already holds it (a retried step). Releasing is conditional on holding it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from swarmwarden.adapters.store import from_item, item_key, now_iso, to_item
from swarmwarden.errors import SwarmwardenError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


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
        """The operation that holds the lock, if its lease is live."""
        lock = self.lock(cluster)
        return None if lock is None else self.get(cluster, lock.operation_id)

    # ------------------------------------------------------------------ the lock
    def lock(self, cluster: str) -> Lock | None:
        item = self._db.get_item(TableName=self._table, Key=item_key(cluster, "LOCK"), ConsistentRead=True).get("Item")
        if item is None:
            return None
        values = from_item(item)
        lock = Lock(
            operation_id=values["operation_id"],
            kind=OperationKind(values["kind"]),
            expires_at=int(values["expires_at_ms"]) / 1000,
        )
        return lock if lock.expires_at > self._clock() else None

    def acquire(self, cluster: str, operation_id: str, kind: OperationKind, lease_seconds: int) -> Lock:
        # Two rounds: a lease can run out between our refused write and our read of the holder.
        for _round in range(2):
            now_ms = int(self._clock() * 1000)
            lock = Lock(operation_id=operation_id, kind=kind, expires_at=(now_ms + lease_seconds * 1000) / 1000)
            try:
                self._db.put_item(
                    TableName=self._table,
                    Item=item_key(cluster, "LOCK")
                    | to_item(
                        {
                            "operation_id": operation_id,
                            "kind": kind.value,
                            "expires_at_ms": now_ms + lease_seconds * 1000,
                        }
                    ),
                    ConditionExpression="attribute_not_exists(pk) OR operation_id = :me OR expires_at_ms < :now",
                    ExpressionAttributeValues={":me": {"S": operation_id}, ":now": {"N": str(now_ms)}},
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                holder = self.lock(cluster)
                if holder is not None:
                    raise LockHeld(holder) from None
            else:
                return lock
        raise LockHeld(Lock(operation_id="unknown", kind=kind, expires_at=self._clock()))

    def release(self, cluster: str, operation_id: str) -> bool:
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=item_key(cluster, "LOCK"),
                ConditionExpression="operation_id = :me",
                ExpressionAttributeValues={":me": {"S": operation_id}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
