"""What EC2 says about instances: their state and the cluster tag (a terminated instance keeps its tags
for about an hour, which is how repair tells ours from everyone else's)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import batched
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from swarmwarden.adapters import tags

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# EC2 filters take at most 200 values.
_BATCH = 200


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    state: str
    cluster: str  # the swarmwarden:cluster tag; empty when untagged
    private_ip: str


class Instances:
    def __init__(self, ec2: EC2Client) -> None:
        self._ec2 = ec2

    def facts(self, instance_ids: Iterable[str]) -> dict[str, InstanceFacts]:
        """The instances EC2 still shows; an unknown or long-gone id is simply absent."""
        found: dict[str, InstanceFacts] = {}
        for batch in batched(sorted(set(instance_ids)), _BATCH, strict=False):
            try:
                pages = self._ec2.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": "instance-id", "Values": list(batch)}]
                )
                instances = [i for page in pages for r in page["Reservations"] for i in r.get("Instances", [])]
            except ClientError as error:
                if error.response["Error"]["Code"] != "InvalidInstanceID.NotFound":
                    raise
                continue
            for instance in instances:
                instance_tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                found[instance["InstanceId"]] = InstanceFacts(
                    instance_id=instance["InstanceId"],
                    state=instance["State"]["Name"],
                    cluster=instance_tags.get(tags.CLUSTER, ""),
                    private_ip=instance.get("PrivateIpAddress", ""),
                )
        return found
