"""Control-plane cost per operation: counted in the local cloud, priced with AWS's published prices.

One local cloud (prefix `swbc`, VPC 10.131.0.0/16, 3 managers + 2 workers, the template's defaults)
runs, in order: provision (`up()`), scale-out by one worker and scale-in by one worker (PUT
/cluster/capacity on the HTTP API), the repair of one killed worker, then the scheduled reconcile
fired a few times on the healthy idle cluster. Each operation is measured from its trigger until the
cloud is quiet again (no execution running, no new invocation for a few seconds), and counts:

- Lambda invocations and billed GB-seconds: each invocation's duration rounded up to 1 ms, times the
  function's MemorySize in the template (`LambdaRuntime.invocations`);
- Step Functions state transitions of every execution in the window (`localcloud.metering.transitions`);
- AWS API calls by who made them, service and operation (`localcloud.metering.Meter`, at the moto
  server): the functions, the state machines' SDK integrations, the hosts' AWS CLI;
- log bytes (the functions' logs, their EMF lines, Lambda's START/END/REPORT lines, the state
  machines' execution-history log events) and the custom metrics the EMF publishes.

The idle month is the median reconcile run times the runs a month (ReconcileSchedule), plus every
fixed monthly cost the template creates. Prices are one table (PRICES), dated and with their URLs.

Run as root: `python -m bench --only cost [--quick]`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import statistics
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Options, Report, commit, machine, new_figure, now_iso, save_figure, wait_for, write_json

NAME = "cost"
PREFIX = "swbc"
VPC = ipaddress.IPv4Network("10.131.0.0/16")
MANAGERS, WORKERS = 3, 2
UP_TIMEOUT = OPERATION_TIMEOUT = 300.0
# The cloud counts as quiet once no execution runs and no invocation has completed for this long.
QUIET_SECONDS = 4.0
HOURS_PER_MONTH = 730  # AWS's pricing pages use 730 hours a month
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GOALS = {"idle month": 1.00, "repair": 0.01}
# What the local cloud cannot show, priced as assumptions: on AWS a wait loop (Wait, check, Choice, Pass)
# polls every PollIntervalSeconds=15 while instances boot and register with SSM (a minute or more,
# where local hosts boot in about a second), and Lambda bills a cold start's INIT phase.
WAIT_ROUND = {"state transitions": 4, "lambda requests": 1, "lambda GB-s (arm64)": 0.25 * 1.0}
AWS_EXTRA_WAIT_ROUNDS = 8  # two minutes more of waiting at 15 s
ASSUMED_INIT_SECONDS = 1.0

# ------------------------------------------------------------------------------------------ prices
PRICES_DATE = "2026-11-27"
REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: float  # per unit
    unit: str
    url: str
    free_per_month: float = 0.0  # the always-free allowance, in units


_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_SFN = "https://aws.amazon.com/step-functions/pricing/"
_CW = "https://aws.amazon.com/cloudwatch/pricing/"
_DDB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_EC2 = "https://aws.amazon.com/ec2/pricing/on-demand/"
PRICES: dict[str, Price] = {
    "lambda requests": Price(0.20 / 1e6, "request", _LAMBDA, 1_000_000),
    "lambda GB-s (arm64)": Price(0.0000133334, "GB-second", _LAMBDA, 400_000),
    "state transitions": Price(0.025 / 1000, "transition", _SFN, 4_000),
    "DynamoDB reads": Price(0.125 / 1e6, "read request unit", _DDB),
    "DynamoDB writes": Price(0.625 / 1e6, "write request unit", _DDB),
    "DynamoDB storage": Price(0.25, "GB-month", _DDB, 25),
    "DynamoDB PITR": Price(0.20, "GB-month", _DDB),
    "log ingestion": Price(0.50, "GB", _CW, 5),
    "log storage": Price(0.03, "GB-month", _CW),
    "custom metrics": Price(0.30, "metric-month (prorated hourly)", _CW, 10),
    "alarms": Price(0.10, "standard-resolution alarm-month", _CW, 10),
    "X-Ray traces": Price(5.00 / 1e6, "trace recorded", "https://aws.amazon.com/xray/pricing/", 100_000),
    "KMS requests": Price(0.03 / 10_000, "request", "https://aws.amazon.com/kms/pricing/", 20_000),
    "HTTP API requests": Price(1.00 / 1e6, "request", "https://aws.amazon.com/api-gateway/pricing/"),
    # The always-on controller.
    "t4g.nano": Price(0.0042, "instance-hour", _EC2),
    "t3.micro": Price(0.0104, "instance-hour", _EC2),
    "gp3": Price(0.08, "GB-month", "https://aws.amazon.com/ebs/pricing/"),
    "public IPv4": Price(0.005, "address-hour", "https://aws.amazon.com/vpc/pricing/"),
}
# Billed nothing, and why (each checked on the same date).
FREE = {
    "EC2, ECS, STS, IAM API calls": "no charge for the API calls themselves",
    "SSM Run Command on EC2 instances": "no additional charge (https://aws.amazon.com/systems-manager/pricing/)",
    "Parameter Store, standard tier and throughput": "no charge (https://aws.amazon.com/systems-manager/pricing/)",
    "EventBridge schedule rule and EC2 state-change events": "AWS service events and rule schedules are free "
    "(https://aws.amazon.com/eventbridge/pricing/)",
    "KMS key aws/ssm (AWS managed)": "no monthly fee; requests priced above (https://aws.amazon.com/kms/pricing/)",
    "SNS topic, SQS dead-letter queue": "billed per request or notification; none while the cluster is healthy",
    "Step Functions invoking Lambda": "the invocation is billed as a Lambda request, the state as a transition",
}
# Lambda writes START, END and REPORT (with the X-Ray trace line) to CloudWatch Logs for each invocation.
PLATFORM_LOG_BYTES = 400
DDB_READS = {"GetItem": 1, "Query": 1, "Scan": 1, "BatchGetItem": 1, "TransactGetItems": 4}
DDB_WRITES = {"PutItem": 1, "UpdateItem": 1, "DeleteItem": 1, "BatchWriteItem": 1, "TransactWriteItems": 4}
# SecureString parameters: each put and get is one request to KMS.
KMS_CALLS = {("ssm", "PutParameter"), ("ssm", "GetParameter"), ("ssm", "GetParameters")}
GB = 1024**3


# ------------------------------------------------------------------------------------------ counts -> dollars
@dataclass(frozen=True)
class Invoked:
    function: str
    duration_seconds: float
    memory_mb: int


def billed_gb_seconds(invocations: Iterable[Invoked]) -> float:
    """Lambda bills each invocation's duration rounded up to 1 ms, times its configured memory."""
    return sum(math.ceil(i.duration_seconds * 1000) / 1000 * i.memory_mb / 1024 for i in invocations)


