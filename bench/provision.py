"""Provisioning N = 3, 5, 10 and 20 hosts (3 managers, N - 3 workers): the real workflow against a floor
with no workflow at all, at each size.

Both arms run in one process, alternating (W F, F W, W F, ...) so drift on a noisy machine hits both.

- **workflow** (prefix `swbw`): `LocalCloud.up()`, timed from the custom resource's Create request
  to the CloudFormation response, i.e. the custom resource function, the provision state machine
  in moto's ASL engine, the real handlers, Run Command on real hosts, and the report back. `down()`
  (the teardown workflow) is timed separately. The execution history gives the time per state; the
  hosts' boots and every host script run are timed too, to split each state into work and waiting.
- **floor** (prefix `swbf`): the same N hosts (dockerd + image import, as the local cloud boots
  them) started in parallel, then plain `docker swarm init` on one, `docker swarm join` of the
  other managers one at a time (as the workflow does, for Raft) while the workers join in parallel
  (as the workflow does too), until `docker node ls` shows every node Ready. No workflow, no moto,
  no Lambda, no AWS CLI.

Run as root: `python -m bench --only provision [--quick]`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Options,
    Report,
    commit,
    machine,
    median,
    new_figure,
    now_iso,
    ratio,
    save_figure,
    seconds,
    timed,
    wait_for,
    write_json,
)
from localcloud.cloud import LOCAL_PARAMETERS, CloudConfig, LocalCloud
from localcloud.hosts import Host, HostNetwork, cleanup_all, leftovers, prefix_lock
from localcloud.image import build_rootfs, load_image
from localcloud.runscript import ScriptResult
from localcloud.timeline import history

NAME = "provision"
MANAGERS = 3
# Cluster sizes (hosts); the goals: at most 1.5x the floor at GOAL_SIZE, T(20) / T(GOAL_SIZE) at most 2.
SIZES = (3, 5, 10, 20)
GOAL_SIZE = 5
# Repetitions per arm at each size (full run): the goal's size gets the most.
REPETITIONS = {3: 3, 5: 5, 10: 3, 20: 3}
WORKFLOW_PREFIX, FLOOR_PREFIX = "swbw", "swbf"
# Other runs on this machine use the template's 10.42.0.0/16 and more; a bridge refuses an overlapping
# CIDR, so each arm takes the first candidate nothing routes yet.
WORKFLOW_VPCS = [ipaddress.IPv4Network(f"10.{n}.0.0/16") for n in range(201, 211)]
FLOOR_CIDRS = [ipaddress.IPv4Network(f"10.219.{n}.0/24") for n in range(10, 20)]
ADDR_POOL, ADDR_POOL_MASK = "172.20.0.0/16", "24"
UP_TIMEOUT = DOWN_TIMEOUT = 300.0
FLOOR_STEP_TIMEOUT = 120.0
# Consecutive states of the wait loop are reported as one phase.
PHASES = {
    "StartReadinessWait": "wait loop",
    "WaitForHosts": "wait loop",
    "CheckHostsReady": "wait loop",
    "AreHostsReady": "wait loop",
    "ShouldReportSuccess": "report to CloudFormation",
    "ReportSuccess": "report to CloudFormation",
    "Provisioned": "report to CloudFormation",
}
START_PHASE = "custom resource -> execution"
# States whose work is host scripts run through SSM Run Command.
RUN_COMMAND_STATES = ("InitSwarm", "JoinNodes", "VerifySwarm")
# The floor's step that does the same swarm work as each Run Command state.
FLOOR_EQUIVALENT = {
    "InitSwarm": "init",
    "JoinNodes": "join managers (one at a time) and workers (parallel)",
    "VerifySwarm": "all nodes Ready",
}
# A script names itself in `SCRIPT="..."` and in its header comment (`# init: ...`).
_SCRIPT_NAME = re.compile(r'^SCRIPT="([a-z-]+)"|^# ([a-z-]+): ', re.MULTILINE)


# ---------------------------------------------------------------------------------------- workflow arm
@dataclass(frozen=True)
class Span:
    what: str
    instance: str
    start: float
    end: float
    ok: bool = True
    error: str = ""


class TimedCloud(LocalCloud):
    """The local cloud, recording when each host finished booting, each host script, and the response."""

    def __init__(self, config: CloudConfig) -> None:
        super().__init__(config)
        self.boots: list[Span] = []
        self.scripts: list[Span] = []
        self.responded_at: float | None = None

    def boot(self, instance: Any) -> None:
        started = time.time()
        super().boot(instance)
        self.boots.append(Span("boot", str(instance.id), started, time.time(), bool(self.agents.get(instance.id))))

    def run(self, instance_id: str, text: str, timeout: float) -> ScriptResult | None:
        started = time.time()
        result = super().run(instance_id, text, timeout)
        match = _SCRIPT_NAME.search(text)
        ok = result is not None and result.ok
        error = "" if ok else str((result.output or {}).get("error", "no result")) if result else "host gone"
        name = (match.group(1) or match.group(2)) if match else "?"
        self.scripts.append(Span(name, instance_id, started, time.time(), ok, error[:300]))
        return result

    def outputs(self) -> dict[str, str]:
        # up() asks for the outputs right after CloudFormation got its response.
        if self.responded_at is None:
            self.responded_at = time.time()
        return super().outputs()


def _state_name(event: dict[str, Any], suffix: str) -> str | None:
    if not event["type"].endswith(suffix):
        return None
    details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
    return str(details.get("name", "")) or None


def _groups(spans: list[Span]) -> list[tuple[float, float]]:
    """Overlapping spans merged: the intervals during which at least one script ran."""
    merged: list[list[float]] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span.end)
        else:
            merged.append([span.start, span.end])
    return [(a, b) for a, b in merged]


def analyse_workflow(
    events: list[dict[str, Any]],
    top_level: set[str],
    requested_at: float,
    responded_at: float,
    boots: list[Span],
    scripts: list[Span],
) -> dict[str, Any]:
    """Time per phase (they add up to the whole), and each Run Command state split into work and waiting."""
    entered = [(e["t"], name) for e in events if (name := _state_name(e, "StateEntered")) in top_level]
    exited = [(e["t"], name) for e in events if (name := _state_name(e, "StateExited")) in top_level]
    boundaries = [(requested_at, START_PHASE)] + [(t, PHASES.get(name, name)) for t, name in entered]
    phases: dict[str, float] = {}
    for (start, phase), (end, _next) in zip(boundaries, [*boundaries[1:], (responded_at, "")], strict=True):
        phases[phase] = round(phases.get(phase, 0.0) + end - start, 4)

    windows: dict[str, tuple[float, float]] = {}
    for t, name in entered:
        windows.setdefault(name, (t, t))
    for t, name in exited:
        if name in windows:
            windows[name] = (windows[name][0], t)
    stamps = sorted(e["t"] for e in events)
    run_command: dict[str, dict[str, Any]] = {}
    for state in RUN_COMMAND_STATES:
        if state not in windows:
            continue
        start, end = windows[state]
        inside = [s for s in scripts if start <= s.start <= end]
        groups = _groups(inside)
        work = sum(b - a for a, b in groups)
        # After a script ends, the handler notices at its next GetCommandInvocation (1 s apart):
        # the first history event after the script's end is the Lambda returning.
        result_lag = sum(next((t for t in stamps if t >= b), end) - b for _a, b in groups)
        run_command[state] = {
            "duration_s": round(end - start, 4),
            "scripts": sorted({s.what for s in inside}),
            "commands": len(inside),
            "script_time_s": round(work, 4),
            "waiting_s": round(end - start - work, 4),
            "result_lag_s": round(result_lag, 4),
        }
    ready_at = max((b.end for b in boots), default=None)
    init_at = windows.get("InitSwarm", (None, None))[0]
    readiness_lag = round(init_at - ready_at, 4) if ready_at is not None and init_at is not None else None
    return {
        "phases_s": phases,
        "run_command": run_command,
        "readiness_lag_s": readiness_lag,
        "hosts_ready_after_s": round(ready_at - requested_at, 4) if ready_at is not None else None,
        "wait_rounds": sum(1 for _t, name in entered if name == "CheckHostsReady"),
        "task_failures": sum(1 for e in events if e["type"] in {"TaskFailed", "LambdaFunctionFailed"}),
        "poll_quantisation_s": round((readiness_lag or 0.0) + sum(v["result_lag_s"] for v in run_command.values()), 4),
    }


def free_cidr(candidates: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first candidate that overlaps no route on this machine (other runs' bridges included)."""
    routes = json.loads(
        subprocess.run(["ip", "-j", "route", "show"], capture_output=True, text=True, check=True).stdout
    )
    taken = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r.get("dst", "default") != "default"]
    for cidr in candidates:
        if not any(cidr.overlaps(t) for t in taken):
            return cidr
    raise RuntimeError(f"every candidate CIDR is routed already: {[str(c) for c in candidates]}")


