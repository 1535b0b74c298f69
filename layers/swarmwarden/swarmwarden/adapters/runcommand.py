"""SSM Run Command: send a host script, then poll for its result within a bounded time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from swarmwarden import commands
from swarmwarden.errors import ScriptFailed, TransientError
from swarmwarden.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

DOCUMENT = "AWS-RunShellScript"
_RUNNING = {"Pending", "InProgress", "Delayed", "Cancelling"}
# SendCommand's TimeoutSeconds is how long delivery may wait for an agent; AWS's floor is 30.
_DELIVERY_TIMEOUT_SECONDS = 60


class SecretInOutput(ScriptFailed):
    """A script printed a join token. The output is dropped, never logged or returned."""


def parse_last_line(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of a script's stdout."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the script printed nothing")
    payload = json.loads(lines[-1])
    if not isinstance(payload, dict):
        raise ValueError("the script's last line is not a JSON object")
    return payload


# Each pause is this much longer than the one before. Gentle: a result is noticed soon after the script
# ends (doubling left up to 2 s between a 1-2 s script's end and its poll), and few calls are made.
_POLL_GROWTH = 1.5


class RunCommand:
    """Runs one script on one instance and returns its JSON result."""

    def __init__(
        self,
        ssm: SSMClient,
        *,
        poll_seconds: float = 2.0,
        first_poll_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ssm = ssm
        self._poll_seconds = poll_seconds
        self._first_poll_seconds = first_poll_seconds
        self._clock = clock
        self._sleep = sleep

    def run(
        self,
        instance_id: str,
        script: str,
        parameters: dict[str, str],
        timeout_seconds: int,
        *,
        wait_seconds: float | None = None,
    ) -> dict[str, Any]:
        """`wait_seconds` caps how long we wait for the result (default: the run time plus delivery);
        the HTTP API needs an answer within API Gateway's 30 s, even from a host whose agent is gone."""
        text = commands.render(script, parameters)
        sent = self._ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName=DOCUMENT,
            Comment=f"swarmwarden {script}",
            TimeoutSeconds=_DELIVERY_TIMEOUT_SECONDS,
            Parameters={"commands": [text], "executionTimeout": [str(timeout_seconds)]},
        )
        command_id = sent["Command"]["CommandId"]
        logger.info("command sent", extra={"script": script, "instance_id": instance_id, "command_id": command_id})
        budget = timeout_seconds + _DELIVERY_TIMEOUT_SECONDS if wait_seconds is None else wait_seconds
        invocation = self._wait(command_id, instance_id, script, budget)
        return self._result(invocation, instance_id, script)

    def _wait(self, command_id: str, instance_id: str, script: str, budget_seconds: float) -> dict[str, Any]:
        deadline = self._clock() + budget_seconds
        status = "Pending"
        # Most scripts finish within a second or two: look early, then back off to poll_seconds.
        pause = min(self._first_poll_seconds, self._poll_seconds)
        while self._clock() < deadline:
            try:
                invocation: dict[str, Any] = dict(
                    self._ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
                )
            except ClientError as error:
                # Right after SendCommand the invocation may not exist yet.
                if error.response["Error"]["Code"] != "InvocationDoesNotExist":
                    raise
            else:
                status = invocation["Status"]
                if status not in _RUNNING:
                    return invocation
            self._sleep(pause)
            pause = min(pause * _POLL_GROWTH, self._poll_seconds)
        raise TransientError(f"{script} on {instance_id} still {status} after {budget_seconds:.0f} s")

    @staticmethod
    def _result(invocation: dict[str, Any], instance_id: str, script: str) -> dict[str, Any]:
        stdout = invocation.get("StandardOutputContent", "")
        stderr = invocation.get("StandardErrorContent", "")
        if commands.TOKEN_MARKER in stdout or commands.TOKEN_MARKER in stderr:
            raise SecretInOutput(f"{script} on {instance_id} printed a join token; its output was discarded")
        status = invocation["Status"]
        if status in {"TimedOut", "Cancelled"}:
            raise TransientError(f"{script} on {instance_id} ended {status}")
        try:
            payload = parse_last_line(stdout)
        except ValueError as error:
            tail = stderr.strip().splitlines()[-1:] or [str(error)]
            raise ScriptFailed(f"{script} on {instance_id} ({status}): {tail[0]}") from None
        if status != "Success" or "error" in payload:
            reason = payload.get("error") or f"exit code {invocation.get('ResponseCode')}"
            raise ScriptFailed(f"{script} on {instance_id} failed: {reason}")
        return payload
