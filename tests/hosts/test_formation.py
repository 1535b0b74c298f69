"""Forming a swarm with the host scripts, running each of them twice, and handling the join tokens."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from swarmwarden.commands import TOKEN_MARKER

from localcloud.hosts import Host
from localcloud.image import IMAGE
from localcloud.runscript import run_script
from tests.hosts.swarm import ADDR_POOL, Swarm, wait_until

pytestmark = pytest.mark.slow


def test_init_and_joins_form_the_swarm(swarm: Swarm) -> None:
    for via in swarm.managers:
        status = swarm.status(via)
        assert status["swarm_id"] == swarm.swarm_id
        nodes = {n["hostname"]: n for n in status["nodes"]}
        assert set(nodes) == {h.hostname for h in swarm.hosts}
        for host in swarm.hosts:
            node = nodes[host.hostname]
            assert (node["addr"], node["status"], node["availability"]) == (str(host.ip), "ready", "active")
            assert node["role"] == ("manager" if host in swarm.managers else "worker")
        managers = [n for n in nodes.values() if n["role"] == "manager"]
        assert all(n["reachability"] == "reachable" for n in managers)
        assert sum(n["leader"] for n in managers) == 1
        assert not any(n["leader"] or n["reachability"] for n in nodes.values() if n["role"] == "worker")


def test_tokens_are_secure_strings_equal_to_the_live_ones(swarm: Swarm) -> None:
    ssm = swarm.cloud.ssm()
    for role in ("worker", "manager"):
        parameter = ssm.get_parameter(Name=f"{swarm.token_prefix}/{role}", WithDecryption=True)["Parameter"]
        assert parameter["Type"] == "SecureString"
        live = swarm.managers[0].docker("swarm", "join-token", "-q", role).stdout.strip()
        assert parameter["Value"] == live
        assert live.startswith(TOKEN_MARKER)


def test_init_again_restores_a_missing_token_parameter(swarm: Swarm) -> None:
    ssm = swarm.cloud.ssm()
    name = f"{swarm.token_prefix}/worker"
    ssm.delete_parameter(Name=name)
    seed = swarm.managers[0]
    out = swarm.init(seed)
    assert out["created"] is False
    stored = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] == seed.docker("swarm", "join-token", "-q", "worker").stdout.strip()


def test_overlay_networks_come_from_the_address_pool(swarm: Swarm) -> None:
    leader = swarm.managers[0]
    leader.docker("network", "create", "--driver", "overlay", "pool-check")
    # The manager's allocator assigns the subnet after the create returns.
    subnet = wait_until(
        "a subnet allocated to pool-check",
        lambda: leader.docker(
            "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "pool-check"
        ).stdout.strip(),
        30,
    )
    network = ipaddress.IPv4Network(subnet)
    assert network.subnet_of(ADDR_POOL)
    assert network.prefixlen == 24
    leader.docker("network", "rm", "pool-check")


def _snapshot(swarm: Swarm) -> dict[str, Any]:
    """What a second run must not change: nodes, services and the token parameters, with versions."""
    leader = swarm.managers[0]
    ids = leader.docker("node", "ls", "-q").stdout.split()
    nodes = leader.docker(
        "node", "inspect", "--format",
        "{{.ID}} {{.Version.Index}} {{.Spec.Role}} {{.Spec.Availability}} {{.Status.State}}", *ids,
    ).stdout.splitlines()  # fmt: skip
    services = leader.docker("service", "ls", "--format", "{{.ID}}").stdout.split()
    versions = (
        leader.docker("service", "inspect", "--format", "{{.ID}} {{.Version.Index}}", *services).stdout
        if services
        else ""
    )
    ssm = swarm.cloud.ssm()
    parameters = {
        role: ssm.get_parameter(Name=f"{swarm.token_prefix}/{role}")["Parameter"]["Version"]
        for role in ("worker", "manager")
    }
    return {"nodes": sorted(nodes), "services": versions, "parameters": parameters}


def _second_runs(swarm: Swarm) -> dict[str, tuple[str, Host, dict[str, str]]]:
    """Per case: the script, the host it runs on, its parameters."""
    seed, manager, worker = swarm.managers[0], swarm.managers[1], swarm.workers[0]
    init = {"SW_ADVERTISE_ADDR": str(seed.ip), "SW_ADDR_POOL": str(ADDR_POOL), "SW_ADDR_POOL_MASK_LEN": "24"}
    return {
        "init": ("init", seed, init),
        "join-manager": ("join", manager, swarm.join_params(manager, "manager")),
        "join-worker": ("join", worker, swarm.join_params(worker, "worker")),
        "status": ("status", seed, {}),
        "drain": ("drain", seed, {"SW_NODE": swarm.workers[1].hostname}),
        "rebalance": ("rebalance", seed, {}),
        "remove-dead-node": ("remove-dead-node", seed, {"SW_NODE": "no-such-node"}),
    }


@pytest.mark.parametrize(
    "case", ["init", "join-manager", "join-worker", "status", "drain", "rebalance", "remove-dead-node"]
)
def test_a_second_run_changes_nothing(swarm: Swarm, case: str) -> None:
    if case == "rebalance" and not swarm.running_tasks("steady"):
        swarm.service("steady", replicas=3)
        wait_until("3 running tasks of steady", lambda: sum(swarm.running_tasks("steady").values()) == 3, 60)
    script, host, params = _second_runs(swarm)[case]
    first = swarm.ok(host, script, **params)
    before = _snapshot(swarm)
    second = swarm.ok(host, script, **params)
    assert _snapshot(swarm) == before
    # init and join report whether this run did the work; everything else must answer the same.
    did_work: dict[str, Any] = {k: False for k in ("created", "joined") if k in first}
    assert second == first | did_work


def test_rotate_tokens_again_keeps_parameters_equal_to_the_live_tokens(swarm: Swarm) -> None:
    leader = swarm.managers[0]
    members = sorted(n["id"] for n in swarm.status()["nodes"])
    ssm = swarm.cloud.ssm()
    for _ in range(2):
        assert swarm.ok(leader, "rotate-tokens") == {"rotated": ["worker", "manager"]}
        for role in ("worker", "manager"):
            stored = ssm.get_parameter(Name=f"{swarm.token_prefix}/{role}", WithDecryption=True)["Parameter"]
            assert stored["Value"] == leader.docker("swarm", "join-token", "-q", role).stdout.strip()
    assert sorted(n["id"] for n in swarm.status()["nodes"]) == members


def test_rotations_side_by_side_leave_the_parameters_equal_to_the_live_tokens(swarm: Swarm) -> None:
    # Two repairs finishing together each rotate; the stored tokens must end as the swarm's, or every
    # later join is refused.
    ssm = swarm.cloud.ssm()
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda m: swarm.ok(m, "rotate-tokens"), swarm.managers[:2]))
        assert results == [{"rotated": ["worker", "manager"]}] * 2
        for role in ("worker", "manager"):
            stored = ssm.get_parameter(Name=f"{swarm.token_prefix}/{role}", WithDecryption=True)["Parameter"]
            assert stored["Value"] == swarm.managers[0].docker("swarm", "join-token", "-q", role).stdout.strip()


def test_a_token_that_cannot_be_stored_fails_the_rotation_with_that_roles_error(swarm: Swarm) -> None:
    leader = swarm.managers[0]
    # "/aws/..." names are reserved: Parameter Store refuses both writes, which run side by side.
    refused = swarm.run(leader, "rotate-tokens", SW_TOKEN_PREFIX="/aws/swarmwarden-refused")
    try:
        assert not refused.ok
        assert refused.output is not None, refused.stdout
        assert refused.output["error"].startswith("rotate-tokens: cannot store /aws/swarmwarden-refused/")
        assert TOKEN_MARKER not in refused.stdout + refused.stderr
    finally:
        swarm.ok(leader, "rotate-tokens")  # the stored tokens are stale now: store the live ones again


def test_leave_twice_then_remove_the_node(swarm: Swarm) -> None:
    host = swarm.cloud.new_host()
    swarm.join(host, "worker")
    node_id = swarm.node_id(host)
    assert swarm.ok(host, "leave") == {"left": True}
    assert swarm.ok(host, "leave") == {"left": False}
    swarm.remove(host)
    wait_until(f"{host.hostname} shown down", lambda: swarm.nodes()[host.hostname]["status"] == "down", 60)
    removed = swarm.ok(swarm.managers[0], "remove-dead-node", SW_NODE=host.hostname)
    assert removed == {"removed": True, "node": node_id, "was_manager": False}
    again = swarm.ok(swarm.managers[0], "remove-dead-node", SW_NODE=host.hostname)
    assert again == {"removed": False, "node": host.hostname}
    swarm.cloud.destroy(host)


def test_rotation_refuses_the_old_worker_token_and_accepts_the_new(swarm: Swarm) -> None:
    ssm = swarm.cloud.ssm()
    name = f"{swarm.token_prefix}/worker"
    old = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    swarm.ok(swarm.managers[0], "rotate-tokens")
    new = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert new != old

    # The fresh host's join script reads the old token: refused, with a clear error that does not echo it.
    fresh = swarm.cloud.new_host()
    ssm.put_parameter(Name=name, Value=old, Type="SecureString", Overwrite=True)
    result = swarm.run(fresh, "join", **swarm.join_params(fresh, "worker"))
    assert not result.ok
    assert result.output is not None
    assert "valid join token is necessary" in result.output["error"]
    assert TOKEN_MARKER not in result.stdout + result.stderr
    assert fresh.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"

    ssm.put_parameter(Name=name, Value=new, Type="SecureString", Overwrite=True)
    assert swarm.join(fresh, "worker")["joined"] is True
    assert swarm.nodes()[fresh.hostname]["status"] == "ready"


def test_join_refuses_a_host_of_another_swarm(swarm: Swarm) -> None:
    other = Swarm(swarm.cloud, "other")
    host = swarm.cloud.new_host()
    other.init(host)
    result = swarm.run(host, "join", **swarm.join_params(host, "worker"))
    assert result.exit_code != 0
    assert result.output is not None
    assert "another swarm" in result.output["error"]
    swarm.cloud.destroy(host)


def test_remove_dead_node_refuses_a_live_node(swarm: Swarm) -> None:
    worker = swarm.workers[0]
    result = swarm.run(swarm.managers[0], "remove-dead-node", SW_NODE=worker.hostname)
    assert result.exit_code != 0
    assert result.output is not None
    assert "not down" in result.output["error"]
    assert swarm.nodes()[worker.hostname]["status"] == "ready"


@pytest.mark.parametrize(
    ("script", "params", "message"),
    [
        ("drain", {}, "parameter SW_NODE is required"),
        ("join", {"SW_ROLE": "boss"}, "parameter SW_ADVERTISE_ADDR is required"),
        ("rebalance", {"SW_MAX_UPDATES": "many"}, "SW_MAX_UPDATES must be a whole number"),
    ],
)
def test_bad_parameters_end_with_an_error_object(
    swarm: Swarm, script: str, params: dict[str, str], message: str
) -> None:
    result = swarm.run(swarm.managers[0], script, **params)
    assert result.exit_code != 0
    assert result.output is not None
    assert message in result.output["error"]


def test_no_script_output_contains_a_token(swarm: Swarm) -> None:
    assert swarm.cloud.outputs
    assert not [out for out in swarm.cloud.outputs if TOKEN_MARKER in out]


def test_overlay_traffic_and_host_mode_ports_cross_hosts(swarm: Swarm) -> None:
    leader, worker = swarm.managers[0], swarm.workers[0]
    leader.docker("network", "create", "--driver", "overlay", "--attachable", "appnet")
    leader.docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", "hello", "--network", "appnet",
        "--constraint", f"node.hostname=={worker.hostname}", "--stop-grace-period", "1s",
        "--publish", "mode=host,target=8080,published=8080", IMAGE,
        "sh", "-c", "echo hello > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    )  # fmt: skip
    wait_until("hello running", lambda: swarm.running_tasks("hello"), 60)
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3"

    # A host-mode port, from another host over the bridge (retried: httpd may not listen yet).
    wait_until(
        f"hello on {worker.ip}:8080",
        lambda: run_script(leader, f"{request} {worker.ip} 8080", swarm.cloud.aws).stdout.rstrip().endswith("hello"),
        20,
    )

    # The overlay (VXLAN between the namespaces), from a container on another host.
    task = worker.docker("ps", "-q", "--filter", "name=hello").stdout.split()[0]
    ip = worker.docker("inspect", "--format", '{{(index .NetworkSettings.Networks "appnet").IPAddress}}', task)
    overlay = leader.docker(
        "run", "--rm", "--network", "appnet", IMAGE, "sh", "-c", f"{request} {ip.stdout.strip()} 8080"
    )
    assert overlay.stdout.rstrip().endswith("hello")
    assert ipaddress.IPv4Address(ip.stdout.strip()) in ADDR_POOL
    leader.docker("service", "rm", "hello")
