"""Scaling: from the cluster as it is and the counts wanted, what to add and what to remove. Pure.

The rules:
- Added hosts take the lowest free slot indexes of their role, in the AZ that holds the fewest hosts
  of that role, so a cluster that shrank and grows again fills its gaps and stays spread.
- Removed hosts: workers before managers; within a role unreachable ones first, then the fewest
  running tasks (an unknown count last), then the newest (highest slot index).
- Managers leave one at a time, never the one that runs the commands nor the leader, and only while
  after each departure the reachable managers left are a quorum of all the managers left.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from swarmwarden.domain.model import ClusterSpec, Contract, Host, Role
from swarmwarden.domain.placement import Placement, quorum, slot_name

_SLOT = re.compile(r"^(manager|worker)-(\d+)$")


class Member(Contract):
    """A node of the cluster as scaling sees it: its host, and what the swarm says about it."""

    host: Host
    node_id: str = ""
    tasks: int | None = None  # running tasks; None when the swarm did not say
    leader: bool = False
    reachable: bool = True  # a manager's Raft reachability; for a worker, whether it is Ready


class ScaleChange(Contract):
    placements: tuple[Placement, ...]  # the whole cluster afterwards, managers first, `first` at the front
    added: tuple[Placement, ...]
    removed: tuple[Member, ...]  # in removal order: workers first


class UnsafeScale(ValueError):
    """The change cannot be made safely now; the message says why."""


def slot_index(slot: str) -> int:
    match = _SLOT.match(slot)
    return int(match.group(2)) if match else -1


def removal_order(members: Sequence[Member]) -> list[Member]:
    """Unreachable first (that only helps quorum), then the fewest tasks (an unknown count after every
    known one), then the newest slot."""
    return sorted(members, key=lambda m: (m.reachable, m.tasks is None, m.tasks or 0, -slot_index(m.host.slot)))


def _added(role: Role, count: int, kept: Sequence[Member], taken: set[str], azs: Sequence[str]) -> list[Placement]:
    per_az = Counter({az: 0 for az in azs}) + Counter(m.host.az for m in kept if m.host.role is role)
    placements: list[Placement] = []
    index = 0
    while len(placements) < count:
        slot = slot_name(role, index)
        index += 1
        if slot in taken:
            continue
        # The least used AZ; ties go to the AZ that comes first, as in plan_placements.
        az = min(azs, key=lambda a: (per_az[a], azs.index(a)))
        per_az[az] += 1
        placements.append(Placement(slot=slot, role=role, az=az))
    return placements


def check_manager_removal(managers: Sequence[Member], removing: Sequence[Member]) -> None:
    """One manager leaves at a time; after each departure the reachable managers left must still be a
    quorum of all the managers left (an unreachable one still counts as a Raft member)."""
    total = len(managers)
    reachable = sum(m.reachable for m in managers)
    for member in removing:
        total -= 1
        reachable -= member.reachable
        if total < 1 or reachable < quorum(total):
            raise UnsafeScale(
                f"removing {member.host.slot} would leave {reachable} of {total} managers reachable, "
                f"below the quorum of {quorum(total)}: repair the unreachable managers first"
            )


def plan_change(
    spec: ClusterSpec, azs: Sequence[str], members: Sequence[Member], first: str, reserved: Iterable[str] = ()
) -> ScaleChange:
    """What turns `members` into `spec`'s counts. `first` is the instance id of the manager that runs
    the commands: it is never removed and leads the placements (so it seeds the launch result).
    New hosts never take a member's slot, nor a `reserved` one (a node still on its way out)."""
    if spec.managers % 2 == 0:
        raise UnsafeScale(f"{spec.managers} managers: an even count adds no fault tolerance")
    usable = sorted(azs)[: spec.max_azs]
    taken = {m.host.slot for m in members} | set(reserved)
    removed: list[Member] = []
    kept: list[Member] = []
    added: list[Placement] = []
    for role, wanted in ((Role.WORKER, spec.workers), (Role.MANAGER, spec.managers)):
        of_role = [m for m in members if m.host.role is role]
        excess = len(of_role) - wanted
        if excess > 0:
            # The commanding manager and the leader stay; everything else is a candidate.
            candidates = [m for m in of_role if m.host.instance_id != first and not m.leader]
            if len(candidates) < excess:
                raise UnsafeScale(f"cannot remove {excess} {role.value}s: only {len(candidates)} may leave")
            leaving = removal_order(candidates)[:excess]
            if role is Role.MANAGER:
                check_manager_removal(of_role, leaving)
            removed.extend(leaving)
            kept.extend(m for m in of_role if m not in leaving)
        else:
            kept.extend(of_role)
            added.extend(_added(role, -excess, of_role, taken, usable))

    def rank(placement: Placement) -> tuple[int, bool, int]:
        commanding = any(m.host.slot == placement.slot and m.host.instance_id == first for m in kept)
        return (placement.role is not Role.MANAGER, not commanding, slot_index(placement.slot))

    own = [Placement(slot=m.host.slot, role=m.host.role, az=m.host.az) for m in kept]
    return ScaleChange(placements=tuple(sorted([*own, *added], key=rank)), added=tuple(added), removed=tuple(removed))
