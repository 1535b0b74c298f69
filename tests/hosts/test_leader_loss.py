"""The sequence that killed Docker for AWS clusters: a dead manager replaced but never removed.

Here the dead leader is removed before its replacement joins, so Raft stays at three members
and the swarm survives the loss of a second manager.
"""

from __future__ import annotations

from typing import Any

import pytest

from localcloud.hosts import Host
from tests.hosts.swarm import Swarm, wait_until

pytestmark = pytest.mark.slow


def _leader(swarm: Swarm, via: Host) -> dict[str, Any] | None:
    """The leader as `via` sees it, once `via` can answer at all (it cannot without a leader)."""
    result = swarm.run(via, "status")
    if not result.ok or result.output is None:
        return None
    leaders = [n for n in result.output["nodes"] if n["leader"]]
    return leaders[0] if leaders else None


def _raft_members(swarm: Swarm, via: Host) -> int:
    return int(via.docker("info", "--format", "{{.Swarm.Managers}}").stdout)


def test_losing_the_leader_then_another_manager_keeps_quorum(swarm: Swarm) -> None:
    old = _leader(swarm, swarm.managers[0])
    assert old is not None
    dead = next(h for h in swarm.managers if h.hostname == old["hostname"])
    survivors = [h for h in swarm.managers if h is not dead]

    # 1. Kill the leader: the two survivors elect a new one.
    dead.kill()
    swarm.remove(dead)
    new = wait_until(
        "a new leader among the surviving managers",
        lambda: (leader := _leader(swarm, survivors[0])) and leader["id"] != old["id"] and leader,
        90,
    )
    assert new["hostname"] in {h.hostname for h in survivors}
    wait_until(f"{dead.hostname} shown down", lambda: swarm.nodes(survivors[0])[dead.hostname]["status"] == "down", 60)

    # 2. Remove it on a live manager: Raft shrinks to 2 members.
    removed = swarm.ok(survivors[0], "remove-dead-node", SW_NODE=old["id"])
    assert removed == {"removed": True, "node": old["id"], "was_manager": True}
    assert _raft_members(swarm, survivors[0]) == 2

    # 3. A replacement joins as a manager: 3 members, not 4.
    replacement = swarm.cloud.new_host()
    assert swarm.join(replacement, "manager", via=survivors[0])["joined"] is True
    assert _raft_members(swarm, survivors[0]) == 3
    managers = [n for n in swarm.nodes(survivors[0]).values() if n["role"] == "manager"]
    assert len(managers) == 3
    assert all(n["reachability"] == "reachable" for n in managers)

    # 4. Kill a second manager, the current leader: 2 of 3 remain, quorum holds.
    second = next(h for h in swarm.managers if h.hostname == new["hostname"])
    second.kill()
    swarm.remove(second)
    remaining = [h for h in swarm.managers if h is not second]
    wait_until(
        "a leader among the two remaining managers",
        lambda: (leader := _leader(swarm, remaining[0])) and leader["id"] != new["id"] and leader,
        90,
    )
    # Quorum means writes commit: a service can still be created and runs.
    swarm.service("after-two-losses", replicas=2, via=remaining[0])
    wait_until(
        "2 running tasks of after-two-losses",
        lambda: sum(swarm.running_tasks("after-two-losses", via=remaining[1]).values()) == 2,
        60,
    )
