"""Property tests for the pure domain rules: AZ spread, manager counts, plans, verification."""

import ipaddress
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from swarmwarden.domain.model import ClusterSpec, Host, NodeStatus, Role
from swarmwarden.domain.placement import fault_tolerance, plan_placements, quorum, subnet_cidrs
from swarmwarden.domain.plan import UnsupportedChange, UpdateAction, classify_update, missing
from swarmwarden.domain.verify import mismatches

AMI = "ami-0123456789abcdef0"
az_names = st.lists(st.sampled_from([f"us-east-1{c}" for c in "abcdef"]), min_size=1, max_size=6, unique=True)
specs = st.builds(
    ClusterSpec,
    cluster_name=st.just("demo"),
    managers=st.sampled_from([1, 3, 5, 7]),
    workers=st.integers(0, 20),
    max_workers=st.just(20),
    ami_id=st.just(AMI),
    max_azs=st.integers(1, 6),
)


@given(specs, az_names)
def test_placements_match_the_counts_with_unique_slots(spec: ClusterSpec, azs: list[str]) -> None:
    placements = plan_placements(spec, azs)
    roles = Counter(p.role for p in placements)
    assert roles[Role.MANAGER] == spec.managers
    assert roles[Role.WORKER] == spec.workers
    assert len({p.slot for p in placements}) == len(placements)
    assert {p.az for p in placements} <= set(azs)


@given(specs, az_names)
def test_managers_use_distinct_azs_before_doubling_up(spec: ClusterSpec, azs: list[str]) -> None:
    usable = min(len(azs), spec.max_azs)
    per_az = Counter(p.az for p in plan_placements(spec, azs) if p.role is Role.MANAGER)
    assert len(per_az) == min(spec.managers, usable)
    assert max(per_az.values()) - min(per_az.values()) <= 1


@given(specs, az_names)
def test_the_whole_cluster_is_spread_evenly(spec: ClusterSpec, azs: list[str]) -> None:
    per_az = Counter(p.az for p in plan_placements(spec, azs))
    usable = min(len(azs), spec.max_azs)
    counts = [per_az.get(az, 0) for az in sorted(azs)[:usable]]
    assert max(counts) - min(counts) <= 1


def test_three_managers_land_in_three_azs_and_five_spread_two_two_one() -> None:
    three = plan_placements(ClusterSpec(cluster_name="demo", managers=3, workers=0, ami_id=AMI), ["a", "b", "c"])
    assert sorted(p.az for p in three) == ["a", "b", "c"]
    five = plan_placements(ClusterSpec(cluster_name="demo", managers=5, workers=0, ami_id=AMI), ["a", "b", "c"])
    assert sorted(Counter(p.az for p in five).values()) == [1, 2, 2]


@given(st.sampled_from([1, 3, 5, 7]))
def test_quorum_survives_exactly_the_tolerated_losses(managers: int) -> None:
    tolerated = fault_tolerance(managers)
    assert managers - tolerated >= quorum(managers)
    assert managers - (tolerated + 1) < quorum(managers)
    assert tolerated == {1: 0, 3: 1, 5: 2, 7: 3}[managers]


@pytest.mark.parametrize("managers", [0, 2, 4, 6, 8])
def test_even_or_out_of_range_manager_counts_are_refused(managers: int) -> None:
    with pytest.raises(ValidationError, match="managers"):
        ClusterSpec(cluster_name="demo", managers=managers, ami_id=AMI)  # type: ignore[arg-type]


def test_overlay_pool_inside_the_vpc_is_refused() -> None:
    with pytest.raises(ValidationError, match="overlaps vpc_cidr"):
        ClusterSpec(cluster_name="demo", ami_id=AMI, vpc_cidr="10.0.0.0/16", address_pool="10.0.0.0/8")  # type: ignore[arg-type]


def test_workers_above_max_workers_are_refused() -> None:
    with pytest.raises(ValidationError, match="exceeds max_workers"):
        ClusterSpec(cluster_name="demo", ami_id=AMI, workers=5, max_workers=4)


