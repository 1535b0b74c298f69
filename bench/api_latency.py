"""API latency: `GET /cluster` and `PUT /cluster/capacity` against the local cloud, timed client side.

One local cloud (prefix `swbl`, 1 manager + 1 worker, MaxWorkers 2), provisioned once. Every request is
SigV4-signed by `localcloud.apiclient` and timed around the whole round trip: signing, HTTP to the
local API server, its SigV4 verification, the in-process Lambda invoke of ApiFunction and whatever the
route does. Requests are sequential, one at a time, in these mixes:

- **GET /cluster**: the status route; it reads the cluster table and asks a manager for the swarm's
  live state (the `status` host script through SSM Run Command), or reuses the view it got less than
  `SWARM_VIEW_MAX_AGE_SECONDS` ago. Sequential requests mostly reuse it, so the mix is measured
  again with that age set to 0 in the process: the path of a first request, or one after a pause.
- **PUT of the current counts**: a no-op, answered 200 `unchanged`.
- **PUT that starts a scale** (202) between 1 and 2 workers, then PUTs of the same counts while that
  scale runs, refused 409; a few real scales, one after the other, never 200.
- **replays**: the first 202's Idempotency-Key and body again, answered 202 from the idempotency record.

Every PUT carries a fresh Idempotency-Key, as `swarmwarden scale` sends one, except the replays.
The Lambda's own duration (the runtime's invocation record) splits each round trip into the handler and
the rest; a profile of the handler, invoked directly, shows where its time goes (GET /cluster with a
manager asked every time, and the no-op PUT).

Run as root: `python -m bench --only api_latency [--quick]`.
"""

from __future__ import annotations

import io
import json
import profile as pyprofile
import pstats
import statistics
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from swarmwarden.adapters.operations import Operations, OperationStatus
from swarmwarden.api import usecases

from bench.common import REPO, Options, Report, commit, machine, new_figure, now_iso, save_figure, write_json
from localcloud import apiclient
from localcloud.cloud import CloudConfig, LocalCloud
from localcloud.hosts import cleanup_all, leftovers, prefix_lock
from localcloud.runscript import ScriptResult

NAME = "api_latency"
PREFIX = "swbl"
MANAGERS, WORKERS = 1, 1
PARAMETERS = {
    "ManagerCount": str(MANAGERS),
    "WorkerCount": str(WORKERS),
    "MaxWorkers": str(WORKERS + 1),
    "VpcCidr": "10.132.0.0/16",
}
CLUSTER = "swarmwarden"
UP_TIMEOUT = 300.0
REQUEST_TIMEOUT = 60.0
SCALE_TIMEOUT = 180.0
# Per mix: past this many seconds the mix stops short of its request count (and says so).
MIX_BUDGET_SECONDS = 240.0
PROFILED_CALLS = 20
# What the profile lists: our code, botocore's calls, and sleeping.
INTERESTING = ("swarmwarden/", "functions/", "botocore/client.py")
INTERESTING_BUILTINS = {"sleep"}
GET, PUT = "GET /cluster", "PUT /cluster/capacity"
FINAL = {OperationStatus.SUCCEEDED, OperationStatus.FAILED}


@dataclass(frozen=True)
class Sample:
    route: str
    mix: str
    status: int
    seconds: float
    handler_seconds: float | None
    script_seconds: float


class ScriptTimedCloud(LocalCloud):
    """The local cloud, adding up how long host scripts ran (the `status` script, for GET /cluster)."""

    def __init__(self, config: CloudConfig) -> None:
        super().__init__(config)
        self.script_seconds = 0.0

    def run(self, instance_id: str, text: str, timeout: float) -> ScriptResult | None:
        result = super().run(instance_id, text, timeout)
        if result is not None:
            self.script_seconds += result.duration
        return result