def workflow_once(managers: int, workers: int) -> dict[str, Any]:
    sample: dict[str, Any] = {"ok": False}
    vpc = free_cidr(WORKFLOW_VPCS)
    sample["vpc_cidr"] = str(vpc)
    config = CloudConfig(
        prefix=WORKFLOW_PREFIX,
        parameters={"ManagerCount": str(managers), "WorkerCount": str(workers), "VpcCidr": str(vpc)},
    )
    cloud = TimedCloud(config)
    requested_at = responded_at = None
    try:
        with timed(sample, "start_s"):
            cloud.start()
        requested_at = time.time()
        try:
            with timed(sample, "up_call_s"):
                cloud.up(timeout=UP_TIMEOUT)
        finally:
            responded_at = cloud.responded_at or time.time()
            sample["up_s"] = round(responded_at - requested_at, 4)
            _describe_run(cloud, sample, requested_at, responded_at)
        with timed(sample, "down_s"):
            cloud.down(timeout=DOWN_TIMEOUT)
        sample["ok"] = True
    except Exception as error:
        sample["error"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        with timed(sample, "close_s"):
            cloud.close()
    return sample


def _describe_run(cloud: TimedCloud, sample: dict[str, Any], requested_at: float, responded_at: float) -> None:
    """What the provision execution did, state by state; best effort, also after a failed up()."""
    try:
        provision = [e for e in cloud.executions() if e["machine"].endswith("provision")]
        machine_def = next(m for m in cloud.template.state_machines() if m.name.endswith("provision"))
        top_level = set(json.loads(machine_def.definition)["States"])
        if provision:
            events = history(cloud, provision[-1]["executionArn"])
            sample.update(analyse_workflow(events, top_level, requested_at, responded_at, cloud.boots, cloud.scripts))
            sample["failures_seen"] = [
                (e.get("taskFailedEventDetails") or e.get("lambdaFunctionFailedEventDetails") or {}).get("cause", "")[
                    :300
                ]
                for e in events
                if e["type"] in {"TaskFailed", "LambdaFunctionFailed"}
            ]
        sample["nodes"] = [f"{n.role}/{n.swarm}" for n in cloud.nodes()]
    except Exception as error:
        sample["describe_error"] = f"{type(error).__name__}: {error}"
    sample["boots"] = [asdict(b) for b in cloud.boots]
    sample["scripts"] = [asdict(s) for s in cloud.scripts]


# ---------------------------------------------------------------------------------------- floor arm
def _ready_nodes(seed: Host) -> int:
    out = seed.docker("node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}", check=False).stdout
    return sum(1 for line in out.splitlines() if line.startswith("Ready"))


def _join(host: Host, token: str, via: Host) -> None:
    ip = str(host.ip)
    host.docker(
        "swarm", "join", "--token", token, "--advertise-addr", ip, "--listen-addr", f"{ip}:2377", f"{via.ip}:2377",
        timeout=FLOOR_STEP_TIMEOUT,
    )  # fmt: skip


def floor_once(rootfs: Path, managers: int, workers: int) -> dict[str, Any]:
    sample: dict[str, Any] = {"ok": False, "phases_s": {}}
    phases: dict[str, float] = sample["phases_s"]
    try:
        cleanup_all(FLOOR_PREFIX)
        cidr = free_cidr(FLOOR_CIDRS)
        sample["cidr"] = str(cidr)
        network = HostNetwork(FLOOR_PREFIX, cidr)
        network.ensure()
        hosts = [
            Host(network, f"f{i}", ip, f"ip-{str(ip).replace('.', '-')}")
            for i, ip in enumerate(cidr[10 + n] for n in range(managers + workers))
        ]
        seed, others, joiners = hosts[0], hosts[1:managers], hosts[managers:]

        def boot(host: Host) -> None:
            host.start()
            load_image(host, rootfs)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            with timed(phases, "start hosts (parallel)"):
                list(pool.map(boot, hosts))
            with timed(phases, "init"):
                ip = str(seed.ip)
                seed.docker(
                    "swarm", "init", "--advertise-addr", ip, "--listen-addr", f"{ip}:2377",
                    "--default-addr-pool", ADDR_POOL, "--default-addr-pool-mask-length", ADDR_POOL_MASK,
                    timeout=FLOOR_STEP_TIMEOUT,
                )  # fmt: skip
                manager_token = seed.docker("swarm", "join-token", "-q", "manager").stdout.strip()
                worker_token = seed.docker("swarm", "join-token", "-q", "worker").stdout.strip()
            with timed(phases, "join managers (one at a time) and workers (parallel)"):
                worker_joins = [pool.submit(_join, h, worker_token, seed) for h in joiners]
                for host in others:
                    _join(host, manager_token, seed)
                for join in worker_joins:
                    join.result()
            with timed(phases, "all nodes Ready"):
                wait_for("every node Ready", lambda: _ready_nodes(seed) == len(hosts), FLOOR_STEP_TIMEOUT)
        sample["total_s"] = round(time.monotonic() - started, 4)
        sample["ok"] = True
    except Exception as error:
        sample["error"] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        with timed(sample, "cleanup_s"):
            cleanup_all(FLOOR_PREFIX)
    return sample


# ---------------------------------------------------------------------------------------- the run
def _medians(samples: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    names: list[str] = []
    for sample in samples:
        names += [n for n in sample.get(key, {}) if n not in names]
    return {n: median([s[key][n] for s in samples if n in s.get(key, {})]) for n in names}


def summarise(workflow: list[dict[str, Any]], floor: list[dict[str, Any]]) -> dict[str, Any]:
    good_w = [s for s in workflow if s.get("ok")]
    good_f = [s for s in floor if s.get("ok")]
    up = median([s["up_s"] for s in good_w])
    base = median([s["total_s"] for s in good_f])
    quantisation = median([s["poll_quantisation_s"] for s in good_w])
    gap = round(up - base, 4) if up is not None and base is not None else None
    run_command = {
        state: {
            field: median([s["run_command"][state][field] for s in good_w if state in s["run_command"]])
            for field in ("duration_s", "script_time_s", "waiting_s", "result_lag_s")
        }
        for state in RUN_COMMAND_STATES
    }
    floor_phases = _medians(good_f, "phases_s")
    # The host scripts do what the floor's plain docker commands do, plus AWS CLI calls for the tokens.
    script_extra = [
        (run_command[state]["script_time_s"] or 0.0) - (floor_phases.get(step) or 0.0)
        for state, step in FLOOR_EQUIVALENT.items()
        if run_command[state]["script_time_s"] is not None
    ]
    scripts_over_floor = round(sum(script_extra), 4) if script_extra else None
    return {
        "workflow_up_s": up,
        "workflow_down_s": median([s["down_s"] for s in good_w]),
        "workflow_start_s": median([s["start_s"] for s in good_w]),
        "floor_s": base,
        "ratio_workflow_over_floor": ratio(up, base),
        "gap_s": gap,
        "poll_quantisation_s": quantisation,
        "poll_quantisation_share_of_gap": ratio(quantisation, gap) if gap and gap > 0 else None,
        "gap_breakdown_s": {
            "poll lag (Run Command result polls + readiness loop)": quantisation,
            "host scripts slower than the floor's docker commands": scripts_over_floor,
            "everything else": round(gap - (quantisation or 0.0) - (scripts_over_floor or 0.0), 4)
            if gap is not None
            else None,
        },
        "readiness_lag_s": median([s["readiness_lag_s"] for s in good_w if s.get("readiness_lag_s") is not None]),
        "hosts_ready_after_s": median([s["hosts_ready_after_s"] for s in good_w if s.get("hosts_ready_after_s")]),
        "wait_rounds": median([s["wait_rounds"] for s in good_w]),
        "workflow_phases_s": _medians(good_w, "phases_s"),
        "floor_phases_s": floor_phases,
        "run_command_states": run_command,
        "samples": {"workflow": len(good_w), "floor": len(good_f)},
        "failures": {"workflow": len(workflow) - len(good_w), "floor": len(floor) - len(good_f)},
    }


def scaling(by_size: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """T(N) / T(GOAL_SIZE) for each arm: near 1 when launches and joins run in parallel, N / GOAL_SIZE if one by one."""
    base = by_size.get(GOAL_SIZE, {})
    return {
        arm: {str(n): ratio(by_size[n][key], base.get(key)) for n in sorted(by_size)}
        for arm, key in (("workflow", "workflow_up_s"), ("floor", "floor_s"))
    }


def report(by_size: dict[int, dict[str, Any]], growth: dict[str, Any], path: Path) -> Report:
    table = [["hosts (managers + workers)", "workflow up()", "floor", "ratio", "gap", "T(N)/T(5) workflow", "floor"]]
    for n, m in sorted(by_size.items()):
        table.append(
            [
                f"{n} ({MANAGERS} + {n - MANAGERS})",
                seconds(m["workflow_up_s"]),
                seconds(m["floor_s"]),
                "-" if m["ratio_workflow_over_floor"] is None else f"{m['ratio_workflow_over_floor']:.2f}x",
                seconds(m["gap_s"]),
                _times(growth["workflow"][str(n)]),
                _times(growth["floor"][str(n)]),
            ]
        )
    m = by_size.get(GOAL_SIZE) or next(iter(by_size.values()))
    blank = [""] * (len(table[0]) - 2)
    table.append([f"at {GOAL_SIZE} hosts: gap (workflow - floor)", seconds(m["gap_s"]), *blank])
    for part, value in m["gap_breakdown_s"].items():
        table.append([f"  {part}", seconds(value), *blank])
    table.append(["  workflow down() (teardown workflow)", seconds(m["workflow_down_s"]), *blank])
    table.append(["  workflow phases", "", *blank])
    for phase, value in m["workflow_phases_s"].items():
        extra = ""
        if phase in m["run_command_states"] and m["run_command_states"][phase]["duration_s"] is not None:
            rc = m["run_command_states"][phase]
            extra = f" (scripts {rc['script_time_s']:.2f}, waiting {rc['waiting_s']:.2f})"
        if phase == "wait loop":
            extra = f" ({m['wait_rounds']:.0f} rounds; hosts ready {m['hosts_ready_after_s'] or 0:.2f} s after Create, init {m['readiness_lag_s'] or 0:.2f} s later)"
        table.append([f"    {phase}{extra}", seconds(value), *blank])
    table.append(["  floor phases", "", *blank])
    for phase, value in m["floor_phases_s"].items():
        table.append([f"    {phase}", seconds(value), *blank])
    notes = [
        "samples per size (workflow/floor): "
        + ", ".join(f"{n}: {v['samples']['workflow']}/{v['samples']['floor']}" for n, v in sorted(by_size.items()))
        + (
            "; FAILED: " + str({n: v["failures"] for n, v in by_size.items() if any(v["failures"].values())})
            if any(any(v["failures"].values()) for v in by_size.values())
            else ""
        ),
        f"PollIntervalSeconds={LOCAL_PARAMETERS['PollIntervalSeconds']} (local cloud); Run Command results are polled from 0.25 s, each pause 1.5x the last, up to 2 s.",
    ]
    return Report(NAME, f"Provision {', '.join(map(str, SIZES))} hosts ({MANAGERS} managers)", table, notes, path)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def plot(
    options: Options, samples: dict[int, dict[str, list[dict[str, Any]]]], by_size: dict[int, dict[str, Any]]
) -> Path:
    figure, axes = new_figure()
    for arm, key, marker in (("workflow", "up_s", "o"), ("floor", "total_s", "s")):
        xs = [n for n in sorted(samples) for s in samples[n][arm] if s.get("ok")]
        ys = [s[key] for n in sorted(samples) for s in samples[n][arm] if s.get("ok")]
        axes.scatter(xs, ys, marker=marker, alpha=0.35)
        medians = [by_size[n]["workflow_up_s" if arm == "workflow" else "floor_s"] for n in sorted(by_size)]
        axes.plot(sorted(by_size), medians, marker=marker, label=f"{arm} (median)")
    axes.set_xlabel("hosts (3 managers + workers)")
    axes.set_ylabel("seconds to a Ready swarm")
    axes.set_xticks(list(SIZES))
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("Provisioning time against cluster size (local cloud)")
    return save_figure(options, NAME, figure)


def run(options: Options) -> Report:
    samples: dict[int, dict[str, list[dict[str, Any]]]] = {n: {"workflow": [], "floor": []} for n in SIZES}
    info = {"date": now_iso(), **commit(), "machine": machine()}
    with prefix_lock(WORKFLOW_PREFIX), prefix_lock(FLOOR_PREFIX), tempfile.TemporaryDirectory() as tmp:
        rootfs = build_rootfs(Path(tmp) / "busybox-rootfs.tar")
        for n in SIZES:
            repetitions = options.repetitions(REPETITIONS[n])
            for rep in range(repetitions):
                for arm in ["workflow", "floor"] if rep % 2 == 0 else ["floor", "workflow"]:
                    began = time.monotonic()
                    if arm == "workflow":
                        sample = workflow_once(MANAGERS, n - MANAGERS)
                        figure = sample.get("up_s")
                    else:
                        sample = floor_once(rootfs, MANAGERS, n - MANAGERS)
                        figure = sample.get("total_s")
                    samples[n][arm].append({"rep": rep, **sample})
                    status = (
                        f"{figure:.2f} s"
                        if sample.get("ok") and figure is not None
                        else f"failed: {sample.get('error')}"
                    )
                    print(
                        f"[provision] {n} hosts, rep {rep + 1}/{repetitions} {arm}: {status} "
                        f"(arm took {time.monotonic() - began:.0f} s)",
                        flush=True,
                    )
        left = leftovers(WORKFLOW_PREFIX) + leftovers(FLOOR_PREFIX)
    by_size = {n: summarise(v["workflow"], v["floor"]) for n, v in samples.items()}
    growth = scaling(by_size)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "sizes": list(SIZES),
            "managers": MANAGERS,
            "repetitions": {str(n): options.repetitions(REPETITIONS[n]) for n in SIZES},
            "order": "per size, alternating: W F, F W, ...",
            "local_parameters": LOCAL_PARAMETERS,
            "floor": "hosts started in parallel (dockerd + image import), then plain `docker swarm init` on one, "
            "`docker swarm join` of the other managers one at a time while the workers join in parallel, "
            "until `docker node ls` shows every node Ready; tokens read with `docker swarm join-token -q`",
        },
        "goals": {
            f"ratio at {GOAL_SIZE} hosts": {"goal": 1.5, "measured": by_size[GOAL_SIZE]["ratio_workflow_over_floor"]},
            f"T(20) / T({GOAL_SIZE}) workflow": {"goal": 2.0, "measured": growth["workflow"].get("20")},
        },
        "summary": {str(n): v for n, v in by_size.items()},
        "scaling": growth,
        "leftovers": left,
        "samples": {str(n): v for n, v in samples.items()},
    }
    path = write_json(options, NAME, data)
    plot(options, samples, by_size)
    result = report(by_size, growth, path)
    if any(v["samples"]["workflow"] == 0 or v["samples"]["floor"] == 0 for v in by_size.values()):
        print(result.render())
        raise RuntimeError(
            f"a size without a successful sample of an arm: { {n: v['failures'] for n, v in by_size.items()} }"
        )
    return result
