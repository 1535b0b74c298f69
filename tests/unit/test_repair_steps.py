"""The repair workflow's steps on moto (DynamoDB, EC2), and the repair actions of the swarm and hosts
functions with fake hosts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from swarmwarden import aws
from swarmwarden.adapters.instances import Instances
from swarmwarden.adapters.operations import Operations, OperationStatus
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeState
from swarmwarden.domain.model import ClusterSpec, Host, NetworkRef, NodeStatus, Role, Subnet
from swarmwarden.domain.placement import Placement
from swarmwarden.errors import InsufficientCapacity, InvalidRequest, ScriptFailed, SwarmNotAsPlanned, SwarmSettling
from swarmwarden.steps import hosts, repair, swarm

SPEC = ClusterSpec(cluster_name="demo", ami_id="ami-0123456789abcdef0")
TABLE = "ClusterTable"  # the conftest fixture cluster_table
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
NETWORK = NetworkRef(
    vpc_id="vpc-1",
    security_group_id="sg-1",
    subnets=tuple(Subnet(subnet_id=f"subnet-{i}", az=az, cidr=f"10.42.{i * 32}.0/19") for i, az in enumerate(AZS)),
)


class World:
    """A recorded cluster of 3 managers and 2 workers whose instances run in moto's EC2."""

    def __init__(self) -> None:
        self.store = ClusterStore(aws.dynamodb(), TABLE)
        self.operations = Operations(aws.dynamodb(), TABLE)
        self.metrics: list[tuple[str, float, dict[str, str]]] = []
        self.adapters = repair.Adapters(
            store=self.store,
            operations=self.operations,
            instances=Instances(aws.ec2()),
            metrics=repair.Metrics("demo", lambda name, value, unit, dims: self.metrics.append((name, value, dims))),
            clock=lambda: datetime(2026, 11, 27, 6, 0, 42, tzinfo=UTC).timestamp(),
        )
        self.store.put_cluster(SPEC, ClusterStatus.READY, swarm_id="swarm-1")
        self.hosts: list[Host] = []
        for index, (role, slot) in enumerate(
            [(Role.MANAGER, f"manager-{i}") for i in range(3)] + [(Role.WORKER, f"worker-{i}") for i in range(2)]
        ):
            (made,) = aws.ec2().run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)["Instances"]
            self.hosts.append(
                Host(
                    instance_id=made["InstanceId"],
                    role=role,
                    slot=slot,
                    az=AZS[index % 3],
                    private_ip=f"10.42.0.{10 + index}",
                )
            )
        self.store.put_nodes("demo", self.hosts, [self.status(h) for h in self.hosts])

    @staticmethod
    def status(host: Host, *, ready: bool = True, leader: bool = False) -> NodeStatus:
        manager = host.role is Role.MANAGER
        return NodeStatus(
            id=f"node-{host.slot}",
            hostname=host.slot,
            addr=host.private_ip,
            role=host.role,
            status="ready" if ready else "down",
            availability="active",
            leader=leader,
            reachability=("reachable" if ready else "unreachable") if manager else None,
        )

    def kill(self, host: Host) -> None:
        aws.ec2().terminate_instances(InstanceIds=[host.instance_id])

    def failed(self, host: Host) -> repair.FailedNode:
        return repair.FailedNode(host=host, node_id=f"node-{host.slot}")

    def healthy(self, dead: list[Host]) -> swarm.HealthyManagerResult:
        nodes = [self.status(h, ready=h not in dead, leader=h is self.hosts[0]) for h in self.hosts]
        return swarm.HealthyManagerResult(manager=self.hosts[0], nodes=tuple(nodes), tried=())

    def guard(self, dead: list[Host], operation_id: str = "repair-1") -> repair.GuardResult:
        request = repair.Guard(
            action="guard",
            spec=SPEC,
            operation_id=operation_id,
            instance_id=dead[0].instance_id,
            healthy=self.healthy(dead),
            limits=repair.Limits(),
        )
        return repair.guard(request, self.adapters)

    def claim(self, host: Host, operation_id: str = "repair-1") -> repair.Claimed:
        repair._ensure_operation(self.adapters, "demo", operation_id, host.instance_id)  # the guard's part
        request = repair.Claim(
            action="claim", spec=SPEC, operation_id=operation_id, failed=self.failed(host), manager=self.hosts[0]
        )
        return repair.claim(request, self.adapters)


@pytest.fixture
def world(cluster_table: str) -> World:
    return World()


def test_classify_finds_the_failed_node_and_the_live_managers_to_ask(world: World) -> None:
    dead = world.hosts[1]
    world.kill(dead)
    result = repair.classify(
        repair.Classify(action="classify", spec=SPEC, instance_id=dead.instance_id), world.adapters
    )
    assert result.failed == repair.FailedNode(host=dead, node_id="node-manager-1")
    assert [h.slot for h in result.candidates] == ["manager-0", "manager-2"]
    with pytest.raises(InvalidRequest, match="no node record"):
        repair.classify(
            repair.Classify(action="classify", spec=SPEC, instance_id="i-0000000000000beef"), world.adapters
        )