class Client:
    """Signed requests, each timed, with ApiFunction's duration for the same request."""

    def __init__(self, cloud: ScriptTimedCloud) -> None:
        self.cloud = cloud
        self.api = apiclient.Api.local(cloud.api_url, cloud.config.region, timeout=REQUEST_TIMEOUT)
        self.samples: list[Sample] = []

    def request(self, route: str, mix: str, body: Any = None, key: str | None = None) -> tuple[int, dict[str, Any]]:
        method, path = route.split(" ", 1)
        headers = {"Idempotency-Key": key} if key else None
        invocations = len(self.cloud.runtime.invocations)
        scripts = self.cloud.script_seconds
        started = time.perf_counter()
        try:
            answer: dict[str, Any] = self.api.request(method, path, body, headers)
            # docs/api.md: a PUT answers 202 with an operation id, 200 `unchanged` without one.
            status = 202 if method == "PUT" and answer.get("operation_id") else 200
        except apiclient.ApiError as error:
            status, answer = error.status or 0, {"error": str(error)}
        elapsed = time.perf_counter() - started
        # Sequential requests: the API's invocation (if any) is the newest since the request began.
        served = [i for i in self.cloud.runtime.invocations[invocations:] if i.function == "ApiFunction"]
        handler = served[-1].duration_seconds if served else None
        scripts = self.cloud.script_seconds - scripts
        self.samples.append(Sample(route, mix, status, round(elapsed, 5), _round(handler), round(scripts, 5)))
        return status, answer


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def _key() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------- the mixes
def gets(client: Client, count: int, mix: str = "status") -> None:
    deadline = time.monotonic() + MIX_BUDGET_SECONDS
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        client.request(GET, mix)


def gets_asking_every_time(client: Client, count: int) -> None:
    """GET /cluster as a first request, or one after a pause, is served: a manager asked every time."""
    with patch.object(usecases, "SWARM_VIEW_MAX_AGE_SECONDS", 0.0):
        gets(client, count, "status, view never reused")


def unchanged_puts(client: Client, count: int) -> None:
    body = {"managers": MANAGERS, "workers": WORKERS}
    deadline = time.monotonic() + MIX_BUDGET_SECONDS
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        client.request(PUT, "current counts", body, _key())


def scales_and_refusals(client: Client, operations: Operations, scales: int, refusals: int) -> tuple[str, Any]:
    """`scales` real scales (1 -> 2 -> 1 workers ...), each followed by PUTs while it runs (409), at most
    `refusals` in all. Returns the first 202's key and body, for the replays."""
    first: tuple[str, Any] | None = None
    sent = 0
    deadline = time.monotonic() + MIX_BUDGET_SECONDS
    for n in range(scales):
        body = {"managers": MANAGERS, "workers": WORKERS + 1 if n % 2 == 0 else WORKERS}
        key = _key()
        status, answer = client.request(PUT, "scale start / refused while it runs", body, key)
        if status != 202:
            raise RuntimeError(f"a scale to {body} did not start: {status} {answer}")
        first = first or (key, body)
        operation_id = answer["operation_id"]
        # The refusals are spread over the scales, so each scale's busy phase is sampled.
        quota = refusals * (n + 1) // scales - sent
        scale_deadline = time.monotonic() + SCALE_TIMEOUT
        while True:
            operation = operations.get(CLUSTER, operation_id)
            if operation is not None and operation.status in FINAL:
                break
            if time.monotonic() > min(scale_deadline, deadline + SCALE_TIMEOUT):
                raise TimeoutError(f"scale {operation_id} still {operation and operation.status}")
            if quota > 0 and time.monotonic() < deadline:
                client.request(PUT, "scale start / refused while it runs", body, _key())
                quota -= 1
                sent += 1
            else:
                time.sleep(0.2)
        if operation.status is not OperationStatus.SUCCEEDED:
            raise RuntimeError(f"scale {operation_id} {operation.status}: {operation.error}")
    if first is None:
        raise RuntimeError("no scale started")
    return first


def replays(client: Client, key: str, body: Any, count: int) -> None:
    deadline = time.monotonic() + MIX_BUDGET_SECONDS
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        client.request(PUT, "replay (same Idempotency-Key)", body, key)


