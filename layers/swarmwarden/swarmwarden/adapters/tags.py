"""The tags on everything we create (docs/architecture.md, "Tags on everything we create"), and the
EC2 filter and tag-specification shapes built from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef

CLUSTER = "swarmwarden:cluster"
ROLE = "swarmwarden:role"
SLOT = "swarmwarden:slot"
RUN = "swarmwarden:run"
NAME = "Name"


def tag_filter(key: str, *values: str) -> FilterTypeDef:
    return {"Name": f"tag:{key}", "Values": list(values)}


def tag_specification(resource: ResourceTypeType, tags: dict[str, str]) -> TagSpecificationTypeDef:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