@dataclass
class Counts:
    """What one operation did (or one month of fixed resources needs), in billable units."""

    invocations: list[Invoked] = field(default_factory=list)
    transitions: int = 0
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (origin, service, operation)
    log_bytes: float = 0
    metrics: int = 0  # distinct custom metrics published
    traces: int = 0
    http_requests: int = 0


def quantities(counts: Counts, metric_hours: float = 1.0) -> dict[str, float]:
    """Billable quantities per price in PRICES; a metric published within the operation is billed
    for `metric_hours` hours of its month."""
    by_operation: Counter[tuple[str, str]] = Counter()
    for (_who, service, operation), n in counts.calls.items():
        by_operation[(service, operation)] += n
    return {
        "lambda requests": len(counts.invocations),
        "lambda GB-s (arm64)": billed_gb_seconds(counts.invocations),
        "state transitions": counts.transitions,
        "DynamoDB reads": sum(n * DDB_READS.get(op, 0) for (svc, op), n in by_operation.items() if svc == "dynamodb"),
        "DynamoDB writes": sum(n * DDB_WRITES.get(op, 0) for (svc, op), n in by_operation.items() if svc == "dynamodb"),
        "log ingestion": (counts.log_bytes + PLATFORM_LOG_BYTES * len(counts.invocations)) / GB,
        "custom metrics": counts.metrics * metric_hours / HOURS_PER_MONTH,
        "X-Ray traces": counts.traces,
        "KMS requests": sum(n for key, n in by_operation.items() if key in KMS_CALLS),
        "HTTP API requests": counts.http_requests,
    }


