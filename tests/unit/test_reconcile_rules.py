"""Property tests for reconcile's detector: what it finds, what it leaves alone, and that acting on
its findings leaves nothing for a second run."""

from __future__ import annotations

import dataclasses
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from swarmwarden.domain.model import NodeStatus, Role
from swarmwarden.domain.reconcile import Action, Finding, Instance, Kind, Locks, Record, View, reconcile

NOW = 1_000_000.0
GRACE = 600.0


@dataclasses.dataclass(frozen=True)
class Member:
    """One host of a generated cluster and what has happened to it."""

    role: Role
    fate: str  # healthy, dead_daemon, lost, never_joined, orphan, joining, owned, ghost
    old: bool  # launched before the grace period (a joining host is always young)


fates = st.sampled_from(["healthy", "dead_daemon", "lost", "never_joined", "orphan", "joining", "owned", "ghost"])
members = st.lists(
    st.builds(Member, role=st.sampled_from(list(Role)), fate=fates, old=st.booleans()), min_size=1, max_size=12
)


def _node(index: int, role: Role, status: str) -> NodeStatus:
    return NodeStatus(
        id=f"node{index}",
        hostname=f"h{index}",
        addr=f"10.0.0.{index}",
        role=role,
        status=status,
        availability="active",
        leader=False,
    )


def build(cluster: list[Member], *, healthy_counts: bool = False, **changes: object) -> View:
    instances, records, nodes = [], [], []
    for index, member in enumerate(cluster, start=1):
        iid, ip = f"i-{index:04d}", f"10.0.0.{index}"
        fate = member.fate
        launched = NOW - (GRACE * 2 if member.old and fate != "joining" else GRACE / 2)
        state = "terminated" if fate in {"lost", "ghost"} else "running"
        if fate != "ghost":
            instances.append(Instance(iid, member.role, state, ip, launched))
        if fate not in {"orphan", "never_joined", "joining", "ghost"} or (fate == "never_joined" and index % 2):
            records.append(Record(iid, member.role, f"node{index}" if fate != "never_joined" else "", fate == "owned"))
        if fate in {"healthy", "owned"}:
            nodes.append(_node(index, member.role, "ready"))
        elif fate in {"dead_daemon", "ghost", "lost"}:
            nodes.append(_node(index, member.role, "down"))
    if healthy_counts:
        counts = Counter(m.role for m in cluster if m.fate in {"healthy", "joining"})
    else:
        counts = Counter(m.role for m in cluster)
    fields: dict[str, object] = {
        "desired": dict(counts),
        "instances": instances,
        "records": records,
        "swarm": nodes,
        "now": NOW,
        "grace_seconds": GRACE,
    }
    return View(**(fields | changes))  # type: ignore[arg-type]


def _apply(view: View, findings: tuple[Finding, ...]) -> View:
    """What the actions do to the views: a repair owns its record at once, terminations and removals
    take effect. (The repair's own later steps are the repair workflow's business.)"""
    act = [f for f in findings if f.actionable]
    repaired = {f.target for f in act if f.action is Action.REPAIR}
    terminated = {f.target for f in act if f.action is Action.TERMINATE}
    removed = {f.target for f in act if f.action is Action.REMOVE_NODE}
    return dataclasses.replace(
        view,
        instances=[
            dataclasses.replace(i, state="terminated") if i.instance_id in terminated else i for i in view.instances
        ],
        records=[dataclasses.replace(r, owned=True) if r.instance_id in repaired else r for r in view.records],
        swarm=[n for n in view.swarm or () if n.id not in removed],
    )


@given(st.lists(st.sampled_from(list(Role)), min_size=1, max_size=12))
def test_a_healthy_cluster_has_no_findings(roles: list[Role]) -> None:
    assert reconcile(build([Member(role, "healthy", old=True) for role in roles])) == ()


@given(members)
def test_a_second_run_after_the_actions_starts_nothing_new(cluster: list[Member]) -> None:
    view = build(cluster, healthy_counts=True)
    first = reconcile(view)
    second = reconcile(_apply(view, first))
    acted = {(f.action, f.target) for f in first if f.actionable and f.action is not Action.SCALE}
    again = {(f.action, f.target) for f in second if f.actionable and f.action is not Action.SCALE}
    assert not acted & again
    assert not {f for f in again if f[0] is not Action.REPAIR}, "terminations and removals are done in one go"


