"""The cluster table: the spec and status of a cluster, and one record per node.

Writes to the cluster record are conditional on its version, so two workflows that
read the same state cannot both write it (optimistic locking).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from swarmwarden.domain.model import ClusterSpec, Host, NodeStatus, Role
from swarmwarden.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ClusterStatus(StrEnum):
    PROVISIONING = "provisioning"
    READY = "ready"
    TEARING_DOWN = "tearing_down"
    DELETED = "deleted"


class ClusterRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    spec: ClusterSpec
    status: ClusterStatus
    swarm_id: str = ""
    version: int = 0
    updated_at: str = ""


class NodeState(StrEnum):
    """Where a node is in its life. Anything but ACTIVE tells the repair trigger that we are the ones
    ending this instance (or already replacing it), so its termination is no failure."""

    ACTIVE = "active"
    RETIRING = "retiring"  # chosen by scale-in: drained, removed, then terminated
    FAILED = "failed"  # a repair owns it
    REPLACED = "replaced"  # its replacement has joined


class NodeRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: str
    role: Role
    slot: str
    az: str
    private_ip: str
    node_id: str = ""
    state: NodeState = NodeState.ACTIVE


class VersionConflict(TransientError):
    """Someone else wrote the cluster record between our read and our write."""


def item_key(cluster: str, sort_key: str) -> dict[str, Any]:
    return {"pk": {"S": f"CLUSTER#{cluster}"}, "sk": {"S": sort_key}}


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ClusterStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def cluster(self, name: str) -> ClusterRecord | None:
        item = self._db.get_item(TableName=self._table, Key=item_key(name, "SPEC"), ConsistentRead=True).get("Item")
        if item is None:
            return None
        values = from_item(item)
        return ClusterRecord(
            spec=ClusterSpec.model_validate_json(values["spec"]),
            status=ClusterStatus(values["status"]),
            swarm_id=values.get("swarm_id", ""),
            version=int(values["version"]),
            updated_at=values.get("updated_at", ""),
        )

    def put_cluster(self, spec: ClusterSpec, status: ClusterStatus, swarm_id: str = "") -> ClusterRecord:
        """Writes the cluster record on top of the version we read; a concurrent writer makes this fail."""
        current = self.cluster(spec.cluster_name)
        record = ClusterRecord(
            spec=spec,
            status=status,
            swarm_id=swarm_id or (current.swarm_id if current else ""),
            version=(current.version if current else 0) + 1,
            updated_at=now_iso(),
        )
        item = item_key(spec.cluster_name, "SPEC") | to_item(
            {
                "spec": spec.model_dump_json(),
                "status": record.status.value,
                "swarm_id": record.swarm_id,
                "version": record.version,
                "updated_at": record.updated_at,
            }
        )
        if current is None:
            guard: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            guard = {
                "ConditionExpression": "#v = :read",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":read": {"N": str(current.version)}},
            }
        try:
            self._db.put_item(TableName=self._table, Item=item, **guard)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise VersionConflict(f"cluster {spec.cluster_name} changed while we updated it") from None
            raise
        return record

    def set_status(self, name: str, status: ClusterStatus) -> ClusterRecord | None:
        current = self.cluster(name)
        if current is None:
            return None
        return self.put_cluster(current.spec, status)

    def put_nodes(self, cluster: str, hosts: Iterable[Host], nodes: Iterable[NodeStatus]) -> int:
        node_ids = {node.addr: node.id for node in nodes}
        written = 0
        for host in hosts:
            record = NodeRecord(
                instance_id=host.instance_id,
                role=host.role,
                slot=host.slot,
                az=host.az,
                private_ip=host.private_ip,
                node_id=node_ids.get(host.private_ip, ""),
            )
            self._db.put_item(
                TableName=self._table,
                Item=item_key(cluster, f"NODE#{host.instance_id}") | to_item(record.model_dump(mode="json")),
            )
            written += 1
        return written

    def node(self, cluster: str, instance_id: str) -> NodeRecord | None:
        item = self._db.get_item(
            TableName=self._table, Key=item_key(cluster, f"NODE#{instance_id}"), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return NodeRecord.model_validate(from_item({k: v for k, v in item.items() if k not in {"pk", "sk"}}))

    def set_node_state(self, cluster: str, instance_id: str, state: NodeState) -> bool:
        """Moves a recorded node to `state`; False when the table has no such node."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=item_key(cluster, f"NODE#{instance_id}"),
                UpdateExpression="SET #s = :s",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":s": {"S": state.value}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete_node(self, cluster: str, instance_id: str) -> None:
        self._db.delete_item(TableName=self._table, Key=item_key(cluster, f"NODE#{instance_id}"))

    def nodes(self, cluster: str) -> list[NodeRecord]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :node)",
            ExpressionAttributeValues={":pk": {"S": f"CLUSTER#{cluster}"}, ":node": {"S": "NODE#"}},
            ConsistentRead=True,
        )
        return [
            NodeRecord.model_validate(from_item({k: v for k, v in item.items() if k not in {"pk", "sk"}}))
            for page in pages
            for item in page["Items"]
        ]

    # ------------------------------------------------------------------ repair's pause and slot claims
    def pause_repairs(self, cluster: str, reason: str) -> None:
        """The circuit breaker: an item `PAUSE` that stops automatic repair until an operator deletes it."""
        self._db.put_item(
            TableName=self._table, Item=item_key(cluster, "PAUSE") | to_item({"reason": reason, "at": now_iso()})
        )

    def repairs_paused(self, cluster: str) -> str | None:
        """The reason repair is paused, or None when it is not."""
        item = self._db.get_item(TableName=self._table, Key=item_key(cluster, "PAUSE"), ConsistentRead=True).get("Item")
        return None if item is None else str(from_item(item).get("reason", "paused"))

    def claim_slot(self, cluster: str, slot: str, owner: str) -> bool:
        """Reserves a slot name for `owner` (an operation); True also when `owner` holds it already."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item=item_key(cluster, f"SLOT#{slot}") | to_item({"owner": owner}),
                ConditionExpression="attribute_not_exists(pk) OR #o = :o",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":o": {"S": owner}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def slot_claims(self, cluster: str) -> dict[str, str]:
        """Claimed slot -> owner."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :slot)",
            ExpressionAttributeValues={":pk": {"S": f"CLUSTER#{cluster}"}, ":slot": {"S": "SLOT#"}},
            ConsistentRead=True,
        )
        return {
            str(item["sk"]["S"]).removeprefix("SLOT#"): str(item["owner"]["S"])
            for page in pages
            for item in page["Items"]
        }

    def release_slot(self, cluster: str, slot: str) -> None:
        self._db.delete_item(TableName=self._table, Key=item_key(cluster, f"SLOT#{slot}"))

    def delete_nodes(self, cluster: str) -> int:
        records = self.nodes(cluster)
        for record in records:
            self._db.delete_item(TableName=self._table, Key=item_key(cluster, f"NODE#{record.instance_id}"))
        return len(records)
