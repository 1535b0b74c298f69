"""Drain moves tasks off a node; rebalance spreads skewed services once a new node has joined."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.hosts.swarm import Swarm, wait_until

pytestmark = pytest.mark.slow

SERVICES = {"web": 6, "api": 5, "jobs": 5}


def _all_running(swarm: Swarm, name: str, avoid: str = "") -> Callable[[], bool]:
    """All replicas of `name` running, none of them on node `avoid`."""

    def probe() -> bool:
        tasks = swarm.running_tasks(name)
        return sum(tasks.values()) == SERVICES[name] and avoid not in tasks

    return probe


def _even(swarm: Swarm, name: str, nodes: set[str]) -> Callable[[], bool]:
    """All replicas of `name` running on `nodes`, at most one apart from node to node."""

    def probe() -> bool:
        tasks = swarm.running_tasks(name)
        spread = [tasks.get(node, 0) for node in nodes]
        return sum(spread) == SERVICES[name] and max(spread) - min(spread) <= 1

    return probe


def test_drain_then_rebalance_onto_a_new_node(swarm: Swarm) -> None:
    leader = swarm.managers[0]
    for name, replicas in SERVICES.items():
        swarm.service(name, replicas)
    for name in SERVICES:
        wait_until(f"all tasks of {name} running", _all_running(swarm, name), 60)

    drained = swarm.workers[0]
    drained_id = swarm.node_id(drained)
    assert swarm.ok(leader, "drain", SW_NODE=drained.hostname) == {"node": drained_id, "availability": "drain"}
    for name in SERVICES:
        wait_until(f"{name} moved off {drained.hostname}", _all_running(swarm, name, avoid=drained_id), 60)
    assert swarm.nodes()[drained.hostname]["availability"] == "drain"

    newcomer = swarm.cloud.new_host()
    swarm.join(newcomer, "worker")
    newcomer_id = swarm.node_id(newcomer)
    eligible = {n["id"] for n in swarm.nodes().values() if n["availability"] == "active"}
    # Swarm does not move running tasks by itself: the newcomer stays empty, every service is skewed.
    assert all(newcomer_id not in swarm.running_tasks(name) for name in SERVICES)

    result = swarm.ok(leader, "rebalance", SW_MAX_UPDATES="2")
    assert len(result["updated"]) == 2
    assert len(result["skipped"]) == 1
    assert set(result["updated"]) | set(result["skipped"]) == set(SERVICES)
    for name in result["updated"]:
        wait_until(f"{name} spread evenly over {len(eligible)} nodes", _even(swarm, name, eligible), 90)

    # The next run picks up the one left over; a balanced swarm then needs nothing.
    (leftover,) = result["skipped"]
    assert swarm.ok(leader, "rebalance", SW_MAX_UPDATES="2") == {"updated": [leftover], "skipped": []}
    wait_until(f"{leftover} spread evenly", _even(swarm, leftover, eligible), 90)
    assert swarm.ok(leader, "rebalance") == {"updated": [], "skipped": []}