@given(members)
def test_every_problem_is_found_once_with_the_action_that_fixes_it(cluster: list[Member]) -> None:
    findings = reconcile(build(cluster))
    targets = [(f.kind, f.target) for f in findings]
    assert len(targets) == len(set(targets))
    by_target = {f.target: f for f in findings}
    for index, member in enumerate(cluster, start=1):
        iid, node = f"i-{index:04d}", f"node{index}"
        match member.fate:
            case "dead_daemon":
                assert (by_target[iid].kind, by_target[iid].action) == (Kind.DEAD_DAEMON, Action.REPAIR)
            case "lost":
                assert (by_target[iid].kind, by_target[iid].action) == (Kind.LOST_INSTANCE, Action.REPAIR)
            case "ghost":
                assert (by_target[node].kind, by_target[node].action) == (Kind.GHOST_NODE, Action.REMOVE_NODE)
            case "never_joined" | "orphan" if member.old:
                recorded = member.fate == "never_joined" and index % 2
                assert by_target[iid].kind is Kind.NEVER_JOINED
                assert by_target[iid].action is (Action.REPAIR if recorded else Action.TERMINATE)
            case _:
                assert iid not in by_target, f"{member} needs nothing, got {by_target.get(iid)}"


@given(members)
def test_nothing_is_done_to_a_ready_node_a_young_instance_or_a_record_a_workflow_owns(cluster: list[Member]) -> None:
    view = build(cluster)
    young = {i.instance_id for i in view.instances if NOW - i.launched_at <= GRACE}
    owned = {r.instance_id for r in view.records if r.owned}
    ready = {n.id for n in view.swarm or () if n.status == "ready"}
    for finding in reconcile(view):
        if finding.action is Action.REMOVE_NODE:
            assert finding.target not in ready
        if finding.action in {Action.REPAIR, Action.TERMINATE}:
            assert finding.target not in owned
            assert finding.target not in young or finding.kind is not Kind.NEVER_JOINED


@given(members)
def test_without_a_swarm_view_only_ec2_and_the_table_are_compared(cluster: list[Member]) -> None:
    findings = reconcile(build(cluster, swarm=None))
    assert {f.kind for f in findings} <= {Kind.LOST_INSTANCE, Kind.DRIFT}


@given(members, st.booleans())
def test_a_pause_or_a_scale_defers_every_action(cluster: list[Member], paused: bool) -> None:
    locks = Locks(scale=not paused)
    for finding in reconcile(build(cluster, paused=paused, locks=locks)):
        assert not finding.actionable
        assert finding.deferred or finding.action is Action.REPORT


@given(members, st.integers(1, 3))
def test_repairs_in_flight_hold_back_terminations_and_hide_drift(cluster: list[Member], repairs: int) -> None:
    free = [f for f in reconcile(build(cluster)) if f.kind is not Kind.DRIFT]
    busy = reconcile(build(cluster, locks=Locks(repairs=repairs)))
    assert len(free) == len(busy)
    for before, after in zip(free, busy, strict=True):
        if before.action is Action.TERMINATE:
            assert not after.actionable
        else:
            assert after == before


@given(members)
def test_drift_scales_only_when_nothing_else_is_fixing_the_counts(cluster: list[Member]) -> None:
    findings = reconcile(build(cluster, healthy_counts=True))
    drift = [f for f in findings if f.kind is Kind.DRIFT]
    others = [f for f in findings if f.kind is not Kind.DRIFT and f.action is not Action.REPORT]
    if others:
        assert not any(f.actionable for f in drift)


def test_drift_is_the_difference_between_the_spec_and_the_live_instances() -> None:
    view = build([Member(Role.MANAGER, "healthy", True), Member(Role.WORKER, "healthy", True)])
    findings = reconcile(dataclasses.replace(view, desired={Role.MANAGER: 3, Role.WORKER: 1}))
    assert [(f.kind, f.action, f.target, f.actionable) for f in findings] == [
        (Kind.DRIFT, Action.SCALE, "manager", True)
    ]
    assert "1 managers, the spec wants 3" in findings[0].detail


def test_a_stale_down_identity_of_a_rejoined_host_is_removed() -> None:
    view = build([Member(Role.WORKER, "healthy", True)])
    stale = _node(1, Role.WORKER, "down").model_copy(update={"id": "old1"})
    findings = reconcile(dataclasses.replace(view, swarm=[*(view.swarm or ()), stale]))
    assert [(f.kind, f.target) for f in findings] == [(Kind.GHOST_NODE, "old1")]


def test_a_ready_node_that_is_none_of_ours_is_only_reported() -> None:
    view = build([Member(Role.WORKER, "healthy", True)])
    (finding,) = reconcile(dataclasses.replace(view, swarm=[*(view.swarm or ()), _node(9, Role.WORKER, "ready")]))
    assert (finding.kind, finding.action, finding.actionable) == (Kind.STRAY_NODE, Action.REPORT, False)
