"""Run an ASL file in moto's ASL engine, with every Lambda task answered by a stub.

Test-only. Use it inside `mock_aws(config=MOTO_CONFIG)`:

    stubs = LambdaStubs()
    stubs.on("network", "ensure_network", {"vpc_id": "vpc-1", ...})
    stubs.on("hosts", "launch", LambdaError("TransientError", "throttled"), launch_result)
    with stubs.installed():
        runner = AslRunner(boto3.client("stepfunctions", region_name=REGION))
        arn = runner.create("provision", STATEMACHINES / "provision.asl.json")
        execution = runner.run(arn, {"spec": ..., "poll": ...})
    assert execution.entered_states()[:2] == ["EnsureNetwork", "EnsureEcsCluster"]

How it works: moto's engine invokes Lambda through a fresh `boto3.client("lambda")`, which is
created from boto3's default session, so a handler registered first on that session's
`before-send.lambda.Invoke` answers the request before moto's own Lambda backend sees it. A function
error is a 200 response with `X-Amz-Function-Error: Unhandled` and a body of
`{"errorMessage", "errorType"}`: the engine turns `errorType` into the error that Retry and Catch
match.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from localcloud.lambdas import RawBody, answering_invokes

REGION = "us-east-1"
ACCOUNT = "123456789012"
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/swarmwarden-statemachine"

# DefinitionSubstitutions key -> the short name tests use for that function.
FUNCTIONS: dict[str, str] = {
    "NetworkFunctionArn": "network",
    "HostsFunctionArn": "hosts",
    "SwarmFunctionArn": "swarm",
    "ClusterStateFunctionArn": "cluster_state",
    "CustomResourceFunctionArn": "custom_resource",
    "ScaleFunctionArn": "scale",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def function_arn(short_name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{short_name}"


def default_substitutions() -> dict[str, str]:
    return {key: function_arn(name) for key, name in FUNCTIONS.items()}


def render_definition(path: Path, substitutions: Mapping[str, str] | None = None) -> str:
    """The ASL text with `${Name}` replaced, as CloudFormation's DefinitionSubstitutions would."""
    subs = dict(default_substitutions() if substitutions is None else substitutions)
    text = path.read_text()
    unknown = sorted(set(PLACEHOLDER.findall(text)) - subs.keys())
    if unknown:
        raise ValueError(f"{path.name}: no substitution for {unknown}")
    return PLACEHOLDER.sub(lambda m: subs[m.group(1)], text)


# ---------------------------------------------------------------- Lambda stubs


@dataclass(frozen=True)
class LambdaError:
    """A function error: the handler raised `error_type(message)`."""

    error_type: str
    message: str = "stubbed failure"


# What a stub answers: a result (any JSON value), a LambdaError, or a callable of the payload that
# returns either. A callable that raises answers a function error whose errorType is the exception's
# class name, as Lambda's Python runtime does: so a real handler can stand in for a stub.
Outcome = LambdaError | Callable[[dict[str, Any]], Any] | Any


@dataclass(frozen=True)
class Call:
    function: str
    action: str
    payload: dict[str, Any]
    result: Any = None  # what the stub answered; None when it answered an error
    error: LambdaError | None = None


