"""Reconcile: what no EC2 event reports, found by comparing three views of one cluster.

The views are the instances EC2 has tagged to the cluster, the nodes a healthy manager lists, and
the node records in the cluster table. `reconcile` turns their differences into findings, each with
the one action that fixes it, or the reason it is left alone this round. It is pure: the caller
gathers the views and carries the actions out.

A finding names its instance or node, and every action on it is idempotent (a repair's execution
name is derived from the instance id; removing or terminating twice is a no-op), so a second run in
the same state starts nothing new. Records a workflow owns (failed, retiring, replaced) are never
acted on: the workflow that marked them finishes the job.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from swarmwarden.domain.model import NodeStatus, Role

# EC2 states in which an instance is still, or about to be, a host.
LIVE_STATES = frozenset({"pending", "running"})
# Swarm node states that mean the node's dockerd answers the managers.
READY = "ready"


class Kind(StrEnum):
    DEAD_DAEMON = "dead_daemon"  # the node is Down, its instance still runs: dockerd died
    LOST_INSTANCE = "lost_instance"  # a recorded node's instance stopped or vanished, and no repair owns it
    NEVER_JOINED = "never_joined"  # an instance ran past the grace period without joining
    GHOST_NODE = "ghost_node"  # a Down swarm node that no instance stands behind
    STRAY_NODE = "stray_node"  # a Ready swarm node that is none of our instances
    DRIFT = "drift"  # the live counts differ from the spec's, with no operation in flight


class Action(StrEnum):
    REPAIR = "repair"  # start the repair workflow for the instance
    TERMINATE = "terminate"  # terminate the instance
    REMOVE_NODE = "remove_node"  # demote and remove the node, on a healthy manager
    SCALE = "scale"  # start the scale workflow towards the spec's own counts
    REPORT = "report"  # log and count only: nothing automatic is safe


@dataclass(frozen=True)
class Instance:
    instance_id: str
    role: Role | None
    state: str
    private_ip: str
    launched_at: float  # epoch seconds


@dataclass(frozen=True)
class Record:
    """A node record, reduced to what reconcile reads. `owned`: a workflow is ending or replacing it."""

    instance_id: str
    role: Role
    node_id: str
    owned: bool


@dataclass(frozen=True)
class Locks:
    scale: bool = False
    repairs: int = 0


@dataclass(frozen=True)
class View:
    desired: Mapping[Role, int]
    instances: Sequence[Instance]
    records: Sequence[Record]
    swarm: Sequence[NodeStatus] | None  # None: no manager answered
    now: float
    grace_seconds: float
    paused: bool = False
    locks: Locks = Locks()


@dataclass(frozen=True)
class Finding:
    kind: Kind
    action: Action
    target: str  # an instance id, a node id, or the role that drifted
    role: Role | None
    detail: str
    deferred: str = ""  # why the action waits for a later round; empty when it is to be taken now

    @property
    def actionable(self) -> bool:
        return self.action is not Action.REPORT and not self.deferred


def _nodes_by_instance(view: View, live: Mapping[str, Instance]) -> dict[str, list[NodeStatus]]:
    """Each live instance's swarm nodes: by the node id its record holds, else by its private IP."""
    by_id = {r.node_id: r.instance_id for r in view.records if r.node_id}
    by_ip = {i.private_ip: i.instance_id for i in live.values() if i.private_ip}
    found: dict[str, list[NodeStatus]] = {}
    for node in view.swarm or ():
        owner = by_id.get(node.id) or by_ip.get(node.addr)
        if owner is not None:
            found.setdefault(owner, []).append(node)
    return found


def _deferred(finding: Finding, view: View) -> Finding:
    """The finding, with the reason its action waits: the operator paused repair, a scale holds the
    cluster, or a repair in flight may still be joining the host a termination would end."""
    reason = finding.deferred
    if view.paused:
        reason = "automatic repair is paused"
    elif view.locks.scale:
        reason = "a scale operation holds the cluster"
    elif finding.action is Action.TERMINATE and view.locks.repairs:
        # A repair in flight launches a host that is not recorded until it has joined.
        reason = f"{view.locks.repairs} repair(s) in flight"
    if finding.action is Action.REPORT or reason == finding.deferred:
        return finding
    return dataclasses.replace(finding, deferred=reason)


