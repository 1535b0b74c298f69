"""Repair's pure rules, property-tested: the quorum guard, the circuit breaker, slots and AZs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from swarmwarden.domain import repair as rules
from swarmwarden.domain.model import Host, NodeStatus, Role
from swarmwarden.domain.placement import quorum

AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def status(index: int, role: Role, *, ready: bool = True, leader: bool = False) -> NodeStatus:
    return NodeStatus(
        id=f"n{index}",
        hostname=f"h{index}",
        addr=f"10.0.0.{index}",
        role=role,
        status="ready" if ready else "down",
        availability="active",
        leader=leader,
        reachability=("reachable" if ready else "unreachable") if role is Role.MANAGER else None,
    )


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[rules.Member], list[NodeStatus]]:
    """A cluster of 1-7 managers and 0-20 workers, each node healthy or not (instance or swarm side)."""
    managers = draw(st.sampled_from([1, 3, 5, 7]))
    workers = draw(st.integers(0, 20))
    members, nodes = [], []
    for index in range(managers + workers):
        role = Role.MANAGER if index < managers else Role.WORKER
        instance_state = draw(st.sampled_from(["running", "running", "running", "terminated", "stopped", None]))
        ready = instance_state == "running" and draw(st.booleans() | st.just(True))
        members.append(rules.Member(f"i-{index:08x}", role, f"n{index}", instance_state))
        nodes.append(status(index, role, ready=ready, leader=index == 0 and ready))
    return members, nodes


@given(clusters(), st.integers(1, 100))
def test_never_proceeds_without_a_manager_quorum(cluster: tuple[list[rules.Member], list[NodeStatus]], x: int) -> None:
    members, nodes = cluster
    verdict = rules.judge(members, nodes, have_manager=True, threshold_percent=x)
    healthy, counted = rules.healthy_manager_count(nodes)
    if verdict.proceed:
        assert healthy >= quorum(counted)
        # Removing one dead manager still leaves a majority of what remains.
        assert healthy >= quorum(counted - 1) or counted == 1


@given(clusters(), st.integers(1, 100))
def test_never_proceeds_when_more_than_x_percent_and_more_than_one_node_are_unhealthy(
    cluster: tuple[list[rules.Member], list[NodeStatus]], x: int
) -> None:
    members, nodes = cluster
    verdict = rules.judge(members, nodes, have_manager=True, threshold_percent=x)
    if verdict.unhealthy > 1 and verdict.unhealthy * 100 > x * verdict.total:
        assert not verdict.proceed
    assert verdict.unhealthy == len(rules.unhealthy_members(members, nodes))


@given(st.sampled_from([1, 3, 5, 7]), st.integers(0, 20), st.integers(1, 100), st.data())
def test_a_single_failure_with_quorum_is_always_repaired(
    managers: int, workers: int, x: int, data: st.DataObject
) -> None:
    total = managers + workers
    assume(total > 1)  # the lone manager of a 1-node cluster is the runbook case
    dead = data.draw(st.integers(1 if managers == 1 else 0, total - 1))
    members = [
        rules.Member(
            f"i-{i}", Role.MANAGER if i < managers else Role.WORKER, f"n{i}", "terminated" if i == dead else "running"
        )
        for i in range(total)
    ]
    nodes = [status(i, m.role, ready=i != dead, leader=i == (1 if dead == 0 else 0)) for i, m in enumerate(members)]
    verdict = rules.judge(members, nodes, have_manager=True, threshold_percent=x)
    assert verdict.proceed, verdict.reason
    assert (verdict.unhealthy, verdict.total) == (1, total)


def test_no_manager_answering_pauses() -> None:
    members = [rules.Member("i-1", Role.MANAGER, "n1", "terminated")]
    verdict = rules.judge(members, [], have_manager=False, threshold_percent=30)
    assert not verdict.proceed
    assert "--force-new-cluster" in verdict.reason


def test_two_of_three_managers_dead_is_the_runbook_case() -> None:
    nodes = [
        status(0, Role.MANAGER, leader=False),
        status(1, Role.MANAGER, ready=False),
        status(2, Role.MANAGER, ready=False),
    ]
    members = [rules.Member(f"i-{i}", Role.MANAGER, f"n{i}", "running" if i == 0 else "terminated") for i in range(3)]
    verdict = rules.judge(members, nodes, have_manager=True, threshold_percent=100)
    assert not verdict.proceed
    assert "below quorum 2" in verdict.reason


def test_the_default_breaker_on_the_default_cluster() -> None:
    """3 managers + 2 workers, X = 30: one node down is repaired, two at once pause."""

    def verdict(dead: set[int]) -> rules.Verdict:
        roles = [Role.MANAGER] * 3 + [Role.WORKER] * 2
        members = [
            rules.Member(f"i-{i}", r, f"n{i}", "terminated" if i in dead else "running") for i, r in enumerate(roles)
        ]
        nodes = [status(i, r, ready=i not in dead, leader=i == 0) for i, r in enumerate(roles)]
        return rules.judge(members, nodes, have_manager=True, threshold_percent=30)

    assert verdict({4}).proceed
    assert verdict({1}).proceed
    assert not verdict({3, 4}).proceed


@given(st.sampled_from(list(Role)), st.lists(st.from_regex(r"(manager|worker)-[0-9]{1,3}|other", fullmatch=True)))
def test_next_slot_is_new_and_beyond_every_index_of_its_role(role: Role, taken: list[str]) -> None:
    slot = rules.next_slot(role, taken)
    assert slot not in taken
    prefix, index = slot.rsplit("-", 1)
    assert prefix == role.value
    assert all(int(s.rsplit("-", 1)[1]) < int(index) for s in taken if s.startswith(f"{role.value}-"))


@given(
    st.sampled_from(AZS),
    st.sets(st.sampled_from(AZS)),
    st.fixed_dictionaries({az: st.integers(0, 5) for az in AZS}),
)
def test_the_replacement_stays_in_its_az_else_goes_where_its_role_is_thinnest(
    preferred: str, refused: set[str], placed: dict[str, int]
) -> None:
    az = rules.choose_az(preferred, AZS, refused, placed)
    usable = [a for a in AZS if a not in refused]
    if not usable:
        assert az is None
        return
    assert az in usable
    if preferred in usable:
        assert az == preferred
    else:
        # The fewest of the role: adding there keeps the usable AZs' spread as even as it can be.
        assert placed[az] == min(placed[a] for a in usable)


def test_managers_move_to_the_az_without_one() -> None:
    # manager-1 died in b, b has no capacity: a has one manager, c none; c keeps them spread 1-0-1.
    assert rules.choose_az("us-east-1b", AZS, ["us-east-1b"], {"us-east-1a": 1, "us-east-1c": 0}) == "us-east-1c"


def test_a_finished_repair_has_the_replacement_ready_and_the_dead_node_gone() -> None:
    added = Host(instance_id="i-9", role=Role.MANAGER, slot="manager-3", az="us-east-1b", private_ip="10.0.0.9")
    leader = status(0, Role.MANAGER, leader=True)
    new = status(9, Role.MANAGER)
    assert rules.replacement_problems(added, "n1", [leader, new]) == []
    assert rules.replacement_problems(added, "", [leader, new]) == []
    problems = rules.replacement_problems(added, "n1", [leader, status(1, Role.MANAGER, ready=False)])
    assert problems == ["i-9 (10.0.0.9) is 0 ready nodes, not 1", "the dead node n1 is still listed"]
    as_worker = new.model_copy(update={"role": Role.WORKER, "reachability": None})
    assert rules.replacement_problems(added, "n1", [leader, as_worker]) == ["i-9 is a worker, not a manager"]
    unreachable = new.model_copy(update={"reachability": "unreachable"})
    assert rules.replacement_problems(added, "n1", [leader, unreachable]) == ["manager i-9 is unreachable"]


def test_execution_names_are_per_instance() -> None:
    assert rules.execution_name("i-0a1b2c3d4e5f67890") == "repair-i-0a1b2c3d4e5f67890"


@pytest.mark.parametrize(
    ("state", "gone"),
    [
        ("pending", False),
        ("running", False),
        ("stopping", True),
        ("stopped", True),
        ("shutting-down", True),
        ("terminated", True),
        (None, True),  # EC2 no longer shows it
    ],
)
def test_only_an_instance_ec2_calls_gone_is_removed_without_waiting_for_swarm(state: str | None, gone: bool) -> None:
    assert rules.instance_gone(state) is gone
