"""The scale-in scripts on a real swarm: tasks counts, evacuate moves a node's tasks start-first without a
dip in running replicas, activate puts the node back to work."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.hosts.swarm import Cloud, Swarm, form, wait_until

pytestmark = pytest.mark.slow
SERVICE = "web"
REPLICAS = 4


@pytest.fixture(scope="module")
def swarm(cloud: Cloud) -> Iterator[Swarm]:
    """1 manager and 2 workers: the smallest swarm with somewhere to move tasks to."""
    before = list(cloud.hosts)
    try:
        yield form(cloud, "evacuate", managers=1, workers=2)
    finally:
        for host in [h for h in cloud.hosts if h not in before]:
            cloud.destroy(host)


def test_evacuate_moves_the_tasks_without_a_dip_then_activate_undoes_the_pause(swarm: Swarm) -> None:
    manager = swarm.managers[0]
    swarm.service(SERVICE, REPLICAS)
    wait_until("all replicas running", lambda: sum(swarm.running_tasks(SERVICE).values()) == REPLICAS, 60)
    counted = swarm.ok(manager, "tasks")
    assert sum(n["tasks"] for n in counted["nodes"]) == REPLICAS
    assert [(s["name"], s["running"], s["desired"]) for s in counted["services"]] == [(SERVICE, REPLICAS, REPLICAS)]

    leaving = max(swarm.workers, key=lambda w: swarm.running_tasks(SERVICE).get(swarm.node_id(w), 0))
    node = swarm.node_id(leaving)
    assert swarm.running_tasks(SERVICE).get(node, 0) > 0
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(sum(swarm.running_tasks(SERVICE).values()))
            stop.wait(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert swarm.ok(manager, "evacuate", SW_NODES=node) == {"paused": [node], "updated": [SERVICE]}

        def moved() -> bool:
            result = swarm.ok(manager, "tasks", SW_NODES=node)
            (service,) = result["services"]
            return bool(result["nodes"] == [{"id": node, "tasks": 0}] and service["update"] == "completed")

        wait_until(f"{SERVICE} moved off {leaving.hostname}", moved, 120)
    finally:
        stop.set()
        sampler.join(timeout=10)
    assert min(samples) >= REPLICAS, samples
    assert swarm.nodes()[leaving.hostname]["availability"] == "pause"
    # Run again: nothing is left on the node, so nothing is updated.
    assert swarm.ok(manager, "evacuate", SW_NODES=node) == {"paused": [node], "updated": []}

    gone = "0000000000000000000000000"
    assert swarm.ok(manager, "activate", SW_NODES=f"{node} {gone}") == {"activated": [node], "absent": [gone]}
    assert swarm.nodes()[leaving.hostname]["availability"] == "active"
