"""In-memory stand-ins for AWS pieces that moto cannot play: hosts that answer Run Command."""

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# (instance id, script name, command text) -> (stdout, exit code)
HostScript = Callable[[str, str, str], tuple[str, int]]


@dataclass
class FakeSsm:
    """Answers SendCommand/GetCommandInvocation the way AWS does, with hosts simulated by `answer`.

    The first GetCommandInvocation of every command says InvocationDoesNotExist, as AWS sometimes does.
    """

    answer: HostScript
    pending_polls: int = 1
    sent: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)
    _results: dict[str, tuple[str, int]] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)

    def send_command(self, **request: Any) -> dict[str, Any]:
        command_id = f"cmd-{next(self._ids)}"
        self.sent.append(request)
        (instance_id,) = request["InstanceIds"]
        script = request["Comment"].removeprefix("swarmwarden ")
        self._results[command_id] = self.answer(instance_id, script, "\n".join(request["Parameters"]["commands"]))
        return {"Command": {"CommandId": command_id}}

    def get_command_invocation(self, CommandId: str, InstanceId: str) -> dict[str, Any]:
        polls = self._polls[CommandId] = self._polls.get(CommandId, 0) + 1
        if polls == 1:
            raise ClientError({"Error": {"Code": "InvocationDoesNotExist", "Message": ""}}, "GetCommandInvocation")
        if polls <= 1 + self.pending_polls:
            return {"Status": "InProgress", "StandardOutputContent": "", "StandardErrorContent": ""}
        stdout, code = self._results[CommandId]
        return {
            "Status": "Success" if code == 0 else "Failed",
            "ResponseCode": code,
            "StandardOutputContent": stdout,
            "StandardErrorContent": "",
        }


def json_line(**values: Any) -> str:
    return "some progress\n" + json.dumps(values)
