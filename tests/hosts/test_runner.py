"""The AWS-RunShellScript emulation itself, and static checks on the scripts it runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import swarmwarden
from swarmwarden.commands import TOKEN_MARKER, render

from localcloud.hosts import Host
from localcloud.image import IMAGE
from localcloud.runscript import STDERR_LIMIT, STDOUT_LIMIT, TIMED_OUT, ScriptResult, run_script
from tests.hosts.swarm import Cloud

pytestmark = pytest.mark.slow

SCRIPTS = sorted((Path(swarmwarden.__file__).parent / "scripts").glob("*.sh"))


@pytest.fixture(scope="module")
def host(cloud: Cloud) -> Iterator[Host]:
    host = cloud.new_host()
    yield host
    cloud.destroy(host)


def test_runs_inside_the_host_with_its_docker_and_aws_endpoint(cloud: Cloud, host: Host) -> None:
    command = 'hostname; ip -o -4 addr show eth0 | wc -l; echo "$DOCKER_HOST $AWS_ENDPOINT_URL"; echo \'{"a": 1}\''
    result = run_script(host, command, cloud.aws)
    assert result.ok
    lines = result.stdout.splitlines()
    assert lines[:3] == [host.hostname, "1", f"{host.docker_host} {cloud.aws.url}"]
    assert result.output == {"a": 1}


def test_a_host_has_no_default_route_and_the_machine_no_nat_for_it(cloud: Cloud, host: Host) -> None:
    routes = run_script(host, "ip -4 route", cloud.aws)
    assert routes.ok
    assert not [line for line in routes.stdout.splitlines() if line.startswith("default")], routes.stdout
    nat = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True, check=True)
    assert str(cloud.network.cidr.network_address) not in nat.stdout
    assert cloud.network.bridge not in nat.stdout


def test_output_is_cut_to_the_ssm_limits_and_the_exit_code_kept(cloud: Cloud, host: Host) -> None:
    command = "head -c 30000 /dev/zero | tr '\\0' o; head -c 9000 /dev/zero | tr '\\0' e >&2; exit 3"
    result = run_script(host, command, cloud.aws)
    assert (result.exit_code, len(result.stdout), len(result.stderr)) == (3, STDOUT_LIMIT, STDERR_LIMIT)
    assert result.output is None


def test_a_command_that_overruns_is_killed(cloud: Cloud, host: Host) -> None:
    result = run_script(host, "echo started; sleep 30", cloud.aws, timeout=1)
    assert result.timed_out
    assert result.exit_code == TIMED_OUT
    assert result.stdout == "started\n"
    assert result.duration < 10


def test_a_killed_host_kills_its_running_command(cloud: Cloud) -> None:
    victim = cloud.new_host()
    results: list[ScriptResult] = []
    runner = threading.Thread(target=lambda: results.append(run_script(victim, "sleep 60", cloud.aws)))
    runner.start()
    time.sleep(1)  # the command is in the host's cgroup by now
    victim.kill()
    runner.join(timeout=15)
    assert not runner.is_alive(), "the command outlived its host"
    # The shell is killed itself (-9), or first sees its child killed and exits 128 + 9.
    assert results[0].exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL)
    cloud.destroy(victim)


def test_stop_is_graceful_and_start_brings_the_same_host_back(cloud: Cloud) -> None:
    host = cloud.new_host()
    host.docker("run", "-d", "--name", "keeper", "--restart", "always", "--stop-timeout", "1", IMAGE, "sleep", "1d")
    host.stop()
    assert not host.is_running()
    assert "Processing signal 'terminated'" in host.log_path.read_text()
    host.start()
    state = host.docker("inspect", "--format", "{{.State.Running}}", "keeper").stdout.strip()
    assert state == "true", "the container did not come back with its daemon"
    cloud.destroy(host)


def test_a_daemon_kill_leaves_the_host_on_the_network(cloud: Cloud, host: Host) -> None:
    victim = cloud.new_host()
    victim.kill_daemon()
    assert not victim.is_running()
    assert run_script(host, f"busybox ping -c 1 -W 2 {victim.ip}", cloud.aws).ok
    victim.kill()
    assert not run_script(host, f"busybox ping -c 1 -W 1 {victim.ip}", cloud.aws).ok
    cloud.destroy(victim)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_rendered_script_follows_the_contract(script: Path) -> None:
    text = render(script.stem, {})
    assert "set -eu\n" in text
    assert "set -x" not in text
    assert "trap on_exit EXIT" in text
    assert TOKEN_MARKER not in text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_rendered_script_passes_shellcheck(script: Path, tmp_path: Path) -> None:
    rendered = tmp_path / script.name
    rendered.write_text(render(script.stem, {}))
    result = subprocess.run(["shellcheck", "-s", "sh", str(rendered)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
