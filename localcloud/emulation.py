"""What moto does not do, done for real: EC2 instances become hosts, Run Command runs scripts on them,
the SSM and ECS agents report from the hosts' real state.

The patches go on moto's backend classes, so they serve every caller alike: the in-process handlers,
the hosts' AWS CLI (both through the moto server), and moto's own ASL engine.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from moto.ec2.models.instances import InstanceBackend
from moto.ssm.exceptions import SSMException as RESTError
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from localcloud.runscript import ScriptResult

# The emulated agent reads the cluster name the user data writes to /etc/ecs/ecs.config.
_ECS_CLUSTER = re.compile(r"ECS_CLUSTER=([A-Za-z0-9_-]+)")
# EC2 state codes, as DescribeInstances reports them.
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
_UNDELIVERABLE_AFTER_SECONDS = 2.0


class Machines(Protocol):
    """The side that owns the real hosts (the local cloud)."""

    def boot(self, instance: Any) -> None: ...
    def shut_down(self, instance: Any, *, terminate: bool) -> None: ...
    def run(self, instance_id: str, text: str, timeout: float) -> ScriptResult | None: ...
    def agent_online(self, instance_id: str) -> bool | None: ...


def ecs_cluster_from_user_data(user_data: Any) -> str | None:
    """The cluster the ECS agent would join: `ECS_CLUSTER=` in the user data (base64 or plain)."""
    raw = user_data[0] if isinstance(user_data, list) and user_data else user_data
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    with suppress(binascii.Error, UnicodeDecodeError):
        text = base64.b64decode(text, validate=True).decode()
    match = _ECS_CLUSTER.search(text)
    return match.group(1) if match else None


def set_state(instance: Any, state: str) -> None:
    instance._state.name = state
    instance._state.code = STATE_CODES[state]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Emulation:
    machines: Machines
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=32))
    unseen_invocations: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ EC2
    def run_instances(self, original: Callable[..., Any], backend: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original(backend, *args, **kwargs)
        for instance in reservation.instances:
            set_state(instance, "pending")
            self.pool.submit(self.machines.boot, instance)
        return reservation

    def _shut_down(
        self, original: Callable[..., Any], backend: Any, instance_ids: list[str], *, terminate: bool
    ) -> Any:
        transition = "shutting-down" if terminate else "stopping"
        live = [
            i
            for i in backend.get_multi_instances_by_id(instance_ids)
            if i._state.name not in {"terminated", "shutting-down"}
        ]
        result = original(backend, instance_ids)
        for instance in live:
            if terminate or instance._state.name != "terminated":
                set_state(instance, transition)
                self.pool.submit(self.machines.shut_down, instance, terminate=terminate)
        return result

    # ------------------------------------------------------------------ Run Command
    def send_command(self, original: Callable[..., Any], backend: Any, *args: Any, **kwargs: Any) -> Command:
        requested = list(kwargs.get("instance_ids") or [])
        command: Command = original(backend, *args, **kwargs)
        if not kwargs.get("targets"):
            # moto adds every instance in the account when a command has no Targets; AWS runs it on the ids given.
            command.instance_ids = requested
            command.invocations = [i for i in command.invocations if i["InstanceId"] in requested]
            command.target_count = command.completed_count = len(requested)
        text = "\n".join(command.parameters.get("commands", []))
        timeout = float((command.parameters.get("executionTimeout") or ["3600"])[0])
        command.status = "Pending"
        for invocation in command.invocations:
            invocation.update(Status="Pending", StatusDetails="Pending", ResponseCode=-1, ExecutionElapsedTime="PT0S")
            with self._lock:
                self.unseen_invocations.add((command.command_id, invocation["InstanceId"]))
            self.pool.submit(self._execute, command, invocation, text, timeout)
        return command

    def _execute(self, command: Command, invocation: dict[str, Any], text: str, timeout: float) -> None:
        started = time.monotonic()
        online = self.machines.agent_online(invocation["InstanceId"])
        if not online:
            # An agent that is not online never picks the command up.
            time.sleep(_UNDELIVERABLE_AFTER_SECONDS)
            invocation.update(Status="Failed", StatusDetails="Undeliverable", ExecutionEndDateTime=_now())
            self._settle(command)
            return
        invocation.update(Status="InProgress", StatusDetails="InProgress", ExecutionStartDateTime=_now())
        result = self.machines.run(invocation["InstanceId"], text, timeout)
        if result is None:
            status, code, stdout, stderr = "Failed", -1, "", "the host went away while the command ran"
        elif result.timed_out:
            status, code, stdout, stderr = "TimedOut", -1, result.stdout, result.stderr
        else:
            status = "Success" if result.exit_code == 0 else "Failed"
            code, stdout, stderr = result.exit_code, result.stdout, result.stderr
        invocation.update(
            Status=status,
            StatusDetails=status,
            ResponseCode=code,
            StandardOutputContent=stdout,
            StandardErrorContent=stderr,
            ExecutionEndDateTime=_now(),
            ExecutionElapsedTime=f"PT{time.monotonic() - started:.3f}S",
        )
        self._settle(command)

    @staticmethod
    def _settle(command: Command) -> None:
        statuses = {i["Status"] for i in command.invocations}
        if statuses & {"Pending", "InProgress"}:
            return
        command.status = "Success" if statuses == {"Success"} else "Failed"
        command.error_count = sum(1 for i in command.invocations if i["Status"] != "Success")

    def get_command_invocation(
        self, original: Callable[..., Any], backend: Any, command_id: str, instance_id: str, plugin_name: str | None
    ) -> Any:
        with self._lock:
            first_look = (command_id, instance_id) in self.unseen_invocations
            self.unseen_invocations.discard((command_id, instance_id))
        if first_look:
            # AWS sometimes answers this right after SendCommand; callers must retry.
            raise RESTError(
                "InvocationDoesNotExist",
                "An error occurred (InvocationDoesNotExist) when calling the GetCommandInvocation operation",
            )
        return original(backend, command_id, instance_id, plugin_name)

    # ------------------------------------------------------------------ installing
    @contextmanager
    def installed(self) -> Iterator[Emulation]:
        emulation = self
        originals: dict[tuple[type, str], Any] = {}

        def patch(cls: type, name: str, replacement: Callable[..., Any]) -> None:
            original = getattr(cls, name, None)
            originals[(cls, name)] = original

            def method(backend: Any, *args: Any, **kwargs: Any) -> Any:
                return replacement(original, backend, *args, **kwargs)

            setattr(cls, name, method)

        patch(InstanceBackend, "run_instances", self.run_instances)
        patch(InstanceBackend, "terminate_instances", lambda o, b, ids: self._shut_down(o, b, ids, terminate=True))
        patch(InstanceBackend, "stop_instances", lambda o, b, ids: self._shut_down(o, b, ids, terminate=False))
        patch(SimpleSystemManagerBackend, "send_command", self.send_command)
        patch(SimpleSystemManagerBackend, "get_command_invocation", self.get_command_invocation)
        responses = {
            "describe_instance_information": lambda response: emulation._describe_instance_information(response),
            "list_command_invocations": lambda response: emulation._list_command_invocations(response),
        }
        for name, body in responses.items():
            originals[(SimpleSystemManagerResponse, name)] = getattr(SimpleSystemManagerResponse, name, None)
            setattr(SimpleSystemManagerResponse, name, body)
        try:
            yield self
        finally:
            for (cls, name), original in originals.items():
                if original is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self.pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ SSM responses moto lacks
    def _describe_instance_information(self, response: SimpleSystemManagerResponse) -> str:
        wanted: set[str] | None = None
        for item in response._get_param("Filters") or []:
            if item.get("Key") == "InstanceIds":
                wanted = set(item.get("Values", []))
        for item in response._get_param("InstanceInformationFilterList") or []:
            if item.get("key") == "InstanceIds":
                wanted = set(item.get("valueSet", []))
        ec2 = _ec2_backend(response)
        found = []
        for reservation in ec2.reservations.values():
            for instance in reservation.instances:
                if wanted is not None and instance.id not in wanted:
                    continue
                online = self.machines.agent_online(instance.id)
                if online is None:
                    continue  # the agent never registered
                found.append(
                    {
                        "InstanceId": instance.id,
                        "PingStatus": "Online" if online else "ConnectionLost",
                        "LastPingDateTime": time.time(),
                        "AgentVersion": "3.3.0.0",
                        "IsLatestVersion": True,
                        "PlatformType": "Linux",
                        "PlatformName": "Amazon Linux",
                        "PlatformVersion": "2023",
                        "ResourceType": "EC2Instance",
                        "IPAddress": instance.private_ip,
                        "ComputerName": f"ip-{instance.private_ip.replace('.', '-')}.ec2.internal",
                    }
                )

        return json.dumps({"InstanceInformationList": found})

    def _list_command_invocations(self, response: SimpleSystemManagerResponse) -> str:

        backend = response.ssm_backend
        command_id = response._get_param("CommandId")
        instance_id = response._get_param("InstanceId")
        details = bool(response._get_param("Details"))
        commands = backend.list_commands(command_id, instance_id)
        listed = []
        for command in commands:
            for invocation in command.invocations:
                if instance_id and invocation["InstanceId"] != instance_id:
                    continue
                entry = {
                    "CommandId": command.command_id,
                    "InstanceId": invocation["InstanceId"],
                    "Comment": command.comment,
                    "DocumentName": command.document_name,
                    "Status": invocation["Status"],
                    "StatusDetails": invocation["StatusDetails"],
                    "RequestedDateTime": command.requested_date_time.timestamp(),
                }
                if details:
                    entry["CommandPlugins"] = [
                        {
                            "Name": "aws:runShellScript",
                            "Status": invocation["Status"],
                            "StatusDetails": invocation["StatusDetails"],
                            "ResponseCode": invocation["ResponseCode"],
                            "Output": invocation.get("StandardOutputContent", "")[:2500],
                        }
                    ]
                listed.append(entry)
        return json.dumps({"CommandInvocations": listed})


def _ec2_backend(response: Any) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[response.current_account][response.region]
