"""Cleanup finds everything by its prefix, even after the process that made it was SIGKILLed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from localcloud.hosts import cleanup_all, leftovers, prefix_lock

pytestmark = pytest.mark.slow

PREFIX = "swc"

# Two hosts, one of them running a container, then a crash: nothing gets the chance to clean up.
CRASHING_SESSION = textwrap.dedent(
    f"""
    import ipaddress, os, signal, sys
    from pathlib import Path
    from localcloud.hosts import Host, HostNetwork
    from localcloud.image import build_rootfs, load_image

    network = HostNetwork("{PREFIX}", ipaddress.IPv4Network("10.213.1.0/24"))
    hosts = [Host(network, f"h{{i}}", network.cidr[10 + i], f"crash-{{i}}") for i in (1, 2)]
    for host in hosts:
        host.start()
    rootfs = build_rootfs(network.state_dir / "busybox.tar")
    load_image(hosts[0], rootfs)
    hosts[0].docker("run", "-d", "--no-healthcheck", "swarmwarden/busybox:local", "sleep", "1d")
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_cleanup_all_removes_what_a_crashed_session_left() -> None:
    with prefix_lock(PREFIX):
        _crash_then_clean_up()


def _crash_then_clean_up() -> None:
    cleanup_all(PREFIX)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_SESSION], capture_output=True, text=True, timeout=120, check=False
    )
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout.strip() == "ready"
    left = leftovers(PREFIX)
    kinds = {item.split()[0] for item in left}
    assert {"netns", "link", "process", "mount", "cgroup", "socket", "state"} <= kinds, left

    cleanup_all(PREFIX)
    assert leftovers(PREFIX) == []


# Run in a throwaway network namespace: setting FORWARD to DROP there cannot disturb this machine.
SANDBOXED_FORWARD_POLICY = textwrap.dedent(
    """
    import ipaddress, subprocess
    from localcloud.hosts import HostNetwork, cleanup_all

    def rules():
        return subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=True).stdout

    network = HostNetwork("swf", ipaddress.IPv4Network("10.213.2.0/24"))
    network.ensure()
    assert "swarmwarden-swf" not in rules(), "rule added although FORWARD accepts"
    subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    network.ensure()
    network.ensure()
    assert rules().count("-i swfbr -o swfbr") == 1, rules()
    cleanup_all("swf")
    assert "swfbr" not in rules(), rules()
    print("ok")
    """
)


def test_forward_rule_only_under_a_drop_policy_and_removed_by_cleanup() -> None:
    sandboxed = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", SANDBOXED_FORWARD_POLICY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sandboxed.stdout.strip() == "ok", sandboxed.stderr
