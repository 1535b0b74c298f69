"""Measures the local hosts: start one host, form a 3+2 swarm, kill -> Down, leader kill -> new leader.

Run as root: `.venv/bin/python -m tests.hosts.measure [runs]`. Prints medians; asserts nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from moto.server import ThreadedMotoServer

from localcloud.hosts import Host, HostNetwork, cleanup_all, prefix_lock
from localcloud.image import build_rootfs
from localcloud.runscript import AwsEndpoint
from tests.hosts.swarm import REGION, Cloud, form

PREFIX = "swm"
CIDR = ipaddress.IPv4Network("10.213.3.0/24")


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _wait(probe: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(0.1)


def _node_state(via: Host, hostname: str) -> str:
    out = via.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=False).stdout
    return dict(line.split() for line in out.splitlines()).get(hostname, "")


def _has_new_leader(via: Host, old: str) -> bool:
    out = via.docker("node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}", check=False).stdout
    return any(line.endswith(" Leader") and not line.startswith(f"{old} ") for line in out.splitlines())


def main(runs: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with prefix_lock(PREFIX):
        _measure(runs)


def _measure(runs: int) -> None:
    cleanup_all(PREFIX)
    network = HostNetwork(PREFIX, CIDR)
    network.ensure()
    with socket.socket() as sock:
        sock.bind((str(network.gateway_ip), 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address=str(network.gateway_ip), port=port, verbose=False)
    server.start()
    starts, forms, worker_down, manager_down, failover = [], [], [], [], []
    try:
        rootfs = build_rootfs(Path(tempfile.mkdtemp()) / "busybox.tar")
        cloud = Cloud(network, AwsEndpoint(f"http://{network.gateway_ip}:{port}", REGION), rootfs)
        for i in range(runs * 2):
            host = Host(network, f"s{i}", network.cidr[200 + i], f"start-{i}")
            starts.append(_timed(host.start))
            host.destroy()
        for run in range(runs):
            before = time.monotonic()
            swarm = form(cloud, f"measure-{run}")
            forms.append(time.monotonic() - before)
            leader, other, worker = swarm.managers[0], swarm.managers[1], swarm.workers[0]

            worker.kill()
            worker_down.append(_timed(lambda: _wait(lambda: _node_state(leader, worker.hostname) == "Down")))  # noqa: B023
            other.kill()
            manager_down.append(_timed(lambda: _wait(lambda: _node_state(leader, other.hostname) == "Down")))  # noqa: B023
            other.start()  # back to 3 healthy managers before the leader goes
            _wait(lambda: _node_state(leader, other.hostname) == "Ready")  # noqa: B023
            leader.kill()
            failover.append(_timed(lambda: _wait(lambda: _has_new_leader(other, leader.hostname))))  # noqa: B023
            for host in list(cloud.hosts):
                cloud.destroy(host)
    finally:
        server.stop()
        cleanup_all(PREFIX)
    for label, values in [
        ("start one host (dockerd ready)", starts),
        ("form a 3+2 swarm (5 hosts started, image loaded, init, 4 joins)", forms),
        ("kill a worker -> Down", worker_down),
        ("kill a manager -> Down", manager_down),
        ("kill the leader -> new leader", failover),
    ]:
        print(
            f"{label}: median {statistics.median(values):.2f}s over {len(values)} ({', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
