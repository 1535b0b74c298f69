"""The scale workflow's own steps against a moto table and simulated hosts (a fake Run Command runner)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeState
from swarmwarden.domain.model import ClusterSpec, Host, NetworkRef, Role
from swarmwarden.errors import InvalidRequest, ScriptFailed
from swarmwarden.steps import scale, swarm

AMI = "ami-0123456789abcdef0"
CLUSTER = "demo"
NETWORK = NetworkRef.model_validate(
    {
        "vpc_id": "vpc-1",
        "security_group_id": "sg-1",
        "subnets": [
            {"subnet_id": f"subnet-{az}", "az": f"us-east-1{az}", "cidr": f"10.42.{i * 32}.0/19"}
            for i, az in enumerate("abc")
        ],
    }
)


def host(role: Role, index: int) -> Host:
    number = index if role is Role.MANAGER else 10 + index
    return Host(
        instance_id=f"i-{number:017x}",
        role=role,
        slot=f"{role.value}-{index}",
        az=f"us-east-1{'abc'[index % 3]}",
        private_ip=f"10.42.0.{number + 10}",
    )


MANAGER = host(Role.MANAGER, 0)
WORKERS = [host(Role.WORKER, i) for i in range(5)]


@dataclass
class Hosts:
    """What the scripts print: the swarm as `status` sees it, tasks per node, services."""

    tasks: dict[str, int] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def run(self, instance_id: str, script: str, parameters: dict[str, str], timeout_seconds: int) -> dict[str, Any]:
        self.calls.append((instance_id, script, parameters))
        if instance_id in self.failing:
            raise ScriptFailed(f"{script} on {instance_id} failed")
        match script:
            case "status":
                return {"swarm_id": "swarm-1", "nodes": [self.node(h) for h in [MANAGER, *WORKERS]]}
            case "tasks":
                wanted = parameters["SW_NODES"].split() or [f"node-{h.slot}" for h in [MANAGER, *WORKERS]]
                return {
                    "nodes": [{"id": n, "tasks": self.tasks.get(n, 0)} for n in wanted],
                    "services": self.services,
                }
            case "evacuate":
                return {"paused": parameters["SW_NODES"].split(), "updated": ["web"]}
            case "activate":
                nodes = parameters["SW_NODES"].split()
                return {"activated": [n for n in nodes if n not in self.removed], "absent": sorted(self.removed)}
        raise AssertionError(script)

    def node(self, h: Host) -> dict[str, Any]:
        return {
            "id": f"node-{h.slot}",
            "hostname": h.slot,
            "addr": h.private_ip,
            "role": h.role.value,
            "status": "down" if h.slot in self.down else "ready",
            "availability": "active",
            "leader": h is MANAGER,
            "reachability": "reachable" if h.role is Role.MANAGER else None,
        }


@pytest.fixture
def store(cluster_table: str) -> ClusterStore:
    store = ClusterStore(boto3.client("dynamodb"), cluster_table)
    store.put_cluster(spec(1, 5), ClusterStatus.READY, swarm_id="swarm-1")
    everyone = [MANAGER, *WORKERS]
    store.put_nodes(CLUSTER, everyone, [])
    return store


def spec(managers: int, workers: int) -> ClusterSpec:
    return ClusterSpec(cluster_name=CLUSTER, managers=managers, workers=workers, ami_id=AMI)  # type: ignore[arg-type]


def adapters(store: ClusterStore, hosts: Hosts) -> scale.Adapters:
    return scale.Adapters(
        store=store,
        swarm=swarm.Adapters(
            runner=hosts,
            tokens=None,  # type: ignore[arg-type]  # never touched by the scale steps
            region="us-east-1",
            token_prefix="/swarmwarden/demo/tokens",
            command_timeout_seconds=60,
        ),
    )


def plan(store: ClusterStore, hosts: Hosts, managers: int, workers: int) -> scale.ScalePlan:
    request = scale.Plan(action="plan", spec=spec(managers, workers), network=NETWORK)
    return scale.plan(request, adapters(store, hosts))


def test_scale_in_chooses_the_idle_workers_and_keeps_the_rest(store: ClusterStore) -> None:
    hosts = Hosts(tasks={"node-worker-0": 2, "node-worker-1": 0, "node-worker-2": 1, "node-worker-3": 0})
    result = plan(store, hosts, 1, 2)
    # worker-4 and worker-3 run nothing (the newest first), then worker-1: the fewest tasks.
    assert [r.host.slot for r in result.retirees] == ["worker-4", "worker-3", "worker-1"]
    assert [r.node_id for r in result.retirees] == ["node-worker-4", "node-worker-3", "node-worker-1"]
    assert result.retiring_ids == tuple(r.host.instance_id for r in result.retirees)
    assert (result.adds, result.removes) == (0, 3)
    assert result.keep.seed == MANAGER
    assert [h.slot for h in result.keep.workers] == ["worker-0", "worker-2"]
    assert result.manager == MANAGER
    assert result.swarm.model_dump() == {"swarm_id": "swarm-1", "manager_addr": MANAGER.private_ip}
    assert result.summary == "1+5 -> 1+2: add none; remove worker-4, worker-3, worker-1"


def test_scale_out_fills_free_slots_and_skips_those_still_recorded(store: ClusterStore) -> None:
    store.set_node_state(CLUSTER, WORKERS[4].instance_id, NodeState.RETIRING)
    result = plan(store, Hosts(), 1, 7)
    # worker-4 is on its way out: not a member, but its slot stays taken.
    assert [p.slot for p in result.added] == ["worker-5", "worker-6", "worker-7"]
    assert result.removes == 0
    assert [h.slot for h in result.keep.workers] == ["worker-0", "worker-1", "worker-2", "worker-3"]


def test_the_next_manager_answers_when_one_does_not_and_unknown_records_are_refused(store: ClusterStore) -> None:
    second = host(Role.MANAGER, 1)
    store.put_nodes(CLUSTER, [second], [])
    hosts = Hosts(failing={MANAGER.instance_id})
    with pytest.raises(InvalidRequest, match="manager-1 are not in the swarm"):
        plan(store, hosts, 1, 5)
    assert [c[:2] for c in hosts.calls] == [(MANAGER.instance_id, "status"), (second.instance_id, "status")]


def test_no_recorded_swarm_is_refused(store: ClusterStore) -> None:
    boto3.client("dynamodb").delete_item(
        TableName="ClusterTable", Key={"pk": {"S": f"CLUSTER#{CLUSTER}"}, "sk": {"S": "SPEC"}}
    )
    with pytest.raises(InvalidRequest, match="no recorded swarm"):
        plan(store, Hosts(), 1, 2)


def test_a_down_worker_leaves_first(store: ClusterStore) -> None:
    hosts = Hosts(down={"worker-0"}, tasks={"node-worker-0": 3})
    result = plan(store, hosts, 1, 4)
    assert [r.host.slot for r in result.retirees] == ["worker-0"]


def test_retire_and_forget_move_the_records(store: ClusterStore) -> None:
    retirees = (scale.Retiree(host=WORKERS[3], node_id="node-worker-3"),)
    marked = scale.run(scale.Retire(action="retire", spec=spec(1, 4), retirees=retirees), adapters(store, Hosts()))
    assert marked == scale.Marked(marked=(WORKERS[3].instance_id,))
    record = store.node(CLUSTER, WORKERS[3].instance_id)
    assert record is not None
    assert record.state is NodeState.RETIRING
    scale.run(scale.Forget(action="forget", spec=spec(1, 4), retirees=retirees), adapters(store, Hosts()))
    assert store.node(CLUSTER, WORKERS[3].instance_id) is None


@pytest.mark.parametrize(
    ("tasks", "services", "done", "summary"),
    [
        ({}, [{"name": "web", "running": 4, "desired": 4, "update": "completed"}], True, "tasks moved"),
        ({"node-worker-4": 1}, [], False, "node-worker-4 runs 1"),
        ({}, [{"name": "web", "running": 3, "desired": 4, "update": "none"}], False, "web 3/4"),
        ({}, [{"name": "web", "running": 4, "desired": 4, "update": "updating"}], False, "web 4/4 (updating)"),
    ],
)
def test_drained_means_nothing_left_there_and_every_service_whole(
    store: ClusterStore, tasks: dict[str, int], services: list[dict[str, Any]], done: bool, summary: str
) -> None:
    hosts = Hosts(tasks=tasks, services=services)
    request = scale.CheckDrained(
        action="check_drained",
        spec=spec(1, 4),
        manager=MANAGER,
        retirees=(scale.Retiree(host=WORKERS[4], node_id="node-worker-4"),),
        attempt=2,
        max_attempts=3,
    )
    result = scale.check_drained(request, adapters(store, hosts))
    assert (result.done, result.exhausted, result.attempt, result.summary) == (done, not done, 3, summary)
    assert hosts.calls[0][2]["SW_NODES"] == "node-worker-4"


def test_evacuate_names_the_leaving_nodes(store: ClusterStore) -> None:
    hosts = Hosts()
    retirees = tuple(scale.Retiree(host=h, node_id=f"node-{h.slot}") for h in WORKERS[3:])
    request = scale.Evacuate(action="evacuate", spec=spec(1, 3), manager=MANAGER, retirees=retirees)
    result = scale.run(request, adapters(store, hosts))
    assert result == scale.Evacuation(paused=("node-worker-3", "node-worker-4"), updated=("web",))
    assert hosts.calls == [
        (
            MANAGER.instance_id,
            "evacuate",
            {
                "SW_CLUSTER": CLUSTER,
                "SW_REGION": "us-east-1",
                "SW_TOKEN_PREFIX": "/swarmwarden/demo/tokens",
                "SW_NODES": "node-worker-3 node-worker-4",
            },
        )
    ]


def test_restore_puts_the_nodes_still_in_the_swarm_back_to_work(store: ClusterStore) -> None:
    retirees = tuple(scale.Retiree(host=h, node_id=f"node-{h.slot}") for h in WORKERS[3:])
    request = scale.Retire(action="retire", spec=spec(1, 3), retirees=retirees)
    scale.run(request, adapters(store, Hosts()))
    hosts = Hosts(removed={"node-worker-4"})
    restore = scale.Restore(action="restore", spec=spec(1, 3), manager=MANAGER, retirees=retirees)
    result = scale.run(restore, adapters(store, hosts))
    assert result == scale.Restored(activated=("node-worker-3",), absent=("node-worker-4",))
    states = {r.slot: r.state for r in store.nodes(CLUSTER)}
    assert (states["worker-3"], states["worker-4"]) == (NodeState.ACTIVE, NodeState.RETIRING)
