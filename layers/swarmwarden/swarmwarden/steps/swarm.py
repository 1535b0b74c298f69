"""SwarmFunction: forms and checks the swarm by running host scripts through SSM Run Command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, TypeAdapter

from swarmwarden.adapters.tokens import TokenParameters
from swarmwarden.domain.model import ClusterSpec, Contract, Host, LaunchResult, NodeStatus, Role, SwarmRef
from swarmwarden.domain.verify import mismatches
from swarmwarden.errors import SwarmNotAsPlanned


class Runner(Protocol):
    def run(
        self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int
    ) -> dict[str, Any]: ...


class Init(Contract):
    action: Literal["init"]
    spec: ClusterSpec
    seed: Host


class Join(Contract):
    action: Literal["join"]
    spec: ClusterSpec
    host: Host
    swarm: SwarmRef


class Verify(Contract):
    action: Literal["verify"]
    spec: ClusterSpec
    hosts: LaunchResult


class DeleteTokens(Contract):
    action: Literal["delete_tokens"]
    spec: ClusterSpec


SwarmRequest = Annotated[Init | Join | Verify | DeleteTokens, Field(discriminator="action")]
REQUEST: TypeAdapter[SwarmRequest] = TypeAdapter(SwarmRequest)


class InitResult(Contract):
    swarm_id: str
    manager_addr: str
    node_id: str
    created: bool


class JoinResult(Contract):
    instance_id: str
    node_id: str
    role: Role
    joined: bool


class VerifyResult(Contract):
    nodes: tuple[NodeStatus, ...]


class DeleteTokensResult(Contract):
    deleted: tuple[str, ...]


@dataclass(frozen=True)
class Adapters:
    runner: Runner
    tokens: TokenParameters
    region: str
    token_prefix: str
    command_timeout_seconds: int


def _common(spec: ClusterSpec, adapters: Adapters) -> dict[str, str]:
    return {
        "SW_CLUSTER": spec.cluster_name,
        "SW_REGION": adapters.region,
        "SW_TOKEN_PREFIX": adapters.token_prefix,
    }


def init(request: Init, adapters: Adapters) -> InitResult:
    spec = request.spec
    result = adapters.runner.run(
        request.seed.instance_id,
        "init",
        _common(spec, adapters)
        | {
            "SW_ADVERTISE_ADDR": request.seed.private_ip,
            "SW_ADDR_POOL": str(spec.address_pool),
            "SW_ADDR_POOL_MASK_LEN": str(spec.address_pool_mask_length),
        },
        adapters.command_timeout_seconds,
    )
    return InitResult.model_validate(result)


def join(request: Join, adapters: Adapters) -> JoinResult:
    result = adapters.runner.run(
        request.host.instance_id,
        "join",
        _common(request.spec, adapters)
        | {
            "SW_ROLE": request.host.role.value,
            "SW_ADVERTISE_ADDR": request.host.private_ip,
            "SW_MANAGER_ADDR": request.swarm.manager_addr,
            "SW_SWARM_ID": request.swarm.swarm_id,
        },
        adapters.command_timeout_seconds,
    )
    return JoinResult(
        instance_id=request.host.instance_id,
        node_id=result["node_id"],
        role=Role(result["role"]),
        joined=bool(result["joined"]),
    )


def status(spec: ClusterSpec, manager: Host, adapters: Adapters) -> list[NodeStatus]:
    result = adapters.runner.run(
        manager.instance_id, "status", _common(spec, adapters), adapters.command_timeout_seconds
    )
    return [NodeStatus.model_validate(node) for node in result["nodes"]]


def verify(request: Verify, adapters: Adapters) -> VerifyResult:
    hosts = request.hosts
    nodes = status(request.spec, hosts.seed, adapters)
    problems = mismatches([hosts.seed, *hosts.managers, *hosts.workers], nodes)
    if problems:
        raise SwarmNotAsPlanned("; ".join(problems))
    return VerifyResult(nodes=tuple(nodes))


def delete_tokens(adapters: Adapters) -> DeleteTokensResult:
    return DeleteTokensResult(deleted=tuple(adapters.tokens.delete()))


def run(request: SwarmRequest, adapters: Adapters) -> Contract:
    match request:
        case Init():
            return init(request, adapters)
        case Join():
            return join(request, adapters)
        case Verify():
            return verify(request, adapters)
        case DeleteTokens():
            return delete_tokens(adapters)
