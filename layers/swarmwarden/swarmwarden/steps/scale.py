"""ScaleFunction: the scale workflow's own steps. It plans a change of counts against the recorded nodes
and the live swarm, marks and forgets the nodes that leave, and moves their tasks away without a dip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from swarmwarden.adapters.store import ClusterStore, NodeRecord, NodeState
from swarmwarden.domain.model import ClusterSpec, Contract, Host, LaunchResult, NetworkRef, NodeStatus, Role, SwarmRef
from swarmwarden.domain.placement import Placement
from swarmwarden.domain.scaling import Member, UnsafeScale, plan_change, slot_index
from swarmwarden.errors import InvalidRequest, ScriptFailed, TransientError
from swarmwarden.steps import swarm
from swarmwarden.steps.hosts import LaunchedSlots


class Retiree(Contract):
    """A node that leaves: its host and its swarm node id."""

    host: Host
    node_id: str = Field(min_length=1)


class Plan(Contract):
    action: Literal["plan"]
    spec: ClusterSpec
    network: NetworkRef


class Target(Contract):
    action: Literal["target"]
    spec: ClusterSpec
    keep: LaunchResult
    launched: LaunchedSlots


class Retire(Contract):
    action: Literal["retire"]
    spec: ClusterSpec
    retirees: tuple[Retiree, ...] = Field(min_length=1)


class Evacuate(Contract):
    action: Literal["evacuate"]
    spec: ClusterSpec
    manager: Host
    retirees: tuple[Retiree, ...] = Field(min_length=1)


class CheckDrained(Contract):
    action: Literal["check_drained"]
    spec: ClusterSpec
    manager: Host
    retirees: tuple[Retiree, ...] = Field(min_length=1)
    attempt: int = Field(ge=0)
    max_attempts: int = Field(ge=1)


class Restore(Contract):
    """After a failed scale-in: the leaving nodes still in the swarm go back to work and to ACTIVE."""

    action: Literal["restore"]
    spec: ClusterSpec
    manager: Host
    retirees: tuple[Retiree, ...] = Field(min_length=1)


class Forget(Contract):
    action: Literal["forget"]
    spec: ClusterSpec
    retirees: tuple[Retiree, ...] = Field(min_length=1)


ScaleRequest = Annotated[
    Plan | Target | Retire | Evacuate | CheckDrained | Restore | Forget, Field(discriminator="action")
]
REQUEST: TypeAdapter[ScaleRequest] = TypeAdapter(ScaleRequest)


class ScalePlan(Contract):
    summary: str
    adds: int
    removes: int
    added: tuple[Placement, ...]  # the new slots: what launch_slots is asked for
    keep: LaunchResult  # the hosts that stay: verify and record them when nothing is added
    retirees: tuple[Retiree, ...]  # workers first, then managers one at a time
    retiring_ids: tuple[str, ...]
    manager: Host  # runs the swarm commands; never removed
    swarm: SwarmRef


class NodeTasks(Contract):
    id: str
    tasks: int


class ServiceReplicas(Contract):
    name: str
    running: int
    desired: int
    update: str  # the rolling update's state: none, updating, completed, paused, ...


class TaskCounts(Contract):
    """The `tasks` script's result."""

    nodes: tuple[NodeTasks, ...]
    services: tuple[ServiceReplicas, ...]


class TargetHosts(Contract):
    """The cluster once the new hosts have joined, and the new hosts themselves."""

    hosts: LaunchResult
    managers: tuple[Host, ...]
    workers: tuple[Host, ...]
    instance_ids: tuple[str, ...]


class Marked(Contract):
    marked: tuple[str, ...]


class Evacuation(Contract):
    paused: tuple[str, ...]
    updated: tuple[str, ...]


class Drained(Contract):
    """One round of the drain wait loop."""

    done: bool
    exhausted: bool
    attempt: int
    summary: str


class Restored(Contract):
    activated: tuple[str, ...]  # node ids back to work (and their records ACTIVE)
    absent: tuple[str, ...]  # node ids already removed from the swarm: their records stay RETIRING


class Forgotten(Contract):
    forgotten: tuple[str, ...]


@dataclass(frozen=True)
class Adapters:
    store: ClusterStore
    swarm: swarm.Adapters


def _tasks(spec: ClusterSpec, manager: Host, node_ids: list[str], adapters: Adapters) -> TaskCounts:
    result = swarm.run_script(spec, manager, "tasks", {"SW_NODES": " ".join(node_ids)}, adapters.swarm)
    return TaskCounts.model_validate(result)


def _survey(spec: ClusterSpec, managers: list[NodeRecord], adapters: Adapters) -> tuple[NodeRecord, list[NodeStatus]]:
    """The first recorded manager that answers, and the swarm's nodes as it sees them."""
    problems = []
    for record in managers:
        try:
            return record, swarm.status(spec, _host(record), adapters.swarm)
        except (ScriptFailed, TransientError) as error:
            problems.append(f"{record.slot}: {error}")
    raise TransientError(f"no manager answered: {'; '.join(problems) or 'none recorded'}")


def _host(record: NodeRecord) -> Host:
    return Host(
        instance_id=record.instance_id, role=record.role, slot=record.slot, az=record.az, private_ip=record.private_ip
    )


def _member(record: NodeRecord, node: NodeStatus, tasks: dict[str, int]) -> Member:
    reachable = node.reachability == "reachable" if record.role is Role.MANAGER else node.status == "ready"
    return Member(
        host=_host(record), node_id=node.id, tasks=tasks.get(node.id), leader=node.leader, reachable=reachable
    )


