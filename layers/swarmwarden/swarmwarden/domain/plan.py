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


class UnsupportedChange(ValueError):
    """A spec change this version cannot carry out; the message says why and what to do instead."""


def classify_update(old: ClusterSpec, new: ClusterSpec) -> UpdateAction:
    """NOTHING for an unchanged spec; PROVISION when the idempotent provision workflow converges
    the cluster onto `new` (it only adds hosts); UnsupportedChange otherwise."""
    if old == new:
        return UpdateAction.NOTHING
    frozen = [name for name in IMMUTABLE_FIELDS if getattr(old, name) != getattr(new, name)]
    if frozen:
        raise UnsupportedChange(f"{', '.join(frozen)} cannot change after creation: deploy a new stack instead")
    shrinking = [name for name in ("managers", "workers") if getattr(new, name) < getattr(old, name)]
    if shrinking:
        raise UnsupportedChange(
            f"lowering {' and '.join(shrinking)} needs the scale workflow's drain and removal, "
            "which this version does not have yet"
        )
    return UpdateAction.PROVISION


def missing(planned: Sequence[Placement], existing_slots: Iterable[str]) -> list[Placement]:
    """The planned placements whose slot has no live instance yet, in plan order."""
    present = set(existing_slots)
    return [placement for placement in planned if placement.slot not in present]