def test_claim_says_whether_ec2_still_runs_the_failed_instance(world: World) -> None:
    # A dead daemon on a running instance (reconcile's case): only Swarm can say the node is down.
    assert not world.claim(world.hosts[4], "repair-running").instance_gone
    # Terminated: the node can never answer again, so it may be removed at once.
    world.kill(world.hosts[3])
    assert world.claim(world.hosts[3], "repair-terminated").instance_gone


def test_the_guard_lets_one_failure_through_and_counts_the_start_once(world: World) -> None:
    dead = world.hosts[4]
    world.kill(dead)
    result = world.guard([dead])
    assert (result.proceed, result.unhealthy, result.total) == (True, 1, 5)
    world.guard([dead])  # a retried step
    operation = world.operations.get("demo", "repair-1")
    assert operation is not None
    assert (operation.status, operation.request) == (OperationStatus.RUNNING, {"instance_id": dead.instance_id})
    assert [m[0] for m in world.metrics] == ["RepairsStarted"]
    assert world.store.repairs_paused("demo") is None


def test_the_guard_pauses_on_a_correlated_failure(world: World) -> None:
    dead = world.hosts[3:]
    for host in dead:
        world.kill(host)
    result = world.guard(dead)
    assert (result.proceed, result.unhealthy, result.total) == (False, 2, 5)
    assert world.store.repairs_paused("demo") == result.reason
    operation = world.operations.get("demo", "repair-1")
    assert operation is not None
    assert operation.status is OperationStatus.FAILED
    assert operation.error is not None
    assert "paused" in operation.error
    assert [m[0] for m in world.metrics] == ["RepairsStarted", "RepairPaused"]
    assert all(m[2] == {"cluster": "demo"} for m in world.metrics)


def test_claim_marks_the_node_failed_and_gives_concurrent_repairs_distinct_new_slots(world: World) -> None:
    first = world.claim(world.hosts[3], "repair-a")
    second = world.claim(world.hosts[4], "repair-b")
    assert first.placement == Placement(slot="worker-2", role=Role.WORKER, az=world.hosts[3].az)
    assert second.placement.slot == "worker-3"
    assert world.claim(world.hosts[3], "repair-a") == first, "a retried claim keeps its slot"
    assert first.swarm.model_dump() == {"swarm_id": "swarm-1", "manager_addr": world.hosts[0].private_ip}
    assert {world.store.node("demo", h.instance_id).state for h in world.hosts[3:]} == {NodeState.FAILED}  # type: ignore[union-attr]


def test_replan_moves_a_manager_to_the_az_that_keeps_managers_spread(world: World) -> None:
    dead = world.hosts[1]  # manager-1 in us-east-1b
    claimed = world.claim(dead)
    request = repair.Replan(action="replan", spec=SPEC, failed=world.failed(dead), claim=claimed, network=NETWORK)
    # a and c hold a manager each: both keep the spread; the tie goes to the first.
    moved = repair.replan(request, world.adapters)
    assert (moved.placement.az, moved.refused_azs) == ("us-east-1a", ("us-east-1b",))
    assert moved.swarm == claimed.swarm
    assert moved.placement.slot == claimed.placement.slot
    again = repair.replan(request.model_copy(update={"claim": moved}), world.adapters)
    assert (again.placement.az, again.refused_azs) == ("us-east-1c", ("us-east-1b", "us-east-1a"))
    with pytest.raises(InsufficientCapacity, match="refused us-east-1b, us-east-1a, us-east-1c"):
        repair.replan(request.model_copy(update={"claim": again}), world.adapters)


def test_record_swaps_the_node_records_and_counts_the_replacement(world: World) -> None:
    dead = world.hosts[4]
    world.guard([dead])
    claimed = world.claim(dead)
    added = Host(
        instance_id="i-0000000000000abcd",
        role=Role.WORKER,
        slot=claimed.placement.slot,
        az=dead.az,
        private_ip="10.42.0.99",
    )
    started = datetime(2026, 11, 27, 6, 0, 0, tzinfo=UTC)
    request = repair.Record(
        action="record",
        spec=SPEC,
        operation_id="repair-1",
        failed=world.failed(dead),
        added=added,
        nodes=(World.status(world.hosts[0], leader=True), World.status(added)),
        started_at=started,
    )
    result = repair.record(request, world.adapters)
    assert (result.replaced, result.by, result.duration_seconds) == (dead.instance_id, added.instance_id, 42.0)
    assert world.store.node("demo", dead.instance_id) is None
    new = world.store.node("demo", added.instance_id)
    assert new is not None
    assert (new.slot, new.node_id, new.state) == (claimed.placement.slot, f"node-{added.slot}", NodeState.ACTIVE)
    assert world.store.slot_claims("demo") == {}
    operation = world.operations.get("demo", "repair-1")
    assert operation is not None
    assert operation.status is OperationStatus.SUCCEEDED
    assert [(m[0], m[1], m[2]) for m in world.metrics[1:]] == [
        ("RepairsSucceeded", 1, {"cluster": "demo"}),
        ("NodesReplaced", 1, {"cluster": "demo", "role": "worker"}),
        ("RepairDuration", 42.0, {"cluster": "demo"}),
    ]
    assert started + timedelta(seconds=result.duration_seconds) == datetime(2026, 11, 27, 6, 0, 42, tzinfo=UTC)


