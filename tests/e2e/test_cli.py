"""The `swarmwarden local` CLI, run as a user runs it: real subprocesses, a real background cloud.

Each test has its own prefix and VPC range (other clouds may run on this machine), and always ends
with `cleanup_all`, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.hosts import STATE_ROOT, cleanup_all, leftovers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("dockerd") is None, reason="the local cloud needs root and dockerd"
    ),
]
SWARMWARDEN = str(Path(sys.executable).with_name("swarmwarden"))


def swarmwarden(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWARMWARDEN, "local", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _pid(prefix: str) -> int | None:
    try:
        return int((STATE_ROOT / prefix / "local.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        return b"localcloud" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def clean() -> Iterator[list[str]]:
    """Prefixes the test uses; their background cloud is stopped by pid and everything removed after."""
    prefixes: list[str] = []
    yield prefixes
    for prefix in prefixes:
        pid = _pid(prefix)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        cleanup_all(prefix)
        (STATE_ROOT / f"{prefix}-serve.log").unlink(missing_ok=True)


def _status(prefix: str) -> dict[str, Any]:
    result = swarmwarden("status", "--json", "--prefix", prefix)
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_up_detached_status_kill_down(clean: list[str]) -> None:
    prefix = "swcli"
    clean.append(prefix)
    cleanup_all(prefix)

    started = time.monotonic()
    up = swarmwarden(
        "up", "--detach", "--managers", "1", "--workers", "1", "--prefix", prefix,
        "--parameter", "VpcCidr=10.77.0.0/16", "--timeout", "300",
        timeout=420,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    assert time.monotonic() - started < 120
    pid = _pid(prefix)
    assert pid is not None
    assert _alive(pid), "the cloud keeps running in the background"

    status = _status(prefix)
    assert status["phase"] == "up"
    nodes = {n["role"]: n for n in status["nodes"]}
    assert sorted(nodes) == ["manager", "worker"]
    assert all(n["state"] == "running" for n in nodes.values())
    assert nodes["manager"]["swarm"] == "manager/ready/leader"
    assert nodes["worker"]["swarm"] == "worker/ready"

    again = swarmwarden("up", "--detach", "--prefix", prefix)
    assert again.returncode != 0
    assert "already running" in again.stderr

    worker = nodes["worker"]
    kill = swarmwarden("kill", worker["hostname"], "--prefix", prefix)
    assert kill.returncode == 0, kill.stderr
    assert worker["instance_id"] in kill.stdout
    deadline = time.monotonic() + 30
    while True:
        states = {n["instance_id"]: n["state"] for n in _status(prefix)["nodes"]}
        if states[worker["instance_id"]] == "terminated":
            break
        assert time.monotonic() < deadline, f"the killed worker never terminated: {states}"
        time.sleep(0.5)
    assert states[nodes["manager"]["instance_id"]] == "running"

    down = swarmwarden("down", "--prefix", prefix, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left" in down.stdout
    assert leftovers(prefix) == []
    assert not _alive(pid)

    gone = swarmwarden("status", "--prefix", prefix)
    assert gone.returncode == 1
    assert "no local cloud is running" in gone.stderr


def test_demo_converges(clean: list[str]) -> None:
    prefix = "swdemo"
    clean.append(prefix)
    cleanup_all(prefix)
    demo = swarmwarden(
        "demo", "--prefix", prefix, "--parameter", "VpcCidr=10.78.0.0/16", "--timeout", "300", timeout=600
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    for step in ("up", "service deployed", "converged", "scaled out to 4 workers", "scaled in to 2 workers", "down"):
        assert step in demo.stdout
    assert "4/4 running on 4 nodes" in demo.stdout
    assert leftovers(prefix) == []
