"""Sample task results and workflow inputs for the state-machine tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.statemachines.aslrunner import LambdaStubs

ROOT = Path(__file__).resolve().parents[2]
STATEMACHINES = ROOT / "statemachines"
EVENTS = ROOT / "events"
FAST_POLL = {"interval_seconds": 1, "max_attempts": 3}


def load_definition(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads((STATEMACHINES / f"{name}.asl.json").read_text())
    return definition


def workflow_input(name: str, *, cfn: bool = False, **spec_overrides: Any) -> dict[str, Any]:
    """A sample from events/, with the fast poll the tests use and optional spec overrides."""
    sample = "-cfn" if cfn else ""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}-input{sample}.json").read_text())
    data["poll"] = dict(FAST_POLL)
    data["spec"].update(spec_overrides)
    return data


def host(index: int, role: str, slot: str) -> dict[str, str]:
    azs = ("us-east-1a", "us-east-1b", "us-east-1c")
    return {
        "instance_id": f"i-{index:017x}",
        "role": role,
        "slot": slot,
        "az": azs[index % 3],
        "private_ip": f"10.42.{index % 3}.{10 + index}",
    }


def launch_result(managers: int = 3, workers: int = 2) -> dict[str, Any]:
    """A LaunchResult: the seed manager, the other managers, the workers; all launched by this run."""
    hosts = [host(i, "manager", f"manager-{i}") for i in range(managers)]
    hosts += [host(managers + i, "worker", f"worker-{i}") for i in range(workers)]
    ids = [h["instance_id"] for h in hosts]
    return {
        "seed": hosts[0],
        "managers": hosts[1:managers],
        "workers": hosts[managers:],
        "instance_ids": ids,
        "launched_instance_ids": ids,
    }


NETWORK = {
    "vpc_id": "vpc-0a1b2c3d4e5f60708",
    "security_group_id": "sg-0a1b2c3d4e5f60708",
    "subnets": [
        {"subnet_id": "subnet-0000000000000000a", "az": "us-east-1a", "cidr": "10.42.0.0/20"},
        {"subnet_id": "subnet-0000000000000000b", "az": "us-east-1b", "cidr": "10.42.16.0/20"},
    ],
}
SWARM = {"swarm_id": "swarm0123456789", "manager_addr": "10.42.0.10:2377", "node_id": "node-seed", "created": True}


def ready_after(rounds: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """check_ready: not ready for `rounds - 1` rounds, then ready."""

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        attempt = payload["attempt"] + 1
        ready = attempt >= rounds
        return {
            "ready": ready,
            "exhausted": not ready and attempt >= payload["max_attempts"],
            "attempt": attempt,
            "summary": "all hosts ready" if ready else f"{len(payload['instance_ids'])} hosts not ready",
            "not_ready": {},
        }

    return answer


def joined(payload: dict[str, Any]) -> dict[str, Any]:
    h = payload["host"]
    return {"instance_id": h["instance_id"], "node_id": f"node-{h['slot']}", "role": h["role"], "joined": True}


def stub_provision_happy(stubs: LambdaStubs, launch: dict[str, Any], ready_rounds: int = 1) -> None:
    hosts = [launch["seed"], *launch["managers"], *launch["workers"]]
    nodes = [
        {
            "id": f"node-{h['slot']}",
            "hostname": f"demo-{h['slot']}",
            "addr": h["private_ip"],
            "role": h["role"],
            "status": "Ready",
            "availability": "Active",
            "leader": h is launch["seed"],
            "reachability": "Reachable" if h["role"] == "manager" else "",
        }
        for h in hosts
    ]
    stubs.on("network", "ensure_network", NETWORK)
    stubs.on("network", "ensure_ecs_cluster", {"cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo"})
    stubs.on("hosts", "launch", launch)
    stubs.on("hosts", "check_ready", ready_after(ready_rounds))
    stubs.on("hosts", "terminate_run", {"terminated": list(launch["launched_instance_ids"])})
    stubs.on("swarm", "init", SWARM)
    stubs.on("swarm", "join", joined)
    stubs.on("swarm", "verify", {"nodes": nodes})
    stubs.on("cluster_state", "provisioned", {"recorded": len(nodes)})
    stubs.on("custom_resource", "report", {"reported": True})


def stub_teardown_happy(stubs: LambdaStubs, instance_ids: list[str], done_after: int = 1) -> None:
    def check_terminated(payload: dict[str, Any]) -> dict[str, Any]:
        attempt = payload["attempt"] + 1
        done = attempt >= done_after
        remaining = [] if done else list(instance_ids)
        return {
            "done": done,
            "exhausted": not done and attempt >= payload["max_attempts"],
            "attempt": attempt,
            "remaining": remaining,
            "summary": "all terminated" if done else f"still running: {', '.join(remaining)}",
        }

    stubs.on("cluster_state", "tearing_down", {"status": "tearing_down"})
    stubs.on("hosts", "terminate_cluster", {"terminating": list(instance_ids)})
    stubs.on("hosts", "check_terminated", check_terminated)
    stubs.on("swarm", "delete_tokens", {"deleted": ["/swarmwarden/demo/tokens/manager"]})
    stubs.on("network", "delete_network", {"deleted": {"vpc": 1, "subnet": 2, "security_group": 1}})
    stubs.on("network", "delete_ecs_cluster", {"deleted": True})
    stubs.on("cluster_state", "torn_down", {"status": "deleted"})
    stubs.on("custom_resource", "report", {"reported": True})
