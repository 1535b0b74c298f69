"""Property tests for the scaling plan: counts, slots, spread, removal order, quorum."""

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from swarmwarden.domain.model import ClusterSpec, Host, Role
from swarmwarden.domain.placement import quorum
from swarmwarden.domain.scaling import (
    Member,
    UnsafeScale,
    check_manager_removal,
    plan_change,
    removal_order,
    slot_index,
)

AMI = "ami-0123456789abcdef0"
AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def member(role: Role, index: int, *, tasks: int | None = 0, reachable: bool = True, leader: bool = False) -> Member:
    number = index + (0 if role is Role.MANAGER else 100)
    return Member(
        host=Host(
            instance_id=f"i-{number:017x}",
            role=role,
            slot=f"{role.value}-{index}",
            az=AZS[index % 3],
            private_ip=f"10.42.0.{number}",
        ),
        node_id=f"node-{number}",
        tasks=tasks,
        reachable=reachable,
        leader=leader,
    )


def spec(managers: int, workers: int) -> ClusterSpec:
    return ClusterSpec(cluster_name="demo", managers=managers, workers=workers, max_workers=50, ami_id=AMI)  # type: ignore[arg-type]


@st.composite
def clusters(draw: st.DrawFn) -> list[Member]:
    """Odd manager counts (the first is the leader), any workers, on arbitrary (gappy) slots."""
    managers = draw(st.sampled_from([1, 3, 5, 7]))
    manager_slots = draw(st.lists(st.integers(0, 12), min_size=managers, max_size=managers, unique=True))
    worker_slots = draw(st.lists(st.integers(0, 30), max_size=20, unique=True))
    tasks = st.none() | st.integers(0, 9)
    return [
        *(member(Role.MANAGER, s, tasks=draw(tasks), leader=i == 0) for i, s in enumerate(manager_slots)),
        *(member(Role.WORKER, s, tasks=draw(tasks)) for s in worker_slots),
    ]


@given(clusters(), st.sampled_from([1, 3, 5, 7]), st.integers(0, 25))
def test_the_plan_reaches_the_counts_without_reusing_a_slot(members: list[Member], managers: int, workers: int) -> None:
    first = members[0].host.instance_id
    change = plan_change(spec(managers, workers), AZS, members, first)
    roles = Counter(p.role for p in change.placements)
    assert roles[Role.MANAGER] == managers
    assert roles[Role.WORKER] == workers
    slots = [p.slot for p in change.placements]
    assert len(set(slots)) == len(slots)
    assert not {p.slot for p in change.added} & {m.host.slot for m in members}
    assert {m.host.slot for m in change.removed} <= {m.host.slot for m in members}
    assert not {m.host.slot for m in change.removed} & set(slots)
    # Either direction per role, never both; the commanding manager stays and leads the placements.
    for role in Role:
        assert not ([p for p in change.added if p.role is role] and [m for m in change.removed if m.host.role is role])
    assert first not in {m.host.instance_id for m in change.removed}
    assert change.placements[0].slot == members[0].host.slot


@given(clusters(), st.sampled_from([1, 3, 5, 7]), st.integers(0, 25))
def test_removals_take_workers_first_then_fewest_tasks_then_newest(
    members: list[Member], managers: int, workers: int
) -> None:
    change = plan_change(spec(managers, workers), AZS, members, members[0].host.instance_id)
    roles = [m.host.role for m in change.removed]
    assert roles == sorted(roles, key=lambda r: r is Role.MANAGER)
    for role in Role:
        leaving = [m for m in change.removed if m.host.role is role]
        staying = [m for m in members if m.host.role is role and m not in leaving and not m.leader]
        assert leaving == removal_order(leaving)
        for gone in leaving:
            for stays in staying:
                assert removal_order([gone, stays])[0] == gone


