"""Where each host goes: slots, AZ spread and subnet layout. Pure functions."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence

from swarmwarden.domain.model import ClusterSpec, Contract, Role


class Placement(Contract):
    """One planned host: a stable slot name (the idempotency key of its launch), its role and AZ."""

    slot: str
    role: Role
    az: str


def slot_name(role: Role, index: int) -> str:
    return f"{role.value}-{index}"


def spread(count: int, azs: Sequence[str], start: int = 0) -> list[str]:
    """`count` AZs taken round-robin from `azs`, starting at offset `start`."""
    if count and not azs:
        raise ValueError("no availability zones to spread over")
    return [azs[(start + i) % len(azs)] for i in range(count)]


def plan_placements(spec: ClusterSpec, azs: Sequence[str]) -> list[Placement]:
    """Managers first, one per AZ in turn; workers continue the rotation where the managers stopped,
    so every AZ ends up with an even share of the whole cluster."""
    usable = sorted(azs)[: spec.max_azs]
    managers = spread(spec.managers, usable)
    workers = spread(spec.workers, usable, start=spec.managers)
    return [
        *(Placement(slot=slot_name(Role.MANAGER, i), role=Role.MANAGER, az=az) for i, az in enumerate(managers)),
        *(Placement(slot=slot_name(Role.WORKER, i), role=Role.WORKER, az=az) for i, az in enumerate(workers)),
    ]


def subnet_cidrs(vpc_cidr: ipaddress.IPv4Network, count: int) -> list[ipaddress.IPv4Network]:
    """One equal subnet per AZ, carved from the front of the VPC, room left for up to 8 AZs."""
    if not 1 <= count <= 8:
        raise ValueError(f"subnet count must be 1..8, not {count}")
    return list(vpc_cidr.subnets(prefixlen_diff=3))[:count]


def az_counts(placements: Sequence[Placement], role: Role) -> Counter[str]:
    return Counter(p.az for p in placements if p.role is role)


def quorum(managers: int) -> int:
    """Raft needs a strict majority of the managers."""
    return managers // 2 + 1


def fault_tolerance(managers: int) -> int:
    """How many managers can be lost while the rest keep quorum: 1->0, 3->1, 5->2, 7->3."""
    return (managers - 1) // 2 if managers > 0 else 0