def test_fail_records_the_message_releases_the_claim_and_counts(world: World) -> None:
    world.claim(world.hosts[4])
    cause = '{"errorMessage": "join refused", "errorType": "ScriptFailed", "stackTrace": []}'
    request = repair.Fail(
        action="fail",
        spec=SPEC,
        operation_id="repair-1",
        instance_id=world.hosts[4].instance_id,
        error="ScriptFailed",
        cause=cause,
    )
    assert repair.fail(request, world.adapters).recorded
    operation = world.operations.get("demo", "repair-1")
    assert operation is not None
    assert (operation.status, operation.error) == (OperationStatus.FAILED, "ScriptFailed: join refused")
    assert world.store.slot_claims("demo") == {}
    assert [m[0] for m in world.metrics] == ["RepairsStarted", "RepairsFailed"]


# ---------------------------------------------------------------- the swarm and hosts functions' repair actions


class Runner:
    """Answers `status` on the managers in `answering`; the others fail as a dead daemon would."""

    def __init__(self, answering: set[str], nodes: list[dict[str, Any]]) -> None:
        self.answering, self.nodes, self.asked = answering, nodes, []  # type: list[str]

    def run(self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int) -> dict[str, Any]:
        self.asked.append(instance_id)
        if instance_id not in self.answering:
            raise ScriptFailed("Cannot connect to the Docker daemon")
        return {"nodes": self.nodes}


def _swarm(runner: Runner) -> swarm.Adapters:
    return swarm.Adapters(
        runner=runner,
        tokens=None,
        region="us-east-1",
        token_prefix="/p",
        command_timeout_seconds=5,  # type: ignore[arg-type]
    )


MANAGERS = [
    Host(instance_id=f"i-{i:017x}", role=Role.MANAGER, slot=f"manager-{i}", az=AZS[i], private_ip=f"10.42.0.{i}")
    for i in range(3)
]
WORKER = Host(instance_id=f"i-{9:017x}", role=Role.WORKER, slot="worker-0", az=AZS[0], private_ip="10.42.0.9")


def test_healthy_manager_skips_managers_that_do_not_answer() -> None:
    nodes = [World.status(MANAGERS[2], leader=True).model_dump(mode="json")]
    runner = Runner({MANAGERS[2].instance_id}, nodes)
    request = swarm.HealthyManager(action="healthy_manager", spec=SPEC, candidates=tuple(MANAGERS[1:]))
    result = swarm.healthy_manager(request, _swarm(runner))
    assert result.manager == MANAGERS[2]
    assert len(result.nodes) == 1
    assert result.tried == (f"{MANAGERS[1].instance_id}: ScriptFailed: Cannot connect to the Docker daemon",)
    none = swarm.healthy_manager(request, _swarm(Runner(set(), nodes)))
    assert (none.manager, none.nodes, len(none.tried)) == (None, (), 2)


def test_healthy_manager_waits_while_the_managers_elect_a_leader() -> None:
    class Electing(Runner):
        def run(
            self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int
        ) -> dict[str, Any]:
            raise ScriptFailed("status: cannot list nodes: The swarm does not have a leader. It's possible that ...")

    request = swarm.HealthyManager(action="healthy_manager", spec=SPEC, candidates=tuple(MANAGERS[1:]))
    with pytest.raises(SwarmSettling, match="no leader yet"):
        swarm.healthy_manager(request, _swarm(Electing(set(), [])))


