"""Fixtures for tests on real dockerd hosts: one bridge and one moto server per session, swarms per module.

Everything the session makes is named after PREFIX, and is removed by `cleanup_all(PREFIX)` before
the session (what a crashed run left behind) and after it, which fails the run if anything is left.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from swarmwarden.commands import TOKEN_MARKER

from localcloud.hosts import HostNetwork, cleanup_all, prefix_lock
from localcloud.image import build_rootfs
from localcloud.runscript import AwsEndpoint
from tests.hosts.swarm import REGION, Cloud, Swarm, form

PREFIX = "swt"
CIDR = ipaddress.IPv4Network("10.213.0.0/24")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        skip = pytest.mark.skip(reason="host tests need root and dockerd (make setup installs docker.io)")
        for item in items:
            if "tests/hosts/" in str(item.fspath):
                item.add_marker(skip)


def _free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with prefix_lock(PREFIX):
        yield from _cloud(tmp_path_factory)


def _cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    cleanup_all(PREFIX)
    network = HostNetwork(PREFIX, CIDR)
    network.ensure()
    # moto listens on the bridge's address only, so the hosts' `aws` calls reach it and nothing else does.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    ip = str(network.gateway_ip)
    port = _free_port(ip)
    server = ThreadedMotoServer(ip_address=ip, port=port, verbose=False)
    server.start()
    rootfs = build_rootfs(tmp_path_factory.mktemp("image") / "busybox.tar")
    cloud = Cloud(network, AwsEndpoint(f"http://{ip}:{port}", REGION), rootfs)
    try:
        yield cloud
    finally:
        server.stop()
        cleanup_all(PREFIX)
    leaked = [out for out in cloud.outputs if TOKEN_MARKER in out]
    assert not leaked, f"{len(leaked)} script outputs contain a join token"


@pytest.fixture(scope="module")
def swarm(cloud: Cloud, request: pytest.FixtureRequest) -> Iterator[Swarm]:
    """A fresh 3-manager, 2-worker swarm for the module; its hosts go when the module ends."""
    cluster = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    before = list(cloud.hosts)
    try:
        yield form(cloud, cluster)
    finally:
        for host in [h for h in cloud.hosts if h not in before]:
            cloud.destroy(host)