@given(clusters(), st.integers(0, 25))
def test_added_hosts_fill_the_lowest_free_slots_and_even_out_the_azs(members: list[Member], extra: int) -> None:
    workers = [m for m in members if m.host.role is Role.WORKER]
    managers = len(members) - len(workers)
    change = plan_change(spec(managers, len(workers) + extra), AZS, members, members[0].host.instance_id)
    taken = {slot_index(m.host.slot) for m in workers}
    free = [i for i in range(len(workers) + extra + len(taken)) if i not in taken][:extra]
    assert [slot_index(p.slot) for p in change.added] == free
    per_az = Counter(p.az for p in change.placements if p.role is Role.WORKER)
    before = Counter(m.host.az for m in workers)
    # Additions never make the spread worse than it was, and fill the emptiest AZs first.
    spread_after = max(per_az[a] for a in AZS) - min(per_az[a] for a in AZS)
    spread_before = max(before[a] for a in AZS) - min(before[a] for a in AZS)
    assert spread_after <= max(1, spread_before)


@given(st.sampled_from([3, 5, 7]), st.data())
def test_managers_leave_one_at_a_time_keeping_quorum(current: int, data: st.DataObject) -> None:
    unreachable = data.draw(st.integers(0, current - 1))
    managers = [member(Role.MANAGER, i, reachable=i >= unreachable, leader=i == current - 1) for i in range(current)]
    desired = data.draw(st.sampled_from([n for n in (1, 3, 5) if n < current]))
    try:
        change = plan_change(spec(desired, 0), AZS, managers, managers[-1].host.instance_id)
    except UnsafeScale:
        # Refused only when some step would really leave too few reachable managers.
        leaving = removal_order(managers[:-1])[: current - desired]
        total, reachable = current, current - unreachable
        steps = []
        for gone in leaving:
            total, reachable = total - 1, reachable - gone.reachable
            steps.append(reachable >= quorum(total))
        assert not all(steps)
        return
    total = current
    reachable = current - unreachable
    for gone in change.removed:
        total, reachable = total - 1, reachable - gone.reachable
        assert reachable >= quorum(total)
    assert total == desired


def test_three_to_one_is_two_steps_and_the_leader_stays() -> None:
    managers = [member(Role.MANAGER, i, leader=i == 1) for i in range(3)]
    change = plan_change(spec(1, 0), AZS, managers, managers[1].host.instance_id)
    assert [m.host.slot for m in change.removed] == ["manager-2", "manager-0"]
    assert [p.slot for p in change.placements] == ["manager-1"]


def test_unreachable_managers_leave_first_and_a_lost_quorum_blocks_any_removal() -> None:
    managers = [member(Role.MANAGER, i, reachable=i != 1, leader=i == 0) for i in range(3)]
    change = plan_change(spec(1, 0), AZS, managers, managers[0].host.instance_id)
    assert [m.host.slot for m in change.removed] == ["manager-1", "manager-2"]
    with pytest.raises(UnsafeScale, match="quorum"):
        check_manager_removal(managers, [managers[2]])
    lost = [member(Role.MANAGER, i, reachable=i == 0, leader=i == 0) for i in range(5)]
    with pytest.raises(UnsafeScale, match="quorum"):
        plan_change(spec(3, 0), AZS, lost, lost[0].host.instance_id)


def test_unknown_task_counts_leave_last() -> None:
    quiet, busy, unknown = (member(Role.WORKER, i, tasks=t) for i, t in enumerate([0, 3, None]))
    assert removal_order([unknown, busy, quiet]) == [quiet, busy, unknown]
    down = member(Role.WORKER, 7, tasks=5, reachable=False)
    assert removal_order([quiet, down])[0] == down
    newer = member(Role.WORKER, 5, tasks=0)
    assert removal_order([quiet, newer]) == [newer, quiet]


def test_a_grown_shrunk_cluster_grows_into_its_gaps() -> None:
    members = [member(Role.MANAGER, 0, leader=True), *(member(Role.WORKER, i) for i in (3, 4))]
    change = plan_change(spec(1, 4), AZS, members, members[0].host.instance_id)
    assert [p.slot for p in change.added] == ["worker-0", "worker-1"]
    assert [p.slot for p in change.placements] == ["manager-0", "worker-0", "worker-1", "worker-3", "worker-4"]


def test_an_even_manager_count_is_refused() -> None:
    managers = [member(Role.MANAGER, 0, leader=True)]
    even = spec(1, 0).model_copy(update={"managers": 2})
    with pytest.raises(UnsafeScale, match="even"):
        plan_change(even, AZS, managers, managers[0].host.instance_id)
