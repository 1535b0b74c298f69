"""A worker dies: it shows Down, is removed, is replaced, and its tasks land on live nodes."""

from __future__ import annotations

import pytest

from tests.hosts.swarm import Swarm, wait_until

pytestmark = pytest.mark.slow


def test_a_killed_worker_is_removed_replaced_and_its_tasks_move(swarm: Swarm) -> None:
    swarm.service("web", replicas=5)
    wait_until("5 running tasks of web", lambda: sum(swarm.running_tasks("web").values()) == 5, 60)
    dead = swarm.workers[0]
    dead_id = swarm.node_id(dead)

    dead.kill()
    swarm.remove(dead)
    wait_until(f"{dead.hostname} shown down", lambda: swarm.nodes()[dead.hostname]["status"] == "down", 60)

    removed = swarm.ok(swarm.managers[1], "remove-dead-node", SW_NODE=dead.hostname)
    assert removed == {"removed": True, "node": dead_id, "was_manager": False}
    assert dead.hostname not in swarm.nodes()

    replacement = swarm.cloud.new_host()
    assert swarm.join(replacement, "worker")["joined"] is True
    nodes = swarm.nodes()
    assert nodes[replacement.hostname]["status"] == "ready"
    assert len(nodes) == 5

    live = {n["id"] for n in nodes.values()}

    def converged() -> dict[str, int] | None:
        tasks = swarm.running_tasks("web")
        return tasks if sum(tasks.values()) == 5 and set(tasks) <= live else None

    wait_until("5 running tasks of web, all on live nodes", converged, 60)
