"""Planning: what a change of spec means for the running cluster. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from swarmwarden.domain.model import ClusterSpec
from swarmwarden.domain.placement import Placement

# Baked into the network or the swarm at creation; changing them means a new cluster.
IMMUTABLE_FIELDS = ("cluster_name", "vpc_cidr", "address_pool", "address_pool_mask_length", "max_azs")


class UpdateAction(StrEnum):
    NOTHING = "nothing"
    PROVISION = "provision"
    SCALE = "scale"


class UnsupportedChange(ValueError):
    """A spec change this version cannot carry out; the message says why and what to do instead."""


def classify_update(old: ClusterSpec, new: ClusterSpec) -> UpdateAction:
    """NOTHING for an unchanged spec; SCALE when the counts change (either way: the scale workflow adds,
    or drains and removes); PROVISION when only what new hosts are made of changes (instance type, AMI,
    key pair, max_workers), which the idempotent provision workflow records for the next launch;
    UnsupportedChange for a field baked into the network or the swarm."""
    if old == new:
        return UpdateAction.NOTHING
    frozen = [name for name in IMMUTABLE_FIELDS if getattr(old, name) != getattr(new, name)]
    if frozen:
        raise UnsupportedChange(f"{', '.join(frozen)} cannot change after creation: deploy a new stack instead")
    if (old.managers, old.workers) != (new.managers, new.workers):
        return UpdateAction.SCALE
    return UpdateAction.PROVISION


def missing(planned: Sequence[Placement], existing_slots: Iterable[str]) -> list[Placement]:
    """The planned placements whose slot has no live instance yet, in plan order."""
    present = set(existing_slots)
    return [placement for placement in planned if placement.slot not in present]
