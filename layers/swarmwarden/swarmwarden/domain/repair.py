"""Repair's rules, pure: which events are failures of ours, whether a repair may go ahead (quorum and
the circuit breaker), and where the replacement goes (its slot and AZ).

The guards:
- quorum: a dead node is removed through the managers' Raft, so the healthy managers must still be a
  majority of the managers the swarm counts; otherwise nothing automatic is safe (the runbook's
  `--force-new-cluster` case) and repair pauses for a human;
- the circuit breaker: when more than `threshold_percent` of the cluster is unhealthy at once, that
  looks like an outage (an AZ, the network, a bad AMI), and replacing everything makes it worse;
  a single failure is always repaired, so small clusters still heal;
- at most K repairs at once: the cluster lock's `max_repairs` (adapters/operations.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from swarmwarden.domain.model import Host, NodeStatus, Role
from swarmwarden.domain.placement import quorum, slot_name

# The EC2 states the repair rule listens to: the instance is going away or gone.
FAILURE_STATES = ("stopping", "stopped", "shutting-down", "terminated")
# Swarm node states and manager reachability as the status script reports them (lower case).
READY = "ready"
REACHABLE = "reachable"
_SLOT = re.compile(r"^(manager|worker)-(\d+)$")


def instance_gone(state: str | None) -> bool:
    """EC2 says the instance is going away or gone (None: EC2 no longer shows it). Its node can never
    answer again, so repair removes it at once (`node rm --force`) instead of waiting for Swarm's
    heartbeat timeout to call it down; a running instance (e.g. a dead daemon) must be down first."""
    return state is None or state in FAILURE_STATES


def execution_name(instance_id: str, attempt: int = 0) -> str:
    """The repair's idempotency key: every event about one instance maps to one execution. Reconcile
    retries a repair that ended without replacing the node (paused, failed early) as attempt 1, 2, ..."""
    return f"repair-{instance_id}" + (f"-{attempt}" if attempt else "")


@dataclass(frozen=True)
class Member:
    """One node of the cluster as the guard sees it: its table record joined with EC2 and the swarm."""

    instance_id: str
    role: Role
    node_id: str
    instance_state: str | None  # None: EC2 no longer shows the instance


@dataclass(frozen=True)
class Verdict:
    proceed: bool
    reason: str
    unhealthy: int
    total: int
    healthy_managers: int
    manager_members: int


def healthy_manager_count(nodes: Sequence[NodeStatus]) -> tuple[int, int]:
    """(healthy managers, managers Raft counts) from one manager's `docker node ls`."""
    managers = [n for n in nodes if n.role is Role.MANAGER]
    healthy = [n for n in managers if n.status == READY and (n.leader or n.reachability == REACHABLE)]
    return len(healthy), len(managers)


def unhealthy_members(members: Sequence[Member], nodes: Sequence[NodeStatus]) -> list[Member]:
    """Members whose instance is not running, or whose swarm node is not Ready (or not listed)."""
    ready = {n.id for n in nodes if n.status == READY}
    return [m for m in members if m.instance_state != "running" or m.node_id not in ready]


def breaker_trips(unhealthy: int, total: int, threshold_percent: int) -> bool:
    """More than the threshold share unhealthy, and more than one node: a single failure always heals."""
    return unhealthy > 1 and unhealthy * 100 > threshold_percent * max(total, 1)


def judge(
    members: Sequence[Member], nodes: Sequence[NodeStatus], *, have_manager: bool, threshold_percent: int
) -> Verdict:
    """Whether a repair may remove a dead node and replace it now."""
    unhealthy = len(unhealthy_members(members, nodes))
    total = len(members)
    healthy, counted = healthy_manager_count(nodes)

    def verdict(proceed: bool, reason: str) -> Verdict:
        return Verdict(proceed, reason, unhealthy, total, healthy, counted)

    if not have_manager or counted == 0:
        return verdict(False, "no manager answers: the swarm may have lost quorum (runbook: --force-new-cluster)")
    if healthy < quorum(counted):
        return verdict(
            False,
            f"only {healthy} of {counted} managers are healthy, below quorum {quorum(counted)}: "
            "removing a node needs Raft (runbook: --force-new-cluster)",
        )
    if breaker_trips(unhealthy, total, threshold_percent):
        return verdict(
            False,
            f"{unhealthy} of {total} nodes are unhealthy, more than {threshold_percent}%: "
            "this looks like an outage, not a node failure",
        )
    return verdict(True, f"{unhealthy} of {total} nodes unhealthy; {healthy} of {counted} managers healthy")


def next_slot(role: Role, taken: Iterable[str]) -> str:
    """A slot name never used in this cluster: one past the highest index of the role's slots."""
    indices = [int(m.group(2)) for s in taken if (m := _SLOT.match(s)) and m.group(1) == role.value]
    return slot_name(role, max(indices, default=-1) + 1)


def choose_az(preferred: str, azs: Sequence[str], refused: Iterable[str], placed: Mapping[str, int]) -> str | None:
    """The AZ for a replacement: the failed node's own, else the usable AZ with the fewest nodes of
    that role (`placed`, not counting the failed node), so managers stay spread. None: no AZ left."""
    refused = set(refused)
    usable = [az for az in sorted(set(azs)) if az not in refused]
    if preferred in usable:
        return preferred
    if not usable:
        return None
    counts = Counter({az: placed.get(az, 0) for az in usable})
    return min(usable, key=lambda az: (counts[az], az))


def replacement_problems(added: Host, removed_node_id: str, nodes: Sequence[NodeStatus]) -> list[str]:
    """How the swarm still differs from a finished repair: the replacement must be one Ready node with
    its role (a reachable one, for a manager), and the dead node must be gone from `docker node ls`."""
    problems = []
    live = [n for n in nodes if n.addr == added.private_ip and n.status == READY]
    if len(live) != 1:
        problems.append(f"{added.instance_id} ({added.private_ip}) is {len(live)} ready nodes, not 1")
    elif live[0].role is not added.role:
        problems.append(f"{added.instance_id} is a {live[0].role.value}, not a {added.role.value}")
    elif added.role is Role.MANAGER and not (live[0].leader or live[0].reachability == REACHABLE):
        problems.append(f"manager {added.instance_id} is {live[0].reachability or 'unreachable'}")
    if removed_node_id and any(n.id == removed_node_id for n in nodes):
        problems.append(f"the dead node {removed_node_id} is still listed")
    return problems