@given(st.integers(8, 24), st.integers(1, 8))
def test_subnets_are_disjoint_and_inside_the_vpc(prefix: int, count: int) -> None:
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    subnets = subnet_cidrs(vpc, count)
    assert len(subnets) == count
    assert all(s.subnet_of(vpc) for s in subnets)
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])


@given(specs)
def test_an_unchanged_spec_needs_nothing(spec: ClusterSpec) -> None:
    assert classify_update(spec, spec) is UpdateAction.NOTHING


@given(specs, st.integers(0, 20), st.sampled_from([1, 3, 5, 7]))
def test_new_counts_either_way_scale(spec: ClusterSpec, workers: int, managers: int) -> None:
    changed = spec.model_copy(update={"workers": workers, "managers": managers})
    if (managers, workers) == (spec.managers, spec.workers):
        return
    assert classify_update(spec, changed) is UpdateAction.SCALE


@given(specs)
def test_a_new_instance_type_alone_reprovisions(spec: ClusterSpec) -> None:
    assert classify_update(spec, spec.model_copy(update={"instance_type": "t3.large"})) is UpdateAction.PROVISION


def test_changing_the_network_is_refused() -> None:
    spec = ClusterSpec(cluster_name="demo", ami_id=AMI)
    with pytest.raises(UnsupportedChange, match="vpc_cidr cannot change"):
        classify_update(spec, spec.model_copy(update={"vpc_cidr": ipaddress.IPv4Network("10.9.0.0/16")}))


@given(specs, az_names, st.data())
def test_missing_returns_exactly_the_slots_without_instances(spec: ClusterSpec, azs: list[str], data) -> None:
    planned = plan_placements(spec, azs)
    existing = data.draw(st.sets(st.sampled_from([p.slot for p in planned]))) if planned else set()
    result = missing(planned, existing)
    assert {p.slot for p in result} == {p.slot for p in planned} - existing
    assert result == [p for p in planned if p.slot not in existing]


def _cluster(managers: int, workers: int) -> tuple[list[Host], list[NodeStatus]]:
    hosts, nodes = [], []
    for index in range(managers + workers):
        role = Role.MANAGER if index < managers else Role.WORKER
        ip = f"10.42.0.{10 + index}"
        hosts.append(Host(instance_id=f"i-{index:04x}", role=role, slot=f"{role.value}-{index}", az="a", private_ip=ip))
        nodes.append(
            NodeStatus(
                id=f"n{index}",
                hostname=f"h{index}",
                addr=ip,
                role=role,
                status="ready",
                availability="active",
                leader=index == 0,
                reachability="reachable" if role is Role.MANAGER else "",
            )
        )
    return hosts, nodes


@given(st.sampled_from([1, 3, 5, 7]), st.integers(0, 10))
def test_a_swarm_that_matches_the_plan_has_no_mismatches(managers: int, workers: int) -> None:
    hosts, nodes = _cluster(managers, workers)
    assert mismatches(hosts, nodes) == []


@given(st.sampled_from([1, 3, 5, 7]), st.integers(0, 10), st.data())
def test_a_missing_or_down_node_is_named(managers: int, workers: int, data) -> None:
    hosts, nodes = _cluster(managers, workers)
    victim = data.draw(st.integers(0, len(nodes) - 1))
    down = nodes[victim].model_copy(update={"status": "down", "leader": False})
    nodes = [*nodes[:victim], down, *nodes[victim + 1 :]]
    problems = mismatches(hosts, nodes)
    assert any(hosts[victim].instance_id in p and "down" in p for p in problems)


def test_a_worker_where_a_manager_was_planned_and_a_stranger_are_both_reported() -> None:
    hosts, nodes = _cluster(3, 1)
    nodes[1] = nodes[1].model_copy(update={"role": Role.WORKER, "reachability": ""})
    stranger = nodes[3].model_copy(update={"addr": "10.42.9.9", "hostname": "stranger"})
    problems = mismatches(hosts, [*nodes, stranger])
    assert any("is a worker, planned manager" in p for p in problems)
    assert any("stranger" in p and "not in the plan" in p for p in problems)
