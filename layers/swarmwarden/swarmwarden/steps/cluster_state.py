"""ClusterStateFunction: records what the workflows did in the cluster table."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

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


ClusterStateRequest = Annotated[Provisioned | TearingDown | TornDown, Field(discriminator="action")]
REQUEST: TypeAdapter[ClusterStateRequest] = TypeAdapter(ClusterStateRequest)


class Recorded(Contract):
    recorded: int


class StatusResult(Contract):
    status: ClusterStatus


def run(request: ClusterStateRequest, store: ClusterStore) -> Contract:
    match request:
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