@dataclass
class LambdaStubs:
    """A per-test table of stub behaviours keyed by (function short name, action).

    `on(fn, action, a, b, c)` answers a, then b, then c, then c again for every further call.
    Every call is recorded in `calls`, in the order the engine made them.
    An unstubbed (function, action) answers an `InvalidRequest` error naming it, so a test that
    forgot a stub fails loudly through the state machine's own Catch.
    """

    calls: list[Call] = field(default_factory=list)
    _table: dict[tuple[str, str], list[Outcome]] = field(default_factory=dict)
    _served: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, function: str, action: str, *outcomes: Outcome) -> LambdaStubs:
        if not outcomes:
            raise ValueError("give at least one outcome")
        with self._lock:
            self._table[(function, action)] = list(outcomes)
            self._served[(function, action)] = 0
        return self

    def calls_to(self, function: str, action: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.function == function and action in (None, c.action)]

    def actions(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(c.function, c.action) for c in self.calls]

    def _next_outcome(self, function: str, action: str) -> Outcome:
        key = (function, action)
        outcomes = self._table.get(key)
        if outcomes is None:
            return LambdaError("InvalidRequest", f"no stub for {function}/{action}")
        index = min(self._served[key], len(outcomes) - 1)
        self._served[key] += 1
        return outcomes[index]

    def answer(self, function: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        action = str(payload.get("action", ""))
        with self._lock:
            outcome = self._next_outcome(function, action)
        if callable(outcome) and not isinstance(outcome, LambdaError):
            try:
                outcome = outcome(payload)
            except Exception as error:  # what Lambda's Python runtime reports for an unhandled exception
                outcome = LambdaError(type(error).__name__, str(error))
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if isinstance(outcome, LambdaError):
            call = Call(function, action, payload, error=outcome)
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = json.dumps({"errorMessage": outcome.message, "errorType": outcome.error_type, "stackTrace": []})
        else:
            call = Call(function, action, payload, result=outcome)
            body = json.dumps(outcome)
        with self._lock:
            self.calls.append(call)
        return 200, headers, body.encode()

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        match = re.search(r"/functions/([^/]+)/invocations", request.url)
        if match is None:
            return None
        name = unquote(match.group(1))
        function = name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
        body: Any = request.body
        if hasattr(body, "read"):
            body = body.read()
        raw = body.decode() if isinstance(body, bytes | bytearray) else (body or "")
        payload = json.loads(raw) if raw else {}
        status, headers, content = self.answer(function, payload)
        return AWSResponse(request.url, status, headers, RawBody(content))  # type: ignore[arg-type]

    @contextmanager
    def installed(self) -> Iterator[LambdaStubs]:
        """Answer `lambda.Invoke` on boto3's default session (where moto's engine makes its clients)."""
        with answering_invokes(self._before_send):
            yield self


# ---------------------------------------------------------------- executions


@dataclass(frozen=True)
class Execution:
    arn: str
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def entered_states(self) -> list[str]:
        """Names of the states entered, in order (Map iterations' states included)."""
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if e["type"].endswith("StateEntered")]

    def top_level_states(self, definition: Mapping[str, Any]) -> list[str]:
        """Entered states that belong to the top level of `definition` (no Map iteration states)."""
        top = set(definition["States"])
        return [name for name in self.entered_states() if name in top]

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.history if e["type"] == event_type]

    def describe(self) -> str:
        lines = [f"{self.name}: {self.status} error={self.error!r} cause={self.cause!r}"]
        for e in self.history:
            details = {k: v for k, v in e.items() if k.endswith("Details")}
            lines.append(f"  {e['id']:>3} {e['type']} {json.dumps(details, default=str)[:300]}")
        return "\n".join(lines)


class AslRunner:
    """Creates state machines from ASL files in moto and runs them to the end."""

    def __init__(self, sfn: Any, substitutions: Mapping[str, str] | None = None) -> None:
        self.sfn = sfn
        self.substitutions = substitutions

    def create(self, name: str, asl_path: Path, machine_type: str = "STANDARD") -> str:
        response = self.sfn.create_state_machine(
            name=name,
            definition=render_definition(asl_path, self.substitutions),
            roleArn=ROLE_ARN,
            type=machine_type,
        )
        return str(response["stateMachineArn"])

    def start(self, state_machine_arn: str, execution_input: Any, name: str | None = None) -> str:
        response = self.sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name or f"run-{uuid.uuid4().hex[:12]}",
            input=json.dumps(execution_input),
        )
        return str(response["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 60.0) -> Execution:
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return self._execution(described)
            if time.monotonic() > deadline:
                snapshot = self._execution(described)
                raise TimeoutError(f"still RUNNING after {timeout:.0f} s\n{snapshot.describe()}")
            time.sleep(0.1)

    def run(
        self, state_machine_arn: str, execution_input: Any, name: str | None = None, timeout: float = 60.0
    ) -> Execution:
        return self.wait(self.start(state_machine_arn, execution_input, name), timeout)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def _execution(self, described: Mapping[str, Any]) -> Execution:
        output = described.get("output")
        return Execution(
            arn=described["executionArn"],
            name=described["name"],
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            history=self.history(described["executionArn"]),
        )
