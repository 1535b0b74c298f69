"""Helpers for the host tests: a cloud of namespaced hosts with a moto endpoint, and swarms on it."""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from swarmwarden.commands import render

from localcloud.hosts import Host, HostNetwork
from localcloud.image import IMAGE, load_image
from localcloud.runscript import AwsEndpoint, ScriptResult, run_script

REGION = "us-east-1"
ADDR_POOL = ipaddress.IPv4Network("172.20.0.0/16")
FIRST_HOST_OFFSET = 10


def wait_until[T](what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


@dataclass
class Cloud:
    """The session's hosts, all on one bridge, all talking to one moto server."""

    network: HostNetwork
    aws: AwsEndpoint
    rootfs: Path
    outputs: list[str] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def ssm(self) -> Any:
        return boto3.client(
            "ssm",
            endpoint_url=self.aws.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_host(self) -> Host:
        """A started host with the image loaded, named like an EC2 instance after its IP."""
        number = next(self._numbers)
        ip = self.network.cidr[FIRST_HOST_OFFSET + number]
        host = Host(self.network, f"h{number}", ip, f"ip-{str(ip).replace('.', '-')}")
        self.hosts.append(host)
        host.start()
        load_image(host, self.rootfs)
        return host

    def new_hosts(self, count: int) -> list[Host]:
        """`count` hosts started side by side (the bridge exists already, so they do not race for it)."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(lambda _: self.new_host(), range(count)))

    def destroy(self, host: Host) -> None:
        host.destroy()
        self.hosts.remove(host)

    def run(self, host: Host, script: str, params: dict[str, str], timeout: float = 150) -> ScriptResult:
        result = run_script(host, render(script, params), self.aws, timeout=timeout)
        self.outputs += [result.stdout, result.stderr]
        return result


@dataclass
class Swarm:
    """One cluster: its hosts by role, and script runs with the cluster's common parameters."""

    cloud: Cloud
    cluster: str
    managers: list[Host] = field(default_factory=list)
    workers: list[Host] = field(default_factory=list)
    swarm_id: str = ""

    @property
    def token_prefix(self) -> str:
        return f"/swarmwarden/{self.cluster}/tokens"

    @property
    def hosts(self) -> list[Host]:
        return [*self.managers, *self.workers]

    def run(self, host: Host, script: str, **params: str) -> ScriptResult:
        common = {"SW_CLUSTER": self.cluster, "SW_REGION": REGION, "SW_TOKEN_PREFIX": self.token_prefix}
        return self.cloud.run(host, script, {**common, **params})

    def ok(self, host: Host, script: str, **params: str) -> dict[str, Any]:
        """Run a script that must succeed; returns its JSON result."""
        result = self.run(host, script, **params)
        assert result.ok, f"{script} on {host.name} failed ({result.exit_code}): {result.stdout} {result.stderr}"
        assert result.output is not None, f"{script} on {host.name}: last line is not JSON: {result.stdout}"
        assert "error" not in result.output
        return result.output

    def init(self, host: Host) -> dict[str, Any]:
        out = self.ok(
            host,
            "init",
            SW_ADVERTISE_ADDR=str(host.ip),
            SW_ADDR_POOL=str(ADDR_POOL),
            SW_ADDR_POOL_MASK_LEN="24",
        )
        self.swarm_id = out["swarm_id"]
        return out

    def join_params(self, host: Host, role: str, via: Host | None = None) -> dict[str, str]:
        return {
            "SW_ROLE": role,
            "SW_ADVERTISE_ADDR": str(host.ip),
            "SW_MANAGER_ADDR": str((via or self.managers[0]).ip),
            "SW_SWARM_ID": self.swarm_id,
        }

    def join(self, host: Host, role: str, via: Host | None = None) -> dict[str, Any]:
        out = self.ok(host, "join", **self.join_params(host, role, via))
        (self.managers if role == "manager" else self.workers).append(host)
        return out

    def status(self, via: Host | None = None) -> dict[str, Any]:
        return self.ok(via or self.managers[0], "status")

    def nodes(self, via: Host | None = None) -> dict[str, dict[str, Any]]:
        """Status nodes by hostname."""
        return {n["hostname"]: n for n in self.status(via)["nodes"]}

    def node_id(self, host: Host, via: Host | None = None) -> str:
        node_id: str = self.nodes(via)[host.hostname]["id"]
        return node_id

    def remove(self, host: Host) -> None:
        (self.managers if host in self.managers else self.workers).remove(host)

    def service(self, name: str, replicas: int, via: Host | None = None) -> None:
        """A replicated service of the local image; a 1 s grace period keeps restarts quick."""
        (via or self.managers[0]).docker(
            "service", "create", "--detach", "--no-resolve-image", "--name", name,
            "--replicas", str(replicas), "--stop-grace-period", "1s", IMAGE, "sleep", "1d",
        )  # fmt: skip

    def running_tasks(self, service: str, via: Host | None = None) -> dict[str, int]:
        """Running tasks of `service` per node id."""
        host = via or self.managers[0]
        listed = host.docker("service", "ps", "-q", "--filter", "desired-state=running", service, check=False)
        ids = listed.stdout.split()
        if listed.returncode != 0 or not ids:
            return {}
        lines = host.docker("inspect", "--type", "task", "--format", "{{.NodeID}} {{.Status.State}}", *ids)
        counts: dict[str, int] = {}
        for line in lines.stdout.splitlines():
            node, _, state = line.partition(" ")
            if state == "running":
                counts[node] = counts.get(node, 0) + 1
        return counts


def form(cloud: Cloud, cluster: str, managers: int = 3, workers: int = 2) -> Swarm:
    """Init on the first manager, join the other managers one by one (each changes Raft), then the
    workers side by side, as provision's Map does."""
    swarm = Swarm(cloud, cluster)
    seed, *others = cloud.new_hosts(managers + workers)
    swarm.init(seed)
    swarm.managers.append(seed)
    for host in others[: managers - 1]:
        swarm.join(host, "manager")
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        list(pool.map(lambda host: swarm.join(host, "worker"), others[managers - 1 :]))
    return swarm