def test_healthy_manager_waits_until_the_new_leader_sees_a_quorum() -> None:
    # Right after an election the new leader reports the other live manager unreachable for a moment.
    settling = [
        World.status(MANAGERS[1], leader=True).model_dump(mode="json"),
        World.status(MANAGERS[2]).model_dump(mode="json") | {"reachability": "unreachable"},
        World.status(MANAGERS[0]).model_dump(mode="json") | {"status": "down", "reachability": "unreachable"},
    ]
    request = swarm.HealthyManager(action="healthy_manager", spec=SPEC, candidates=tuple(MANAGERS[1:]))
    with pytest.raises(SwarmSettling, match="1 of 3 managers healthy"):
        swarm.healthy_manager(request, _swarm(Runner({MANAGERS[1].instance_id}, settling)))
    settling[1]["reachability"] = "reachable"
    settling.append(World.status(MANAGERS[2]).model_dump(mode="json") | {"role": "worker", "status": "unknown"})
    with pytest.raises(SwarmSettling, match="does not know the state of"):
        swarm.healthy_manager(request, _swarm(Runner({MANAGERS[1].instance_id}, settling)))


def test_verify_replaced_raises_until_the_replacement_is_ready() -> None:
    added = MANAGERS[1]
    ready = [
        World.status(MANAGERS[0], leader=True).model_dump(mode="json"),
        World.status(added).model_dump(mode="json"),
    ]
    request = swarm.VerifyReplaced(
        action="verify_replaced", spec=SPEC, manager=MANAGERS[0], added=added, removed="node-old"
    )
    assert len(swarm.verify_replaced(request, _swarm(Runner({MANAGERS[0].instance_id}, ready))).nodes) == 2
    with pytest.raises(SwarmNotAsPlanned, match="0 ready nodes"):
        swarm.verify_replaced(request, _swarm(Runner({MANAGERS[0].instance_id}, ready[:1])))


def test_launch_slots_names_the_az_without_capacity() -> None:
    class NoCapacity:
        def launch(self, *args: Any) -> Any:
            raise ClientError({"Error": {"Code": "InsufficientInstanceCapacity", "Message": "none"}}, "RunInstances")

    placement = Placement(slot="worker-5", role=Role.WORKER, az="us-east-1b")
    request = hosts.LaunchSlots(
        action="launch_slots", spec=SPEC, network=NETWORK, run_id="repair-i-1", placements=(placement,)
    )
    with pytest.raises(InsufficientCapacity, match=r"no t3\.small capacity in us-east-1b"):
        hosts.launch_slots(request, NoCapacity())  # type: ignore[arg-type]


class Clock:
    """A fake clock that a fake sleep moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_healthy_manager_looks_again_while_a_live_node_shows_down_after_an_election() -> None:
    # After the leader died, a worker slow to reach the new leader shows down for a moment: counted as
    # failed, it would trip the guard's breaker (2 of 5 unhealthy) and pause repair for no outage.
    leader = World.status(MANAGERS[1], leader=True).model_dump(mode="json")
    dead = World.status(MANAGERS[0], ready=False).model_dump(mode="json")
    follower = World.status(MANAGERS[2]).model_dump(mode="json")
    worker = World.status(WORKER).model_dump(mode="json")
    views = [
        [leader, follower, dead, worker | {"status": "down"}],
        [leader, follower, dead, worker | {"status": "down"}],
        [leader, follower, dead, worker],
    ]

    class Settling(Runner):
        def run(
            self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int
        ) -> dict[str, Any]:
            self.asked.append(instance_id)
            return {"nodes": views[min(len(self.asked), len(views)) - 1]}

    clock = Clock()
    runner = Settling({MANAGERS[1].instance_id}, [])
    adapters = replace(_swarm(runner), clock=lambda: clock.now, sleep=clock.sleep)
    request = swarm.HealthyManager(
        action="healthy_manager", spec=SPEC, candidates=tuple(MANAGERS[1:]), failed_node_id=dead["id"]
    )
    result = swarm.healthy_manager(request, adapters)
    assert {n.hostname: n.status for n in result.nodes}[WORKER.slot] == "ready"
    assert clock.sleeps == [1.0, 1.0], "looked again every second until the view settled"


def test_healthy_manager_reports_a_node_still_down_after_the_settling_time() -> None:
    leader = World.status(MANAGERS[1], leader=True).model_dump(mode="json")
    dead = World.status(MANAGERS[0], ready=False).model_dump(mode="json")
    follower = World.status(MANAGERS[2]).model_dump(mode="json")
    down = World.status(WORKER, ready=False).model_dump(mode="json")
    clock = Clock()
    adapters = replace(
        _swarm(Runner({MANAGERS[1].instance_id}, [leader, follower, dead, down])),
        clock=lambda: clock.now,
        sleep=clock.sleep,
    )
    request = swarm.HealthyManager(
        action="healthy_manager", spec=SPEC, candidates=tuple(MANAGERS[1:]), failed_node_id=dead["id"]
    )
    result = swarm.healthy_manager(request, adapters)
    assert {n.hostname: n.status for n in result.nodes}[WORKER.slot] == "down", (
        "a real second failure: the guard judges"
    )
    assert swarm.SETTLE_DOWN_SECONDS <= clock.now <= swarm.SETTLE_DOWN_SECONDS + 1
