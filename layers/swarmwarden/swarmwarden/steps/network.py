"""NetworkFunction: the cluster's network and its ECS cluster, ensured and deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import Field, TypeAdapter

from swarmwarden import aws
from swarmwarden.adapters.ecs import EcsCluster
from swarmwarden.adapters.network import Network
from swarmwarden.domain.model import ClusterSpec, Contract
from swarmwarden.settings import Settings


class EnsureNetwork(Contract):
    action: Literal["ensure_network"]
    spec: ClusterSpec


class EnsureEcsCluster(Contract):
    action: Literal["ensure_ecs_cluster"]
    spec: ClusterSpec


class DeleteNetwork(Contract):
    action: Literal["delete_network"]
    spec: ClusterSpec


class DeleteEcsCluster(Contract):
    action: Literal["delete_ecs_cluster"]
    spec: ClusterSpec


NetworkRequest = Annotated[
    EnsureNetwork | EnsureEcsCluster | DeleteNetwork | DeleteEcsCluster, Field(discriminator="action")
]
REQUEST: TypeAdapter[NetworkRequest] = TypeAdapter(NetworkRequest)


class EcsClusterRef(Contract):
    cluster_arn: str


class NetworkDeleted(Contract):
    deleted: dict[str, int]


class EcsClusterDeleted(Contract):
    deleted: bool


@dataclass(frozen=True)
class Adapters:
    network: Network
    ecs: EcsCluster

    @classmethod
    def from_settings(cls, _settings: Settings) -> Self:
        """The same entry point as the other functions' adapters; the network needs no setting."""
        return cls(network=Network(aws.ec2()), ecs=EcsCluster(aws.ecs()))


def run(request: NetworkRequest, adapters: Adapters) -> Contract:
    name = request.spec.cluster_name
    match request:
        case EnsureNetwork():
            return adapters.network.ensure(request.spec)
        case EnsureEcsCluster():
            return EcsClusterRef(cluster_arn=adapters.ecs.ensure_cluster(name))
        case DeleteNetwork():
            return NetworkDeleted(deleted=adapters.network.delete(name))
        case DeleteEcsCluster():
            return EcsClusterDeleted(deleted=adapters.ecs.delete_cluster(name))
