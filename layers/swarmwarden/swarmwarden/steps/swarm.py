"""SwarmFunction: forms and checks the swarm by running host scripts through SSM Run Command."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from botocore.exceptions import ClientError
from pydantic import Field, TypeAdapter

from swarmwarden import aws
from swarmwarden.adapters.runcommand import RunCommand
from swarmwarden.adapters.tokens import TokenParameters
from swarmwarden.domain.model import ClusterSpec, Contract, Host, LaunchResult, NodeStatus, Role, SwarmRef
from swarmwarden.domain.placement import quorum
from swarmwarden.domain.repair import healthy_manager_count, replacement_problems
from swarmwarden.domain.verify import mismatches
from swarmwarden.errors import SwarmNotAsPlanned, SwarmSettling, SwarmwardenError
from swarmwarden.settings import Settings

# What a manager's dockerd answers while the managers elect a leader (or cannot: no quorum).
NO_LEADER = ("does not have a leader", "context deadline exceeded")
# A node's state as a new leader reports it until the node's first heartbeat to it.
UNKNOWN = "unknown"
DOWN = "down"
# After an election, a live node that is slow to reach the new leader is shown down for a while; the
# guard would count it as failed (and could pause repair for an outage that is not one). So a view
# with other nodes down is looked at again, every second, for this long before it is reported.
SETTLE_DOWN_SECONDS = 20.0


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


class OnManager(Contract):
    """Base of the requests that run on one healthy manager, named by the caller."""

    spec: ClusterSpec
    manager: Host


class Status(OnManager):
    action: Literal["status"]


class Drain(OnManager):
    action: Literal["drain"]
    node: str = Field(description="node id or hostname")


class RemoveNode(OnManager):
    """Demote (if a manager), then `node rm --force`. `force` also removes a node that is still up
    (scale-in removes live, drained nodes; repair removes dead ones and leaves `force` off)."""

    action: Literal["remove_node"]
    node: str
    force: bool = False


class RotateTokens(OnManager):
    action: Literal["rotate_tokens"]


class Rebalance(OnManager):
    action: Literal["rebalance"]
    max_updates: int = Field(default=2, ge=1, le=20)


class HealthyManager(Contract):
    """Repair: the first of `candidates` (live managers from the table) whose `status` answers."""

    action: Literal["healthy_manager"]
    spec: ClusterSpec
    candidates: tuple[Host, ...]
    # The dead node itself may stay `unknown` to a newly elected leader until Swarm marks it down.
    failed_node_id: str = ""


class VerifyReplaced(OnManager):
    """Repair: `added` is a Ready node with its role, and the dead node `removed` is gone."""

    action: Literal["verify_replaced"]
    added: Host
    removed: str = Field(description="the dead node's id; empty when it never had one")


SwarmRequest = Annotated[
    Init
    | Join
    | Verify
    | DeleteTokens
    | Status
    | Drain
    | RemoveNode
    | RotateTokens
    | Rebalance
    | HealthyManager
    | VerifyReplaced,
    Field(discriminator="action"),
]
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


class StatusResult(Contract):
    nodes: tuple[NodeStatus, ...]


class HealthyManagerResult(Contract):
    manager: Host | None
    nodes: tuple[NodeStatus, ...]
    tried: tuple[str, ...] = Field(description="why each manager before the answer did not do")


class DrainResult(Contract):
    node: str
    availability: str


class RemoveNodeResult(Contract):
    node: str
    removed: bool
    was_manager: bool = False


class RotateTokensResult(Contract):
    rotated: tuple[str, ...]


class RebalanceResult(Contract):
    updated: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class Adapters:
    runner: Runner
    tokens: TokenParameters
    region: str
    token_prefix: str
    command_timeout_seconds: int
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


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


def healthy_manager(request: HealthyManager, adapters: Adapters) -> HealthyManagerResult:
    """None when no candidate answers: the guard then pauses repair (quorum may be lost). A manager
    that answers "no leader" raises SwarmSettling instead: after the leader dies, the others elect a
    new one within seconds, and the workflow's Retry waits for that (if quorum is really lost, the
    retries run out and the repair fails, which alarms). So does an answer that counts fewer healthy
    managers than a quorum (a manager answers only when a leader, so a quorum, exists), or a node in
    state `unknown`: right after an election the new leader reports the others unreachable, and every
    node unknown, until their next heartbeat; the guard would count them as failed."""
    tried = []
    for candidate in request.candidates:
        try:
            nodes = status(request.spec, candidate, adapters)
        except (SwarmwardenError, ClientError) as error:
            tried.append(f"{candidate.instance_id}: {type(error).__name__}: {error}")
            continue
        healthy, counted = healthy_manager_count(nodes)
        if healthy < quorum(counted):
            raise SwarmSettling(f"{candidate.instance_id} sees {healthy} of {counted} managers healthy: settling")
        if unknown := [n.hostname for n in nodes if n.status == UNKNOWN and n.id != request.failed_node_id]:
            raise SwarmSettling(f"{candidate.instance_id} does not know the state of {', '.join(unknown)} yet")
        nodes = _settled(request, candidate, nodes, adapters)
        return HealthyManagerResult(manager=candidate, nodes=tuple(nodes), tried=tuple(tried))
    if any(sign in attempt for attempt in tried for sign in NO_LEADER):
        raise SwarmSettling(f"the swarm has no leader yet: {'; '.join(tried)}")
    return HealthyManagerResult(manager=None, nodes=(), tried=tuple(tried))


def _settled(request: HealthyManager, manager: Host, nodes: list[NodeStatus], adapters: Adapters) -> list[NodeStatus]:
    """`nodes` again, at most SETTLE_DOWN_SECONDS later, until no node but the failed one is down."""
    deadline = adapters.clock() + SETTLE_DOWN_SECONDS
    while any(n.status == DOWN and n.id != request.failed_node_id for n in nodes) and adapters.clock() < deadline:
        adapters.sleep(1.0)
        nodes = status(request.spec, manager, adapters)
    return nodes


def verify_replaced(request: VerifyReplaced, adapters: Adapters) -> StatusResult:
    nodes = status(request.spec, request.manager, adapters)
    problems = replacement_problems(request.added, request.removed, nodes)
    if problems:
        raise SwarmNotAsPlanned("; ".join(problems))
    return StatusResult(nodes=tuple(nodes))


def delete_tokens(adapters: Adapters) -> DeleteTokensResult:
    return DeleteTokensResult(deleted=tuple(adapters.tokens.delete()))


def _on_manager(request: OnManager, script: str, parameters: dict[str, str], adapters: Adapters) -> dict[str, Any]:
    return adapters.runner.run(
        request.manager.instance_id,
        script,
        _common(request.spec, adapters) | parameters,
        adapters.command_timeout_seconds,
    )


def drain(request: Drain, adapters: Adapters) -> DrainResult:
    return DrainResult.model_validate(_on_manager(request, "drain", {"SW_NODE": request.node}, adapters))


def remove_node(request: RemoveNode, adapters: Adapters) -> RemoveNodeResult:
    parameters = {"SW_NODE": request.node, "SW_FORCE": "1" if request.force else "0"}
    result = _on_manager(request, "remove-dead-node", parameters, adapters)
    return RemoveNodeResult(
        node=str(result.get("node", request.node)),
        removed=bool(result["removed"]),
        was_manager=bool(result.get("was_manager", False)),
    )


def rotate_tokens(request: RotateTokens, adapters: Adapters) -> RotateTokensResult:
    return RotateTokensResult.model_validate(_on_manager(request, "rotate-tokens", {}, adapters))


def rebalance(request: Rebalance, adapters: Adapters) -> RebalanceResult:
    result = _on_manager(request, "rebalance", {"SW_MAX_UPDATES": str(request.max_updates)}, adapters)
    return RebalanceResult.model_validate(result)


# ---------------------------------------------------------------- scaling
def adapters_from_settings(config: Settings) -> Adapters:
    """What SwarmFunction and ScaleFunction (which runs scripts of its own) build from their settings."""
    return Adapters(
        runner=RunCommand(aws.ssm()),
        tokens=TokenParameters(aws.ssm(), config.token_parameter_prefix),
        region=config.region,
        token_prefix=config.token_parameter_prefix,
        command_timeout_seconds=config.command_timeout_seconds,
    )


def run_script(
    spec: ClusterSpec, manager: Host, script: str, parameters: dict[str, str], adapters: Adapters
) -> dict[str, Any]:
    """Runs one of the scale workflow's scripts (steps.scale) on a manager, with the common parameters."""
    return adapters.runner.run(
        manager.instance_id, script, _common(spec, adapters) | parameters, adapters.command_timeout_seconds
    )


def run(request: SwarmRequest, adapters: Adapters) -> Contract:
    match request:
        case Status():
            return StatusResult(nodes=tuple(status(request.spec, request.manager, adapters)))
        case Drain():
            return drain(request, adapters)
        case RemoveNode():
            return remove_node(request, adapters)
        case RotateTokens():
            return rotate_tokens(request, adapters)
        case Rebalance():
            return rebalance(request, adapters)
        case Init():
            return init(request, adapters)
        case Join():
            return join(request, adapters)
        case Verify():
            return verify(request, adapters)
        case DeleteTokens():
            return delete_tokens(adapters)
        case HealthyManager():
            return healthy_manager(request, adapters)
        case VerifyReplaced():
            return verify_replaced(request, adapters)
