"""Lambda, in process: every `lambda.Invoke` made through boto3's default session is answered by the
function's real handler, loaded from its CodeUri as a module of its own.

Errors come back as Lambda reports them (a 200 with `X-Amz-Function-Error: Unhandled` and a body of
`{"errorMessage", "errorType", "stackTrace"}`), so the state machines' Retry and Catch fields see
exactly what they would see on AWS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from localcloud.template import Function

_INVOKE_PATH = re.compile(r"/functions/([^/]+)/invocations")
FAULTS_VARIABLE = "SWARMWARDEN_FAULTS"


class InjectedFault(Exception):
    """Raised instead of running a handler, by the fault-injection switch."""


@dataclass
class Fault:
    """`FUNCTION[.ACTION][:ERROR_TYPE]=COUNT`: the next COUNT invocations fail with ERROR_TYPE."""

    function: str
    action: str | None
    error_type: str
    remaining: int

    @classmethod
    def parse(cls, text: str) -> Fault:
        target, _, count = text.partition("=")
        target, _, error_type = target.partition(":")
        function, _, action = target.partition(".")
        if not function or not count.isdigit():
            raise ValueError(f"fault {text!r}: expected FUNCTION[.ACTION][:ERROR_TYPE]=COUNT")
        return cls(function, action or None, error_type or "InjectedFault", int(count))

    def matches(self, function: Function, payload: Any) -> bool:
        action = payload.get("action") if isinstance(payload, dict) else None
        return (
            self.remaining > 0
            and self.function in {function.logical_id, function.name}
            and self.action in {None, action}
        )


def faults_from(spec: str) -> list[Fault]:
    return [Fault.parse(part.strip()) for part in spec.split(",") if part.strip()]


@dataclass(frozen=True)
class LambdaContext:
    """What the Lambda runtime hands a handler."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One served invoke: what the bench counts and what the secrets scan reads."""

    function: str
    action: str | None
    request_id: str
    started: float
    duration_seconds: float
    memory_mb: int
    payload: str
    response: str
    error_type: str | None


@dataclass
class LambdaRuntime:
    functions: list[Function]
    faults: list[Fault] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._by_name = {f.name: f for f in self.functions} | {f.arn: f for f in self.functions}
        self._by_name |= {f.logical_id: f for f in self.functions}

    @staticmethod
    def shared_environment(functions: list[Function]) -> dict[str, str]:
        """One process serves every function, so their variables must agree where they overlap."""
        merged: dict[str, str] = {}
        for function in functions:
            for key, value in function.environment.items():
                if merged.setdefault(key, value) != value:
                    raise ValueError(f"functions disagree on {key}: the local cloud runs them in one process")
        return merged

    def function(self, name_or_arn: str) -> Function:
        try:
            return self._by_name[name_or_arn.removesuffix(":$LATEST")]
        except KeyError:
            raise KeyError(f"no function {name_or_arn} in the template") from None

    def _handler(self, function: Function) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = function.handler.rpartition(".")
        with self._lock:
            module = self._modules.get(function.logical_id)
            if module is None:
                path = function.code_dir / f"{module_name.replace('.', '/')}.py"
                spec = importlib.util.spec_from_file_location(f"lambda_{function.logical_id}", path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._modules[function.logical_id] = module
        handler: Callable[[Any, Any], Any] = getattr(module, attribute)
        return handler

    def _take_fault(self, function: Function, payload: Any) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(function, payload):
                    fault.remaining -= 1
                    return fault
        return None

    def invoke(self, name_or_arn: str, payload: Any) -> tuple[Any, str | None]:
        """Runs the handler; returns (result or error body, errorType or None)."""
        function = self.function(name_or_arn)
        request_id = str(uuid.uuid4())
        context = LambdaContext(
            function_name=function.name,
            invoked_function_arn=function.arn,
            memory_limit_in_mb=function.memory_mb,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{function.name}",
            log_stream_name=f"local/{request_id}",
            deadline=time.monotonic() + function.timeout_seconds,
        )
        started = time.monotonic()
        error_type: str | None = None
        fault = self._take_fault(function, payload)
        try:
            if fault is not None:
                # Reported exactly as if the handler had raised an exception of that class.
                raise RuntimeError(f"injected fault in {function.logical_id} ({fault.remaining} left)")
            result: Any = self._handler(function)(payload, context)
        except Exception as error:
            error_type = fault.error_type if fault is not None else type(error).__name__
            result = {
                "errorMessage": str(error),
                "errorType": error_type,
                "stackTrace": traceback.format_tb(error.__traceback__),
            }
        elapsed = time.monotonic() - started
        if elapsed > function.timeout_seconds:
            error_type = "Sandbox.Timedout"
            result = {
                "errorMessage": f"Task timed out after {function.timeout_seconds:.2f} seconds",
                "errorType": error_type,
            }
        record = Invocation(
            function=function.logical_id,
            action=payload.get("action") if isinstance(payload, dict) else None,
            request_id=request_id,
            started=started,
            duration_seconds=elapsed,
            memory_mb=function.memory_mb,
            payload=json.dumps(payload, default=str),
            response=json.dumps(result, default=str),
            error_type=error_type,
        )
        with self._lock:
            self.invocations.append(record)
        return result, error_type

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        match = _INVOKE_PATH.search(request.url)
        if match is None:
            return None
        body: Any = request.body
        if hasattr(body, "read"):
            body = body.read()
        raw = body.decode() if isinstance(body, bytes | bytearray) else (body or "")
        result, error_type = self.invoke(unquote(match.group(1)), json.loads(raw) if raw else {})
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return AWSResponse(request.url, 200, headers, RawBody(json.dumps(result).encode()))  # type: ignore[arg-type]

    @contextmanager
    def installed(self, environment: Mapping[str, str]) -> Iterator[LambdaRuntime]:
        """Serves invokes while inside; the functions' shared environment is set for the duration."""
        saved = dict(os.environ)
        os.environ.update(self.shared_environment(self.functions) | dict(environment))
        try:
            with answering_invokes(self._before_send):
                yield self
        finally:
            os.environ.clear()
            os.environ.update(saved)


@contextmanager
def answering_invokes(handler: Callable[..., Any]) -> Iterator[None]:
    """`handler` answers every `lambda.Invoke` made through boto3's default session (where moto's
    engine makes its clients) before the request is sent, while inside."""
    events = boto3._get_default_session().events
    events.register_first("before-send.lambda.Invoke", handler)
    try:
        yield
    finally:
        events.unregister("before-send.lambda.Invoke", handler)


class RawBody:
    """The part of urllib3's response that botocore reads a body from (whole, or as a stream)."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._offset = 0

    def read(self, amt: int | None = None, **_: Any) -> bytes:
        end = len(self._content) if amt is None else self._offset + amt
        chunk = self._content[self._offset : end]
        self._offset += len(chunk)
        return chunk

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.read()
