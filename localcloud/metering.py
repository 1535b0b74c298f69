"""What the control plane would be billed for, counted while the local cloud runs.

- **AWS API calls** by service and operation, counted where every caller meets: the moto server.
  Each request is put down to who made it, from its headers: the hosts' AWS CLI (`aws-cli/` in the
  User-Agent), moto's ASL engine (its SDK integrations sign with the access key `ak`), or the
  functions (everything else). The local cloud's own clients (`LocalCloud.client`) carry
  `app/localcloud` in their User-Agent and are not counted: they stand in for AWS itself.
- **EMF metrics** the functions print (each distinct namespace + name + dimensions is a custom metric).
- **Log bytes**: the functions' Powertools log file plus the EMF lines, as CloudWatch Logs would ingest them.

Lambda invocations (function, duration, memory) are recorded by the runtime (`LambdaRuntime.invocations`);
state transitions are counted from an execution's history (`transitions`).
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

# The local cloud's own boto3 clients say so in their User-Agent (`app/localcloud`).
LOCAL_CLOUD_APP_ID = "localcloud"
# moto's ASL engine signs its SDK-integration calls with this access key (moto.stepfunctions.parser).
_ASL_ENGINE_ACCESS_KEY = "ak"


class Origin(StrEnum):
    FUNCTIONS = "functions"
    HOSTS = "hosts"
    STATE_MACHINES = "state machines"


def origin(headers: Mapping[str, str]) -> Origin | None:
    """Who made a request to the moto server; None for the local cloud itself (not billed)."""
    agent = headers.get("User-Agent", "")
    if f"app/{LOCAL_CLOUD_APP_ID}" in agent:
        return None
    if "aws-cli/" in agent:
        return Origin.HOSTS
    if f"Credential={_ASL_ENGINE_ACCESS_KEY}/" in headers.get("Authorization", ""):
        return Origin.STATE_MACHINES
    return Origin.FUNCTIONS


@dataclass(frozen=True, order=True)
class MetricKey:
    """One CloudWatch custom metric: billed per month (prorated by the hour) once published."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]


def emf_metrics(line: str) -> list[MetricKey]:
    """The metrics one line of EMF (CloudWatch embedded metric format) publishes; [] for any other line."""
    try:
        document = json.loads(line)
    except ValueError:
        return []
    meta = document.get("_aws") if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        return []
    found = []
    for directive in meta.get("CloudWatchMetrics", []):
        for dimension_set in directive.get("Dimensions", []) or [[]]:
            dimensions = tuple(sorted((d, str(document.get(d, ""))) for d in dimension_set))
            for metric in directive.get("Metrics", []):
                found.append(MetricKey(directive.get("Namespace", ""), metric["Name"], dimensions))
    return found


def transitions(events: Iterable[Mapping[str, Any]]) -> int:
    """State transitions as Standard workflows are billed for them: every state entered (in a Map
    iteration or a Parallel branch too), plus every retry of a task (an attempt beyond the first)."""
    entered = task_entered = scheduled = 0
    for event in events:
        kind = str(event["type"])
        if kind.endswith("StateEntered"):
            entered += 1
            task_entered += kind == "TaskStateEntered"
        elif kind in {"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"}:
            scheduled += 1
    return entered + max(0, scheduled - task_entered)


@dataclass(frozen=True)
class Usage:
    """Counts at one moment; the difference of two is what happened in between."""

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (origin, service, operation)
    metrics: Counter[MetricKey] = field(default_factory=Counter)  # publishes of each metric
    log_bytes: int = 0

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(self.calls - earlier.calls, self.metrics - earlier.metrics, self.log_bytes - earlier.log_bytes)


class _EmfTee(io.TextIOBase):
    """Passes everything through to the real stdout and counts the EMF lines among it."""

    def __init__(self, meter: Meter, target: TextIO) -> None:
        self._meter = meter
        self._target = target

    def write(self, text: str) -> int:
        for line in text.splitlines():
            keys = emf_metrics(line)
            if keys:
                self._meter._published(keys, len(line.encode()) + 1)
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()


class Meter:
    """Counts while `installed`; `usage()` reads the counts so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._metrics: Counter[MetricKey] = Counter()
        self._emf_bytes = 0
        self._log_file: Path | None = None

    def _published(self, keys: list[MetricKey], size: int) -> None:
        with self._lock:
            self._metrics.update(keys)
            self._emf_bytes += size

    def _request(self, headers: Mapping[str, str], service: str, operation: str) -> None:
        who = origin(headers)
        if who is not None:
            with self._lock:
                self._calls[(who.value, service, operation)] += 1

    def usage(self) -> Usage:
        logged = self._log_file.stat().st_size if self._log_file and self._log_file.exists() else 0
        with self._lock:
            return Usage(Counter(self._calls), Counter(self._metrics), logged + self._emf_bytes)

    @contextmanager
    def installed(self, log_file: Path) -> Iterator[Meter]:
        """Counts the moto server's requests and the EMF printed to stdout; `log_file` is where the
        functions' logs go (the local cloud's lambda.log)."""
        from moto.core.responses import BaseResponse

        meter = self
        original = BaseResponse._dispatch

        def dispatch(response: BaseResponse, request: Any, full_url: Any = None, headers: Any = None) -> Any:
            try:
                return original(response, request, full_url, headers)
            finally:
                # A request moto could not parse is not a billable call.
                with suppress(Exception):
                    meter._request(request.headers, response.boto3_service_name, response._get_action())

        self._log_file = log_file
        stdout = sys.stdout
        BaseResponse._dispatch = dispatch  # type: ignore[method-assign,assignment]
        sys.stdout = _EmfTee(self, stdout)
        try:
            yield self
        finally:
            BaseResponse._dispatch = original  # type: ignore[method-assign]
            sys.stdout = stdout