def _instance_findings(view: View, live: Mapping[str, Instance], records: Mapping[str, Record]) -> list[Finding]:
    nodes = _nodes_by_instance(view, live)
    found = []
    for instance in sorted(live.values(), key=lambda i: i.instance_id):
        record = records.get(instance.instance_id)
        if record is not None and record.owned:
            continue
        mine = nodes.get(instance.instance_id, [])
        if any(n.status == READY for n in mine):
            continue
        if mine and instance.state == "running":
            states = ", ".join(sorted({n.status for n in mine}))
            found.append(
                Finding(
                    Kind.DEAD_DAEMON,
                    Action.REPAIR,
                    instance.instance_id,
                    instance.role,
                    f"swarm node {mine[0].id} is {states} while its instance runs",
                )
            )
        elif not mine and view.now - instance.launched_at > view.grace_seconds:
            minutes = (view.now - instance.launched_at) / 60
            # A recorded node belongs to the cluster's shape: replace it. An unrecorded one was launched
            # by a run that never finished (its slot is nobody's): end it; drift restores the count.
            action = Action.TERMINATE if record is None else Action.REPAIR
            found.append(
                Finding(
                    Kind.NEVER_JOINED,
                    action,
                    instance.instance_id,
                    instance.role,
                    f"{instance.state} for {minutes:.0f} min, not in the swarm"
                    + ("" if record else ", and no node record"),
                )
            )
    return found


def _record_findings(live: Mapping[str, Instance], view: View) -> list[Finding]:
    states = {i.instance_id: i.state for i in view.instances}
    return [
        Finding(
            Kind.LOST_INSTANCE,
            Action.REPAIR,
            record.instance_id,
            record.role,
            f"recorded as active, instance is {states.get(record.instance_id, 'gone')} (an EC2 event was missed)",
        )
        for record in sorted(view.records, key=lambda r: r.instance_id)
        if not record.owned and record.instance_id not in live
    ]


def _node_findings(view: View, live: Mapping[str, Instance]) -> list[Finding]:
    claimed = {id(n) for nodes in _nodes_by_instance(view, live).values() for n in nodes}
    recorded = {r.node_id for r in view.records if r.node_id}
    ready_addrs = {n.addr for n in view.swarm or () if n.status == READY}
    found = []
    for node in sorted(view.swarm or (), key=lambda n: n.id):
        stale = node.status != READY and node.addr in ready_addrs  # an old identity of a rejoined host
        if not stale and (id(node) in claimed or node.id in recorded):
            continue
        if node.status == READY:
            found.append(
                Finding(Kind.STRAY_NODE, Action.REPORT, node.id, node.role, f"{node.hostname} is none of our instances")
            )
        else:
            found.append(
                Finding(
                    Kind.GHOST_NODE,
                    Action.REMOVE_NODE,
                    node.id,
                    node.role,
                    f"{node.hostname} ({node.addr}) is {node.status} and no instance of ours runs it",
                )
            )
    return found


def _drift(view: View, live: Mapping[str, Instance], records: Mapping[str, Record], acting: bool) -> list[Finding]:
    if view.locks.scale or view.locks.repairs:
        # Counts in flux (a replacement launched but not recorded yet, a node retiring) are no drift.
        return []
    counts = Counter(i.role for i in live.values() if not (r := records.get(i.instance_id)) or not r.owned)
    # Other findings of this round change the counts themselves: look again after them. A scale
    # needs a manager that answers.
    deferred = ""
    if acting:
        deferred = "other fixes come first"
    elif view.swarm is None:
        deferred = "no manager answers"
    return [
        Finding(
            Kind.DRIFT,
            Action.SCALE,
            role.value,
            role,
            f"{counts.get(role, 0)} {role.value}s, the spec wants {view.desired.get(role, 0)}",
            deferred=deferred,
        )
        for role in (Role.MANAGER, Role.WORKER)
        if counts.get(role, 0) != view.desired.get(role, 0)
    ]


def reconcile(view: View) -> tuple[Finding, ...]:
    """Every difference between the views, each with its action (or the reason it waits)."""
    live = {i.instance_id: i for i in view.instances if i.state in LIVE_STATES}
    records = {r.instance_id: r for r in view.records}
    found = _record_findings(live, view)
    # Without a manager's answer the swarm is unknown: a missing node proves nothing.
    if view.swarm is not None:
        found += _instance_findings(view, live, records)
        found += _node_findings(view, live)
    found += _drift(view, live, records, acting=any(f.action is not Action.REPORT for f in found))
    return tuple(_deferred(f, view) for f in found)
