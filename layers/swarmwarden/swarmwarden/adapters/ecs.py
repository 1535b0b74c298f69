"""The ECS cluster the hosts register with. It has the swarm cluster's name; its agents are how we
know a host booted with our user data."""

from __future__ import annotations

from itertools import batched
from typing import TYPE_CHECKING

from swarmwarden.adapters import tags

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.literals import ContainerInstanceStatusType

# DescribeContainerInstances takes at most 100 ARNs per call.
DESCRIBE_BATCH = 100


class EcsCluster:
    def __init__(self, ecs: ECSClient) -> None:
        self._ecs = ecs

    def _active_arn(self, name: str) -> str | None:
        clusters = self._ecs.describe_clusters(clusters=[name])["clusters"]
        return next((c["clusterArn"] for c in clusters if c.get("status") == "ACTIVE"), None)

    def ensure_cluster(self, name: str) -> str:
        """The cluster's ARN, creating it if there is no active one. We look first because CreateCluster
        on an existing name is not a no-op everywhere (moto replaces the cluster and its instances)."""
        if arn := self._active_arn(name):
            return arn
        return self._ecs.create_cluster(clusterName=name, tags=[{"key": tags.CLUSTER, "value": name}])["cluster"][
            "clusterArn"
        ]

    def delete_cluster(self, name: str) -> bool:
        """Deletes the cluster; False when there was none. Container instances still registered
        (agents of hosts just terminated) would block the delete, so they are deregistered first."""
        if not self._active_arn(name):
            return False
        for arn in self._container_instance_arns(name, status=None):
            self._ecs.deregister_container_instance(cluster=name, containerInstance=arn, force=True)
        self._ecs.delete_cluster(cluster=name)
        return True

    def registered_instance_ids(self, name: str) -> set[str]:
        """EC2 ids of the instances whose ECS agent is registered and ACTIVE in the cluster."""
        ids: set[str] = set()
        for batch in batched(self._container_instance_arns(name, status="ACTIVE"), DESCRIBE_BATCH, strict=False):
            described = self._ecs.describe_container_instances(cluster=name, containerInstances=list(batch))
            ids.update(ci["ec2InstanceId"] for ci in described["containerInstances"] if "ec2InstanceId" in ci)
        return ids

    def _container_instance_arns(self, name: str, status: ContainerInstanceStatusType | None) -> list[str]:
        paginator = self._ecs.get_paginator("list_container_instances")
        # Without a status filter ECS lists the instances in every state.
        pages = paginator.paginate(cluster=name, status=status) if status else paginator.paginate(cluster=name)
        return [arn for page in pages for arn in page["containerInstanceArns"]]
