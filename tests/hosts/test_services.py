"""service-create, service-list and service-rm on a real swarm: what POST/GET/DELETE /services run."""

from __future__ import annotations

import json

import pytest

from localcloud.image import IMAGE
from tests.hosts.swarm import Swarm, wait_until

pytestmark = pytest.mark.slow

# Shell metacharacters that must reach the container as they are: the script never evaluates them.
TRICKY = 'it\'s $HOME `id` $(id) \\ "quoted" ; rm -rf /'


def _create(swarm: Swarm, **changes: str) -> dict:
    params = {
        "SW_NAME": "web",
        "SW_IMAGE": IMAGE,
        "SW_REPLICAS": "2",
        "SW_RESOLVE_IMAGE": "never",
        "SW_COMMAND": "httpd\n-f\n-p\n80",
        "SW_ENV": f"GREETING=hello world\nTRICKY={TRICKY}",
        "SW_CONSTRAINTS": "node.role==worker",
        "SW_PORTS": "8080:80:tcp",
    }
    return swarm.ok(swarm.managers[0], "service-create", **(params | changes))


def test_create_list_and_remove_a_service(swarm: Swarm) -> None:
    leader = swarm.managers[0]
    created = _create(swarm)
    assert created["created"] is True
    assert created["name"] == "web"

    inspected = json.loads(leader.docker("service", "inspect", "web").stdout)[0]["Spec"]
    container = inspected["TaskTemplate"]["ContainerSpec"]
    assert container["Env"] == ["GREETING=hello world", f"TRICKY={TRICKY}"]
    assert container["Args"] == ["httpd", "-f", "-p", "80"]
    assert inspected["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==worker"]
    (port,) = inspected["EndpointSpec"]["Ports"]
    assert (port["PublishMode"], port["PublishedPort"], port["TargetPort"], port["Protocol"]) == (
        "host",
        8080,
        80,
        "tcp",
    )

    workers = {swarm.node_id(host) for host in swarm.workers}
    wait_until("both replicas running on the workers", lambda: swarm.running_tasks("web").keys() == workers, 60)
    again = _create(swarm, SW_REPLICAS="5")
    assert again == {"name": "web", "id": created["id"], "created": False}

    listed = swarm.ok(leader, "service-list")["services"]
    (web,) = [s for s in listed if s["name"] == "web"]
    assert web == {
        "name": "web",
        "id": created["id"],
        "image": IMAGE,
        "mode": "replicated",
        "replicas": 2,
        "running": 2,
        "tasks": {node: 1 for node in workers},
    }
    assert swarm.ok(leader, "service-list", SW_NAME="web")["services"] == [web]
    assert swarm.ok(leader, "service-list", SW_NAME="we")["services"] == []  # a name, not a prefix

    nodes = swarm.ok(leader, "status")["nodes"]
    assert {n["id"]: n["tasks"] for n in nodes if n["role"] == "worker"} == dict.fromkeys(workers, 1)
    assert all(n["tasks"] == 0 for n in nodes if n["role"] == "manager")

    assert swarm.ok(leader, "service-rm", SW_NAME="web") == {"name": "web", "removed": True}
    assert swarm.ok(leader, "service-rm", SW_NAME="web") == {"name": "web", "removed": False}
    assert swarm.ok(leader, "service-list", SW_NAME="web")["services"] == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"SW_REPLICAS": "two"}, "SW_REPLICAS must be a whole number"),
        ({"SW_PORTS": "80:80:icmp"}, "protocol 'icmp'"),
        ({"SW_PORTS": "80;id:80:tcp"}, "is not published:target"),
        ({"SW_RESOLVE_IMAGE": "sometimes"}, "SW_RESOLVE_IMAGE must be always or never"),
    ],
)
def test_create_refuses_bad_parameters(swarm: Swarm, changes: dict[str, str], error: str) -> None:
    result = swarm.run(
        swarm.managers[0], "service-create", **({"SW_NAME": "bad", "SW_IMAGE": IMAGE, "SW_REPLICAS": "1"} | changes)
    )
    assert not result.ok
    assert result.output is not None
    assert error in result.output["error"]
    assert swarm.ok(swarm.managers[0], "service-list", SW_NAME="bad")["services"] == []


def test_scripts_refuse_on_a_worker(swarm: Swarm) -> None:
    result = swarm.run(swarm.workers[0], "service-list")
    assert not result.ok
    assert result.output == {"error": "service-list: this host is not a swarm manager"}
