"""Starts Step Functions executions under names that make duplicates harmless."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def execution_name(prefix: str, key: str) -> str:
    """A valid, deterministic execution name (at most 80 characters) for an idempotency key."""
    return _NAME_UNSAFE.sub("-", f"{prefix}-{key}")[:80]


class Workflows:
    def __init__(self, sfn: SFNClient) -> None:
        self._sfn = sfn

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """Starts the execution, or returns the one already started under that name."""
        return self.start_new(state_machine_arn, name, payload)[0]

    def start_new(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> tuple[str, bool]:
        """Like `start`, and whether this call started it (False: a duplicate, running or closed)."""
        try:
            started = self._sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}", False
        return started["executionArn"], True