def plan(request: Plan, adapters: Adapters) -> ScalePlan:
    spec = request.spec
    cluster = adapters.store.cluster(spec.cluster_name)
    if cluster is None or not cluster.swarm_id:
        raise InvalidRequest(f"cluster {spec.cluster_name} has no recorded swarm: provision it first")
    records = adapters.store.nodes(spec.cluster_name)
    active = [r for r in records if r.state is NodeState.ACTIVE]
    managers = sorted((r for r in active if r.role is Role.MANAGER), key=lambda r: slot_index(r.slot))
    answering, nodes = _survey(spec, managers, adapters)
    # A replaced node can linger as a down node at the same address: the live one wins.
    by_addr = {n.addr: n for n in sorted(nodes, key=lambda n: n.status != "down")}
    if absent := [r.slot for r in active if r.private_ip not in by_addr]:
        raise InvalidRequest(f"recorded nodes {', '.join(absent)} are not in the swarm: let repair fix them first")
    leader = next((r for r in managers if by_addr[r.private_ip].leader), answering)
    tasks = {n.id: n.tasks for n in _tasks(spec, _host(leader), [], adapters).nodes}
    members = [_member(r, by_addr[r.private_ip], tasks) for r in active]
    try:
        change = plan_change(
            spec,
            sorted({s.az for s in request.network.subnets}),
            members,
            leader.instance_id,
            reserved={r.slot for r in records},
        )
    except UnsafeScale as error:
        raise InvalidRequest(str(error)) from None
    by_slot = {m.host.slot: m.host for m in members}
    staying = [by_slot[p.slot] for p in change.placements if p.slot in by_slot]
    keep = LaunchResult(
        seed=staying[0],
        managers=tuple(h for h in staying[1:] if h.role is Role.MANAGER),
        workers=tuple(h for h in staying if h.role is Role.WORKER),
        instance_ids=tuple(h.instance_id for h in staying),
        launched_instance_ids=(),
    )
    retirees = tuple(Retiree(host=m.host, node_id=m.node_id) for m in change.removed)
    counts = f"{len(managers)}+{sum(m.host.role is Role.WORKER for m in members)} -> {spec.managers}+{spec.workers}"
    summary = (
        f"{counts}: add {', '.join(p.slot for p in change.added) or 'none'}; "
        f"remove {', '.join(m.host.slot for m in change.removed) or 'none'}"
    )
    return ScalePlan(
        summary=summary,
        adds=len(change.added),
        removes=len(change.removed),
        added=change.added,
        keep=keep,
        retirees=retirees,
        retiring_ids=tuple(r.host.instance_id for r in retirees),
        manager=_host(leader),
        swarm=SwarmRef(swarm_id=cluster.swarm_id, manager_addr=leader.private_ip),
    )


def target(request: Target) -> TargetHosts:
    keep, new = request.keep, request.launched.hosts
    managers = tuple(h for h in new if h.role is Role.MANAGER)
    workers = tuple(h for h in new if h.role is Role.WORKER)
    return TargetHosts(
        hosts=LaunchResult(
            seed=keep.seed,
            managers=(*keep.managers, *managers),
            workers=(*keep.workers, *workers),
            instance_ids=(*keep.instance_ids, *(h.instance_id for h in new)),
            launched_instance_ids=request.launched.launched_instance_ids,
        ),
        managers=managers,
        workers=workers,
        instance_ids=tuple(h.instance_id for h in new),
    )


def check_drained(request: CheckDrained, adapters: Adapters) -> Drained:
    """Done when the leaving nodes run no task and every service runs at least its desired replicas
    with no update still rolling (the evacuation's updates have finished)."""
    counted = _tasks(request.spec, request.manager, [r.node_id for r in request.retirees], adapters)
    busy = [f"{n.id} runs {n.tasks}" for n in counted.nodes if n.tasks]
    short = [
        f"{s.name} {s.running}/{s.desired}{' (updating)' if s.update == 'updating' else ''}"
        for s in counted.services
        if s.running < s.desired or s.update == "updating"
    ]
    done = not busy and not short
    return Drained(
        done=done,
        exhausted=not done and request.attempt + 1 >= request.max_attempts,
        attempt=request.attempt + 1,
        summary="tasks moved" if done else "; ".join([*busy, *short]),
    )


def run(request: ScaleRequest, adapters: Adapters) -> Contract:
    cluster = request.spec.cluster_name
    match request:
        case Plan():
            return plan(request, adapters)
        case Target():
            return target(request)
        case Retire(retirees=retirees):
            # Repair ignores the termination of a node that is not ACTIVE: these are ours to end.
            ids = [r.host.instance_id for r in retirees]
            return Marked(marked=tuple(i for i in ids if adapters.store.set_node_state(cluster, i, NodeState.RETIRING)))
        case Evacuate(manager=manager, retirees=retirees):
            nodes = " ".join(r.node_id for r in retirees)
            result = swarm.run_script(request.spec, manager, "evacuate", {"SW_NODES": nodes}, adapters.swarm)
            return Evacuation.model_validate(result)
        case CheckDrained():
            return check_drained(request, adapters)
        case Restore(manager=manager, retirees=retirees):
            nodes = " ".join(r.node_id for r in retirees)
            restored = Restored.model_validate(
                swarm.run_script(request.spec, manager, "activate", {"SW_NODES": nodes}, adapters.swarm)
            )
            for retiree in retirees:
                if retiree.node_id in restored.activated:
                    adapters.store.set_node_state(cluster, retiree.host.instance_id, NodeState.ACTIVE)
            return restored
        case Forget(retirees=retirees):
            for retiree in retirees:
                adapters.store.delete_node(cluster, retiree.host.instance_id)
            return Forgotten(forgotten=tuple(r.host.instance_id for r in retirees))
