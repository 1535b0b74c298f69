"""Does the swarm match the plan? Pure comparison of planned hosts against `docker node ls`."""

from collections import Counter
from collections.abc import Sequence

from swarmwarden.domain.model import Host, NodeStatus, Role


def mismatches(planned: Sequence[Host], nodes: Sequence[NodeStatus]) -> list[str]:
    """Every way the swarm differs from the plan, as sentences; empty when it matches.

    A planned host must be exactly one Ready node at its private IP with its role; managers must be
    reachable with exactly one leader; a node the plan does not know is a leftover.
    """
    problems: list[str] = []
    by_addr: dict[str, list[NodeStatus]] = {}
    for node in nodes:
        by_addr.setdefault(node.addr, []).append(node)

    for host in planned:
        found = by_addr.get(host.private_ip, [])
        live = [n for n in found if n.status == "ready"]
        if not live:
            states = ", ".join(sorted(n.status for n in found)) or "absent"
            problems.append(f"{host.instance_id} ({host.slot}, {host.private_ip}) is not a ready node: {states}")
            continue
        if len(live) > 1:
            problems.append(f"{host.instance_id} ({host.private_ip}) appears as {len(live)} ready nodes")
        node = live[0]
        if node.role is not host.role:
            problems.append(f"{host.instance_id} ({host.slot}) is a {node.role.value}, planned {host.role.value}")
        elif host.role is Role.MANAGER and node.reachability != "reachable":
            problems.append(f"manager {host.instance_id} ({host.slot}) is {node.reachability or 'unreachable'}")

    planned_addrs = {h.private_ip for h in planned}
    problems.extend(f"node {n.hostname} ({n.addr}) is not in the plan" for n in nodes if n.addr not in planned_addrs)
    leaders = Counter(n.leader for n in nodes if n.role is Role.MANAGER)[True]
    if leaders != 1:
        problems.append(f"the swarm has {leaders} leaders, not 1")
    return problems
