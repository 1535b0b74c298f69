"""Runs a command on a host the way SSM's AWS-RunShellScript does.

The agent writes the command text to a file and runs it with `/bin/sh`; here that
happens inside the host's network and UTS namespaces, in the host's cgroup (so a
killed host kills its running commands too), with the host's dockerd as `DOCKER_HOST`
and the AWS CLI pointed at a local endpoint. Output is cut to GetCommandInvocation's
limits, which keep the first characters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.hosts import Host

STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
# SSM reports -1 as the response code of a command that did not finish.
TIMED_OUT = -1


@dataclass(frozen=True)
class AwsEndpoint:
    """Where a host's AWS CLI calls go. Credentials are dummies: moto accepts any."""

    url: str
    region: str = "us-east-1"


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration: float
    output: dict[str, Any] | None
    """The last stdout line parsed as a JSON object, or None if it is not one."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def last_line_json(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def host_environment(host: Host, aws: AwsEndpoint) -> dict[str, str]:
    """What the command sees: a fresh HOME (no stray AWS config), the venv's `aws` on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(host.dir / "home"),
        "LANG": "C.UTF-8",
        "DOCKER_HOST": host.docker_host,
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_DEFAULT_REGION": aws.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_script(host: Host, command: str, aws: AwsEndpoint, timeout: float = 120) -> ScriptResult:
    """Run `command` (e.g. from `swarmwarden.commands.render`) on `host` with `/bin/sh`."""
    commands_dir = host.dir / "commands"
    commands_dir.mkdir(parents=True, exist_ok=True)
    script = commands_dir / f"{uuid.uuid4()}.sh"
    script.write_text(command)
    argv = [*host.nsenter(), "/bin/sh", str(script)]
    started = time.monotonic()
    proc = subprocess.Popen(
        ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(host.process_cgroup / "cgroup.procs"), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=host_environment(host, aws),
        cwd=str(commands_dir),
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        script.unlink(missing_ok=True)
    stdout = out.decode(errors="replace")[:STDOUT_LIMIT]
    return ScriptResult(
        exit_code=TIMED_OUT if timed_out else proc.returncode,
        stdout=stdout,
        stderr=err.decode(errors="replace")[:STDERR_LIMIT],
        timed_out=timed_out,
        duration=time.monotonic() - started,
        output=last_line_json(stdout),
    )