def dollars(amounts: Mapping[str, float], *, free_tier: bool = False) -> dict[str, float]:
    """Dollars per price; with `free_tier`, the monthly always-free allowance comes off first
    (only meaningful for a whole month's quantities)."""
    bill = {}
    for name, amount in amounts.items():
        price = PRICES[name]
        billable = max(0.0, amount - price.free_per_month) if free_tier else amount
        bill[name] = billable * price.usd
    return bill


def scaled(amounts: Mapping[str, float], factor: float) -> dict[str, float]:
    return {name: amount * factor for name, amount in amounts.items()}


def combined(*parts: Mapping[str, float]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def runs_per_month(interval_seconds: float) -> float:
    return SECONDS_PER_MONTH / interval_seconds


def controller_month(instance: str, disk_gb: float = 8) -> dict[str, float]:
    """An always-on controller instance: on-demand, a gp3 root volume, one public IPv4 address."""
    return {
        instance: HOURS_PER_MONTH * PRICES[instance].usd,
        "gp3": disk_gb * PRICES["gp3"].usd,
        "public IPv4": HOURS_PER_MONTH * PRICES["public IPv4"].usd,
    }


def fixed_month(
    alarms: int, table_bytes: float, log_retention_days: float, monthly_log_bytes: float
) -> dict[str, float]:
    """The quantities a month of the stack's fixed resources bills: alarms, table storage with PITR,
    and the logs kept (a steady state of `log_retention_days` of ingestion)."""
    return {
        "alarms": alarms,
        "DynamoDB storage": table_bytes / GB,
        "DynamoDB PITR": table_bytes / GB,
        "log storage": monthly_log_bytes * min(1.0, log_retention_days * 86400 / SECONDS_PER_MONTH) / GB,
    }


# ------------------------------------------------------------------------------------------ measuring
def _history_log_bytes(events: Iterable[Mapping[str, Any]]) -> int:
    """What Logging Level ALL with IncludeExecutionData false writes: each history event, without data."""
    size = 0
    for event in events:
        stripped = {k: v for k, v in event.items() if k != "t"}
        for key, details in stripped.items():
            if key.endswith("EventDetails") and isinstance(details, dict):
                stripped[key] = {d: v for d, v in details.items() if d not in {"input", "output", "result"}}
        size += len(json.dumps(stripped, default=str))
    return size


class Operation:
    """Counts one operation on a running cloud: from `begin()` until the cloud is quiet again."""

    def __init__(self, cloud: Any, meter: Any, entry_functions: set[str]) -> None:
        self.cloud = cloud
        self.meter = meter
        self.entry_functions = entry_functions

    def measure(self, action: Callable[[], None], cfn_requests: int = 0) -> dict[str, Any]:
        from localcloud.metering import transitions
        from localcloud.timeline import history

        cloud = self.cloud
        known = {e["executionArn"] for e in cloud.executions()}
        first = len(cloud.runtime.invocations)
        usage = self.meter.usage()
        started = time.monotonic()
        action()
        self._quiet()
        seconds = time.monotonic() - started
        spent = self.meter.usage() - usage
        records = cloud.runtime.invocations[first:]
        executions = [e for e in cloud.executions() if e["executionArn"] not in known]
        states, history_bytes = 0, 0
        for execution in executions:
            events = history(cloud, execution["executionArn"])
            states += transitions(events)
            history_bytes += _history_log_bytes(events)
        invoked = [Invoked(r.function, r.duration_seconds, r.memory_mb) for r in records]
        counts = Counts(
            invocations=invoked,
            transitions=states,
            calls=spent.calls,
            log_bytes=spent.log_bytes + history_bytes,
            metrics=len(spent.metrics),
            # A trace begins where a request enters: an event or API call to a function, or CloudFormation;
            # the executions and invocations it starts join that trace.
            traces=cfn_requests + sum(r.function in self.entry_functions for r in records),
            http_requests=sum(r.function == "ApiFunction" for r in records),
        )
        return {
            "seconds": round(seconds, 3),
            "executions": [{"machine": e["machine"], "name": e["name"], "status": e["status"]} for e in executions],
            "invocations_by_function": dict(Counter(r.function for r in records)),
            "errors": [f"{r.function}: {r.error_type}" for r in records if r.error_type],
            "calls_by_origin": dict(Counter(who for (who, _s, _o) in spent.calls.elements())),
            "calls": {" ".join(k): n for k, n in sorted(spent.calls.items())},
            "metrics_published": sorted(f"{m.namespace}/{m.name}{dict(m.dimensions)}" for m in spent.metrics),
            "log_bytes": {
                "functions": spent.log_bytes,
                "lambda platform": PLATFORM_LOG_BYTES * len(records),
                "state machines": history_bytes,
            },
            "responses": [r.response[:400] for r in records if r.function == "ReconcileFunction"],
            "counts": {
                "invocations": len(invoked),
                "gb_seconds": round(billed_gb_seconds(invoked), 4),
                "transitions": states,
                "api_calls": sum(spent.calls.values()),
                "metrics": counts.metrics,
                "traces": counts.traces,
                "http_requests": counts.http_requests,
            },
            "quantities": quantities(counts),
            "_counts": counts,
        }

    def _quiet(self) -> None:
        cloud = self.cloud
        state = {"n": -1, "since": time.monotonic()}

        def quiet() -> bool:
            n = len(cloud.runtime.invocations)
            if n != state["n"] or any(e["status"] == "RUNNING" for e in cloud.executions()):
                state["n"], state["since"] = n, time.monotonic()
                return False
            return time.monotonic() - state["since"] >= QUIET_SECONDS

        wait_for("the cloud to be quiet", quiet, OPERATION_TIMEOUT, interval=0.5)


def _scale(cloud: Any, api: Any, workers: int) -> None:
    before = {e["executionArn"] for e in cloud.executions()}
    api.request("PUT", "/cluster/capacity", {"managers": MANAGERS, "workers": workers})

    def finished() -> str | None:
        new = [e for e in cloud.executions() if e["executionArn"] not in before and e["machine"].endswith("-scale")]
        return new[0]["status"] if new and new[0]["status"] != "RUNNING" else None

    status = wait_for(f"the scale to {workers} workers", finished, OPERATION_TIMEOUT, interval=0.5)
    if status != "SUCCEEDED":
        raise RuntimeError(f"scale to {workers} workers: {status}")


def _repair_worker(cloud: Any) -> None:
    victim = next(v for v in cloud.nodes(with_swarm=False) if v.role == "worker" and v.state == "running")
    cloud.kill(victim.instance_id)

    def finished() -> str | None:
        runs = [e for e in cloud.executions() if e["name"].endswith(victim.instance_id)]
        return runs[-1]["status"] if runs and runs[-1]["status"] != "RUNNING" else None

    status = wait_for(f"the repair of {victim.instance_id}", finished, OPERATION_TIMEOUT, interval=0.5)
    if status != "SUCCEEDED":
        raise RuntimeError(f"repair of {victim.instance_id}: {status}")


def _reconcile(cloud: Any, rule: Any) -> None:
    """What the schedule does: EventBridge sends its scheduled event to the reconcile function."""
    from localcloud.events import rule_arn, scheduled_event
    from localcloud.template import ACCOUNT

    first = len(cloud.runtime.invocations)
    arn = rule_arn(rule.logical_id, region=REGION, account=ACCOUNT)
    cloud.bus.fire(rule, scheduled_event(arn, region=REGION, account=ACCOUNT))
    wait_for(
        "the reconcile invocation",
        lambda: any(r.function == "ReconcileFunction" for r in cloud.runtime.invocations[first:]),
        OPERATION_TIMEOUT,
        interval=0.2,
    )


def _table_bytes(cloud: Any) -> int:
    """Every table's items, as DynamoDB sizes them (attribute names and values) plus 100 bytes each."""
    ddb = cloud.client("dynamodb")
    total = 0
    for table in ddb.list_tables()["TableNames"]:
        start: dict[str, Any] | None = None
        for _page in range(100):
            page = ddb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
            total += sum(len(json.dumps(item)) + 100 for item in page["Items"])
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    return total


# ------------------------------------------------------------------------------------------ the run
COMPONENTS = {
    "Lambda": ("lambda requests", "lambda GB-s (arm64)"),
    "Step Functions": ("state transitions",),
    "DynamoDB": ("DynamoDB reads", "DynamoDB writes", "DynamoDB storage", "DynamoDB PITR"),
    "CloudWatch Logs": ("log ingestion", "log storage"),
    "CloudWatch metrics + alarms": ("custom metrics", "alarms"),
    "X-Ray": ("X-Ray traces",),
    "KMS": ("KMS requests",),
    "API Gateway": ("HTTP API requests",),
}


def by_component(bill: Mapping[str, float]) -> dict[str, float]:
    return {c: sum(bill.get(n, 0.0) for n in names) for c, names in COMPONENTS.items()}


def _median_amounts(samples: list[Mapping[str, float]]) -> dict[str, float]:
    return {name: statistics.median(s[name] for s in samples) for name in samples[0]}


def summarise(
    operations: dict[str, dict[str, Any]], idle: list[dict[str, Any]], fixed: dict[str, Any]
) -> dict[str, Any]:
    per_operation = {}
    for name, sample in operations.items():
        bill = dollars(sample["quantities"])
        per_operation[name] = {**sample["counts"], "usd": sum(bill.values()), "usd_by_component": by_component(bill)}
    interval = fixed["reconcile_interval_s"]
    runs = runs_per_month(interval)
    # A metric published on every run is billed every hour of the month, so each run carries its share.
    per_run = _median_amounts([quantities(s["_counts"], metric_hours=interval / 3600) for s in idle])
    variable = scaled(per_run, runs)
    month = combined(
        variable,
        fixed_month(fixed["alarms"], fixed["table_bytes"], fixed["log_retention_days"], variable["log ingestion"] * GB),
    )
    idle_bill, idle_free = dollars(month), dollars(month, free_tier=True)
    run_counts = {k: statistics.median(s["counts"][k] for s in idle) for k in idle[0]["counts"]}
    controllers = {name: controller_month(name) for name in ("t4g.nano", "t3.micro")}
    wait_round = sum(dollars(WAIT_ROUND).values())
    init = {"lambda GB-s (arm64)": runs * ASSUMED_INIT_SECONDS * 256 / 1024}
    return {
        "per_operation": per_operation,
        "idle": {
            "reconcile_interval_s": interval,
            "runs_per_month": runs,
            "reconcile_run_median": {**run_counts, "usd": sum(dollars(per_run).values())},
            "month_quantities": month,
            "month_usd": sum(idle_bill.values()),
            "month_usd_by_price": idle_bill,
            "month_usd_by_component": by_component(idle_bill),
            "month_usd_free_tier": sum(idle_free.values()),
            "month_usd_free_tier_by_component": by_component(idle_free),
        },
        "controllers_month_usd": {name: {"total": sum(c.values()), **c} for name, c in controllers.items()},
        "sensitivity": {
            "usd_per_extra_wait_round": wait_round,
            f"repair_usd_with_{AWS_EXTRA_WAIT_ROUNDS}_more_wait_rounds": per_operation["repair (worker)"]["usd"]
            + AWS_EXTRA_WAIT_ROUNDS * wait_round,
            f"idle_month_usd_if_every_reconcile_paid_{ASSUMED_INIT_SECONDS:.0f}_s_init": sum(idle_bill.values())
            + sum(dollars(init).values()),
        },
        "goals": {
            "idle month < $1": sum(idle_bill.values()) < GOALS["idle month"],
            "repair < $0.01": per_operation["repair (worker)"]["usd"] < GOALS["repair"],
        },
    }


def _usd(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def report(summary: dict[str, Any], idle_runs: int, path: Path) -> Report:
    table = [["operation", "invocations", "GB-s", "transitions", "API calls", "$ (no free tier)"]]
    for name, op in summary["per_operation"].items():
        table.append(
            [
                name,
                str(op["invocations"]),
                f"{op['gb_seconds']:.2f}",
                str(op["transitions"]),
                str(op["api_calls"]),
                _usd(op["usd"]),
            ]
        )
    idle = summary["idle"]
    run = idle["reconcile_run_median"]
    table.append(
        [
            f"idle: one scheduled reconcile (median of {idle_runs})",
            f"{run['invocations']:.0f}",
            f"{run['gb_seconds']:.3f}",
            f"{run['transitions']:.0f}",
            f"{run['api_calls']:.0f}",
            _usd(run["usd"]),
        ]
    )
    q = idle["month_quantities"]
    table.append(
        [
            f"idle month ({idle['runs_per_month']:.0f} reconciles + fixed)",
            f"{q['lambda requests']:.0f}",
            f"{q['lambda GB-s (arm64)']:.0f}",
            f"{q['state transitions']:.0f}",
            "",
            _usd(idle["month_usd"]),
        ]
    )
    table.append(["idle month, after the always-free tier", "", "", "", "", _usd(idle["month_usd_free_tier"])])
    for name, controller in summary["controllers_month_usd"].items():
        table.append(
            [f"always-on controller: {name} + 8 GB gp3 + public IPv4, month", "", "", "", "", _usd(controller["total"])]
        )
    parts = ", ".join(f"{c} {_usd(v)}" for c, v in idle["month_usd_by_component"].items() if v >= 0.0005)
    sens = summary["sensitivity"]
    notes = [
        f"idle month by component: {parts}",
        f"on AWS (not seen locally): each further wait-loop round {_usd(sens['usd_per_extra_wait_round'])}; a repair with "
        f"{AWS_EXTRA_WAIT_ROUNDS} more {_usd(sens[f'repair_usd_with_{AWS_EXTRA_WAIT_ROUNDS}_more_wait_rounds'])}; the idle "
        f"month if every reconcile paid {ASSUMED_INIT_SECONDS:.0f} s of INIT "
        f"{_usd(sens[f'idle_month_usd_if_every_reconcile_paid_{ASSUMED_INIT_SECONDS:.0f}_s_init'])}",
        "goals: " + ", ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in summary["goals"].items()),
        f"prices: {REGION}, looked up {PRICES_DATE} (bench/cost.py PRICES); Lambda arm64 at the template's MemorySize; "
        "durations are the local cloud's (no cold starts, local Run Command and moto).",
    ]
    return Report(
        NAME, f"Control-plane cost per operation, {MANAGERS} managers + {WORKERS} workers", table, notes, path
    )


def plot(summary: dict[str, Any], options: Options) -> Path:
    """Left: dollars per operation by component; right: the idle month against an always-on controller."""
    figure, axes = new_figure(12, 4.6)
    axes.remove()
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    colours = dict(
        zip(
            COMPONENTS,
            ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"],
            strict=True,
        )
    )
    rows = {name: op["usd_by_component"] for name, op in summary["per_operation"].items()}
    run = summary["idle"]["reconcile_run_median"]
    names = list(rows)
    for row, name in enumerate(names):
        offset = 0.0
        for component, usd in rows[name].items():
            cents = usd * 100
            left.barh(row, cents, left=offset, color=colours[component], label=component if row == 0 else None)
            offset += cents
        left.text(offset, row, f"  {offset:.3f}¢", va="center", fontsize=8)
    left.axvline(GOALS["repair"] * 100, color="black", linestyle="--", linewidth=1)
    left.text(GOALS["repair"] * 100, len(names) - 0.4, " repair goal 1¢", fontsize=8)
    left.set_yticks(range(len(names)), names)
    left.invert_yaxis()
    left.set_xlabel("US cents per operation (no free tier)")
    left.set_title(f"Per operation (one idle reconcile: {run['usd'] * 100:.4f}¢)", fontsize=10)
    left.legend(fontsize=7, loc="lower right")

    idle = summary["idle"]
    bars = {
        "idle month": idle["month_usd_by_component"],
        "idle month,\nfree tier": idle["month_usd_free_tier_by_component"],
    }
    for col, parts in enumerate(bars.values()):
        bottom = 0.0
        for component, usd in parts.items():
            right.bar(col, usd, bottom=bottom, color=colours[component])
            bottom += usd
        right.text(col, bottom, f"${bottom:.2f}", ha="center", va="bottom", fontsize=8)
    # The controller's parts: the instance, its gp3 volume, its public IPv4 address.
    controller_colours = ["#333333", "#777777", "#bbbbbb"]
    handles = {}
    for col, (name, controller) in enumerate(summary["controllers_month_usd"].items(), start=len(bars)):
        bottom = 0.0
        parts = [(k, v) for k, v in controller.items() if k != "total"]
        for colour, (part, usd) in zip(controller_colours, parts, strict=True):
            handles["instance" if part == name else part] = right.bar(col, usd, bottom=bottom, color=colour)
            bottom += usd
        right.text(col, bottom, f"${bottom:.2f}", ha="center", va="bottom", fontsize=8)
        bars[f"{name}\ncontroller"] = {}
    right.axhline(GOALS["idle month"], color="black", linestyle="--", linewidth=1)
    right.set_xticks(range(len(bars)), list(bars), fontsize=8)
    right.set_ylabel("US dollars per month")
    right.set_title("Idle month vs an always-on controller", fontsize=10)
    right.legend(list(handles.values()), list(handles), fontsize=7, loc="upper left")
    return save_figure(options, NAME, figure)


def entry_functions(template: Any) -> set[str]:
    """Functions an event or an API request invokes directly (where a trace begins)."""
    targets = {t for rule in template.rules() for t in rule.target_arns} | {r.function_arn for r in template.routes()}
    return {f.logical_id for f in template.functions() if f.arn in targets}


def run(options: Options) -> Report:
    from bench.provision import free_cidr
    from localcloud.apiclient import Api
    from localcloud.cloud import CloudConfig, LocalCloud
    from localcloud.events import parse_schedule
    from localcloud.hosts import cleanup_all, leftovers, prefix_lock
    from localcloud.metering import Meter

    idle_runs = options.repetitions(5, 3)
    info = {"date": now_iso(), **commit(), "machine": machine()}
    operations: dict[str, dict[str, Any]] = {}
    idle: list[dict[str, Any]] = []
    with prefix_lock(PREFIX):
        free_cidr([VPC])  # another run holds this range: refuse rather than overlap
        parameters = {"ManagerCount": str(MANAGERS), "WorkerCount": str(WORKERS), "VpcCidr": str(VPC)}
        cloud = LocalCloud(CloudConfig(prefix=PREFIX, parameters=parameters))
        try:
            cloud.start()
            meter = Meter()
            with meter.installed(cloud.state_dir / "lambda.log"):
                operation = Operation(cloud, meter, entry_functions(cloud.template))

                def measure(name: str, action: Callable[[], Any], cfn_requests: int = 0) -> None:
                    operations[name] = operation.measure(action, cfn_requests)
                    sample = operations[name]
                    print(f"[cost] {name}: {sample['counts']} in {sample['seconds']:.0f} s", flush=True)

                measure("provision", lambda: cloud.up(timeout=UP_TIMEOUT), cfn_requests=1)
                api = Api.local(cloud.api_url, REGION, timeout=60)
                measure("scale-out by 1", lambda: _scale(cloud, api, WORKERS + 1))
                measure("scale-in by 1", lambda: _scale(cloud, api, WORKERS))
                measure("repair (worker)", lambda: _repair_worker(cloud))
                rule = next(r for r in cloud.template.rules() if r.schedule is not None)
                for n in range(idle_runs):
                    idle.append(operation.measure(lambda: _reconcile(cloud, rule)))
                    print(f"[cost] idle reconcile {n + 1}/{idle_runs}: {idle[-1]['counts']}", flush=True)
                log_groups = cloud.template.of_type("AWS::Logs::LogGroup").values()
                fixed = {
                    "alarms": len(cloud.template.of_type("AWS::CloudWatch::Alarm")),
                    "table_bytes": _table_bytes(cloud),
                    "log_retention_days": max(int(g["Properties"].get("RetentionInDays", 30)) for g in log_groups),
                    "reconcile_interval_s": parse_schedule(str(rule.schedule)),
                    "reconcile_schedule": rule.schedule,
                }
        except Exception:
            traceback.print_exc()
            raise
        finally:
            cloud.close()
            cleanup_all(PREFIX)
        left = leftovers(PREFIX)
    summary = summarise(operations, idle, fixed)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "prefix": PREFIX,
            "vpc_cidr": str(VPC),
            "managers": MANAGERS,
            "workers": WORKERS,
            "idle_reconcile_runs": idle_runs,
            "quiet_seconds": QUIET_SECONDS,
            "fixed": fixed,
            "platform_log_bytes_per_invocation": PLATFORM_LOG_BYTES,
        },
        "prices": {
            "date": PRICES_DATE,
            "region": REGION,
            "items": {k: asdict(v) for k, v in PRICES.items()},
            "free": FREE,
        },
        "summary": summary,
        "leftovers": left,
        "operations": {k: {f: v for f, v in s.items() if not f.startswith("_")} for k, s in operations.items()},
        "idle_runs": [{f: v for f, v in s.items() if not f.startswith("_")} for s in idle],
    }
    path = write_json(options, NAME, data)
    plot(summary, options)
    return report(summary, idle_runs, path)