# ---------------------------------------------------------------------------------------- profile
def _event(route: str, body: Any = None, key: str | None = None) -> dict[str, Any]:
    """A payload format 2.0 event for `route`, from the sample in events/ (the handler ignores the auth)."""
    name = "get-cluster" if route == GET else "put-capacity"
    event: dict[str, Any] = json.loads((REPO / "events" / f"http-api-v2-{name}.json").read_text())
    event["headers"].pop("idempotency-key", None)
    if key:
        event["headers"]["idempotency-key"] = key
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def profile(cloud: LocalCloud, route: str, make_event: Callable[[], dict[str, Any]], calls: int) -> dict[str, Any]:
    """A profile of `calls` invokes of ApiFunction from this thread: our functions, AWS calls and sleeps, by
    cumulative time per request. The pure-Python profiler, because it follows one thread; Python 3.13's
    cProfile sees every thread and mixes their stacks up. Its overhead inflates CPU time, not waiting."""
    stats = pstats.Stats(stream=io.StringIO())
    elapsed = 0.0
    statuses = []
    for _ in range(calls):
        event = make_event()
        # A profiler per call (the pure-Python one cannot be entered twice), on the wall clock: waiting counts.
        profiler = pyprofile.Profile(time.perf_counter)
        started = time.perf_counter()
        result, _error = profiler.runcall(cloud.runtime.invoke, "ApiFunction", event)
        elapsed += time.perf_counter() - started
        stats.add(profiler)
        statuses.append(result.get("statusCode"))
    entries = []
    for (filename, line, function), (_cc, calls_n, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = _short(filename)
        if not (where.startswith(INTERESTING) or function in INTERESTING_BUILTINS):
            continue
        entries.append(
            {"function": f"{where}:{line}({function})", "calls": calls_n, "ms_per_request": cumulative / calls * 1000}
        )
    entries.sort(key=lambda e: -e["ms_per_request"])
    return {
        "route": route,
        "calls": calls,
        "statuses": sorted(set(statuses), key=str),
        "ms_per_request": round(elapsed / calls * 1000, 1),
        "top": [e | {"ms_per_request": round(e["ms_per_request"], 2)} for e in entries[:30]],
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/layers/swarmwarden/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ---------------------------------------------------------------------------------------- figures
def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile, linearly interpolated between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(samples: list[Sample]) -> list[dict[str, Any]]:
    """A row per route, mix and status; GET /cluster also split by whether a manager was asked (a host
    script ran) or the function's recent view of the swarm answered."""
    groups: dict[tuple[str, str, int], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.route, sample.mix, sample.status), []).append(sample)
        if sample.route == GET:
            how = "asked a manager" if sample.script_seconds > 0 else "view reused"
            groups.setdefault((sample.route, f"{sample.mix}: {how}", sample.status), []).append(sample)
    return [_row(route, mix, status, group) for (route, mix, status), group in groups.items()]


def _row(route: str, mix: str, status: int, group: list[Sample]) -> dict[str, Any]:
    seconds = [s.seconds for s in group]
    handler = [s.handler_seconds for s in group if s.handler_seconds is not None]
    return {
        "route": route,
        "mix": mix,
        "status": status,
        "n": len(group),
        "p50_ms": _ms(percentile(seconds, 50)),
        "p95_ms": _ms(percentile(seconds, 95)),
        "max_ms": _ms(max(seconds)),
        "mean_ms": _ms(statistics.fmean(seconds)),
        "handler_p50_ms": _ms(percentile(handler, 50)),
        "outside_handler_p50_ms": _ms(percentile([s.seconds - (s.handler_seconds or 0) for s in group], 50)),
        "host_script_p50_ms": _ms(percentile([s.script_seconds for s in group], 50)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def plot(options: Options, samples: list[Sample]) -> Path:
    figure, axes = new_figure(8.0, 4.5)
    groups: dict[str, list[float]] = {}
    for sample in samples:
        groups.setdefault(f"{sample.route} {sample.status} ({sample.mix})", []).append(sample.seconds * 1000)
    for label, values in groups.items():
        ordered = sorted(values)
        fraction = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fraction, where="post", label=f"{label}, n={len(ordered)}")
    axes.set_xscale("log")
    axes.set_xlabel("round trip, client side (ms, log scale)")
    axes.set_ylabel("fraction of requests")
    axes.set_title("API latency against the local cloud (sequential, SigV4-signed)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    return save_figure(options, NAME, figure)


def report(rows: list[dict[str, Any]], path: Path, notes: list[str]) -> Report:
    table = [["route", "outcome", "n", "p50", "p95", "max", "handler p50"]]
    for row in rows:
        table.append(
            [
                row["route"],
                f"{row['status']} {row['mix']}",
                str(row["n"]),
                f"{row['p50_ms']:.1f} ms",
                f"{row['p95_ms']:.1f} ms",
                f"{row['max_ms']:.1f} ms",
                "-" if row["handler_p50_ms"] is None else f"{row['handler_p50_ms']:.1f} ms",
            ]
        )
    return Report(NAME, f"API latency, local cloud, {MANAGERS} manager + {WORKERS} worker", table, notes, path)


# ---------------------------------------------------------------------------------------- the run
def run(options: Options) -> Report:
    count = 50 if options.quick else 200
    scales = options.repetitions(4, 2)
    info = {"date": now_iso(), **commit(), "machine": machine()}
    client: Client | None = None
    profiles: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    error: str | None = None
    with prefix_lock(PREFIX):
        cloud = ScriptTimedCloud(CloudConfig(prefix=PREFIX, parameters=PARAMETERS))
        try:
            began = time.monotonic()
            cloud.start()
            outputs = cloud.up(timeout=UP_TIMEOUT)
            timings["start_and_up_s"] = round(time.monotonic() - began, 2)
            client = Client(cloud)
            operations = Operations(cloud.client("dynamodb"), outputs["ClusterTableName"])
            mixes: list[tuple[str, Callable[[], Any]]] = [
                ("get", lambda: gets(client, count)),
                ("get_asking", lambda: gets_asking_every_time(client, count)),
                ("unchanged", lambda: unchanged_puts(client, count)),
            ]
            for name, mix in mixes:
                began = time.monotonic()
                mix()
                timings[f"{name}_s"] = round(time.monotonic() - began, 2)
            calls = PROFILED_CALLS if not options.quick else 5
            with patch.object(usecases, "SWARM_VIEW_MAX_AGE_SECONDS", 0.0):
                profiles.append(profile(cloud, GET, lambda: _event(GET), calls))
            current = {"managers": MANAGERS, "workers": WORKERS}
            profiles.append(profile(cloud, PUT, lambda: _event(PUT, current, _key()), calls))
            began = time.monotonic()
            key, body = scales_and_refusals(client, operations, scales, count)
            timings["scales_s"] = round(time.monotonic() - began, 2)
            began = time.monotonic()
            replays(client, key, body, count)
            timings["replays_s"] = round(time.monotonic() - began, 2)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
            traceback.print_exc()
        finally:
            cloud.close()
            cleanup_all(PREFIX)
        left = leftovers(PREFIX)
    samples = client.samples if client is not None else []
    rows = summarise(samples)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "prefix": PREFIX,
            "parameters": PARAMETERS,
            "requests_per_mix": count,
            "scales": scales,
            "sequential": True,
            "client": "localcloud.apiclient.Api (SigV4, urllib, a new connection per request)",
        },
        "error": error,
        "timings": timings,
        "summary": rows,
        "profiles": profiles,
        "leftovers": left,
        "samples": [asdict(s) for s in samples],
    }
    path = write_json(options, NAME, data)
    notes = [
        "Client side, sequential: signing + HTTP + SigV4 verification + Lambda invoke + the route's work.",
        "handler p50: ApiFunction's own duration; the rest of the round trip is the local API server and client.",
    ]
    for entry in profiles:
        notes.append(f"profile {entry['route']} ({entry['ms_per_request']:.0f} ms per request under the profiler):")
        notes += [f"  {e['ms_per_request']:8.1f} ms  {e['calls']:5d}  {e['function']}" for e in entry["top"][:12]]
    if samples:
        figure = plot(options, samples)
        notes.append(f"plot: {figure.relative_to(REPO) if figure.is_relative_to(REPO) else figure}")
    result = report(rows, path, notes)
    if error is not None:
        print(result.render())
        raise RuntimeError(f"api_latency failed: {error}")
    return result
