"""Cold start: how long each handler module takes to import, and how big the layer is.

For every function in template.yaml, `RUNS` fresh processes of `python -S -X importtime -c "import app"`,
laid out as Lambda lays them out: the function's code first on the path, then the layer's `python/`
directory, then the standard library (`-S`: nothing from this venv, so a package missing from the
layer fails here as it would on Lambda). The environment is the function's, from the template, plus
the variables the Lambda runtime sets (Powertools and the X-Ray SDK behave differently inside Lambda:
the tracer patches botocore there). `PYTHONDONTWRITEBYTECODE`: /opt and /var/task are read-only on
Lambda, so a module without a .pyc in the layer is compiled again on every cold start.

The layer measured is `sam build`'s (`.aws-sam/build`, built first when absent). It is built for
arm64, whose extension modules cannot load on another CPU: then the same Makefile target builds a
twin for this machine's CPU (same pins, same slimming) and the imports are measured on the twin,
while the size is always the deployed build's (the twin goes to a temporary directory). Without a
build, or when the twin cannot be built, it falls back to the source tree and this venv's packages,
and says so.

Goals (issue 7): under 300 ms per handler; a layer under 20 MB unzipped.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Options, Report, commit, machine, median, new_figure, now_iso, save_figure, write_json
from localcloud.template import Function, Template

NAME = "coldstart"
GOAL_MS = 300.0
GOAL_LAYER_BYTES = 20_000_000
RUNS, QUICK_RUNS = 10, 3
TOP = 8
BUILD = REPO / ".aws-sam" / "build"
LAYER_SOURCE = REPO / "layers" / "swarmwarden"
IMPORT_TIMEOUT = 60.0
BUILD_TIMEOUT = 900.0
# `import time: <self us> | <cumulative us> | <indent><module>`, written by -X importtime on stderr.
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@dataclass(frozen=True)
class Layout:
    """Where the measured code comes from: the layer on the path and, per function, its code."""

    layer: Path | None  # None: the source tree and this venv's site-packages
    deployed: Path | None  # the build whose size is reported
    functions: Path | None  # sam build's copies of the function code, if any
    description: str


@dataclass(frozen=True)
class Run:
    total_us: int
    wall_s: float
    cpu_s: float  # the process's user + system time: steadier than wall time on a busy machine
    imports: list[tuple[str, int, int]]  # what importing the handler imported: (module, self us, cumulative us)


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) for each line -X importtime wrote."""
    rows = []
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            rows.append((match[4], int(match[1]), int(match[2]), len(match[3]) // 2))
    return rows


def subtree(rows: list[tuple[str, int, int, int]], module: str) -> tuple[int, list[tuple[str, int, int]]]:
    """The top-level `module`'s cumulative us, and the (module, self us, cumulative us) it imported."""
    # A module's line follows those of the modules it imported: its subtree runs from the previous
    # top-level line (the interpreter's own start-up imports come first) up to its own line.
    (end,) = [n for n, (name, _, _, depth) in enumerate(rows) if name == module and depth == 0]
    start = max((n + 1 for n, row in enumerate(rows[:end]) if row[3] == 0), default=0)
    return rows[end][2], [(name, own, cumulative) for name, own, cumulative, _ in rows[start:end]]


def tree_bytes(root: Path) -> tuple[int, dict[str, int]]:
    """Apparent size of the regular files under `root` (what unzipping gives), and per top-level entry."""
    per_entry: Counter[str] = Counter()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            per_entry[path.relative_to(root).parts[0]] += path.lstat().st_size
    return sum(per_entry.values()), dict(per_entry.most_common())


def foreign_binaries(layer: Path) -> bool:
    """True when the layer's extension modules are built for another CPU than this one's."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return any(not so.name.endswith((suffix, ".abi3.so")) for so in layer.rglob("*.so"))


def _make(*args: str) -> None:
    proc = subprocess.run(["make", *args], cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"make {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def layout(template: Template, scratch: Path) -> Layout:
    (layer_id,) = template.of_type("AWS::Serverless::LayerVersion")
    deployed = BUILD / layer_id / "python"
    if not deployed.is_dir():
        _make("build")
    if not deployed.is_dir():
        return Layout(None, None, None, "the source tree and this venv's packages, with their bytecode (no sam build)")
    if not foreign_binaries(deployed):
        return Layout(deployed, deployed, BUILD, f"sam build's output ({deployed.relative_to(REPO)})")
    arch = platform.machine()
    try:
        _make(
            *("-C", str(LAYER_SOURCE), f"build-{layer_id}", f"ARTIFACTS_DIR={scratch}"),
            *(f"LAYER_ARCH={arch}", f"PYTHON={sys.executable}"),
        )
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        return Layout(None, deployed, BUILD, f"the source tree and this venv's packages ({reason})")
    return Layout(
        scratch / "python",
        deployed,
        BUILD,
        f"the layer's Makefile target run for {arch} (the build's binaries are for another CPU; its size is reported)",
    )


def lambda_environment(function: Function, code: Path, region: str) -> dict[str, str]:
    """The function's variables plus what the Lambda runtime sets; fake credentials, never real ones."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "coldstart",
        "AWS_SECRET_ACCESS_KEY": "coldstart",
        "AWS_SESSION_TOKEN": "coldstart",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "LAMBDA_TASK_ROOT": str(code),
        "_HANDLER": function.handler,
        "PYTHONDONTWRITEBYTECODE": "1",
        **function.environment,
    }


def import_once(function: Function, code: Path, where: Layout, region: str) -> Run:
    module = function.handler.partition(".")[0]
    env = lambda_environment(function, code, region)
    if where.layer is None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(LAYER_SOURCE)])
        command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(where.layer)])
        command = [sys.executable, "-S", "-X", "importtime", "-c", f"import {module}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, timeout=IMPORT_TIMEOUT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"{function.logical_id}: import {module} failed:\n{proc.stderr[-3000:]}")
    total, imports = subtree(parse_importtime(proc.stderr), module)
    return Run(total, wall, cpu, imports)


def code_dir(function: Function, where: Layout) -> Path:
    built = where.functions / function.logical_id if where.functions else None
    return built if built is not None and built.is_dir() else function.code_dir


def top_imports(run: Run, cumulative: bool) -> list[dict[str, Any]]:
    """The run's TOP modules by cumulative or by self time."""
    ranked = sorted(run.imports, key=lambda row: row[2] if cumulative else row[1], reverse=True)[:TOP]
    return [{"module": name, "self_ms": own / 1000, "cumulative_ms": total / 1000} for name, own, total in ranked]


def by_package(run: Run) -> dict[str, float]:
    """Self time per top-level package: where an import's time goes, summed."""
    totals: Counter[str] = Counter()
    for name, own, _ in run.imports:
        totals[name.partition(".")[0]] += own
    return {name: round(us / 1000, 1) for name, us in totals.most_common(TOP)}


def measure(functions: list[Function], where: Layout, runs: int, region: str) -> dict[str, list[Run]]:
    measured: dict[str, list[Run]] = {}
    for function in sorted(functions, key=lambda f: f.logical_id):
        code = code_dir(function, where)
        measured[function.logical_id] = [import_once(function, code, where, region) for _ in range(runs)]
    return measured


def summarize(measured: dict[str, list[Run]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for logical_id, runs in measured.items():
        totals = [run.total_us / 1000 for run in runs]
        summary[logical_id] = {
            "import_ms": totals,
            "import_median_ms": median(totals),
            "import_min_ms": min(totals),
            "import_max_ms": max(totals),
            "wall_median_ms": median([run.wall_s * 1000 for run in runs]),
            "cpu_median_ms": median([run.cpu_s * 1000 for run in runs]),
            "modules": len(runs[0].imports),
            "meets_goal": statistics.median(totals) < GOAL_MS,
        }
    return summary


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.total_us)[len(runs) // 2]


def plot(options: Options, summary: dict[str, dict[str, Any]], layer_bytes: int | None) -> Path:
    figure, axes = new_figure(7.5, 0.45 * len(summary) + 1.6)
    names = list(summary)[::-1]
    medians = [summary[n]["import_median_ms"] for n in names]
    spread = [
        [m - summary[n]["import_min_ms"] for n, m in zip(names, medians, strict=True)],
        [summary[n]["import_max_ms"] - m for n, m in zip(names, medians, strict=True)],
    ]
    colours = ["tab:green" if summary[n]["meets_goal"] else "tab:red" for n in names]
    axes.barh(names, medians, xerr=spread, color=colours, capsize=3)
    axes.axvline(GOAL_MS, color="black", linestyle="--", label=f"goal {GOAL_MS:.0f} ms")
    axes.set_xlabel("import time of the handler module, ms (median; bars: min-max)")
    size = f"; layer {layer_bytes / 1e6:.1f} MB unzipped" if layer_bytes is not None else ""
    axes.set_title(f"Cold start: handler import time{size}")
    axes.legend(loc="lower right")
    return save_figure(options, NAME, figure)


def run(options: Options) -> Report:
    template = Template.load(REPO / "template.yaml")
    runs = QUICK_RUNS if options.quick else RUNS
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as scratch:
        where = layout(template, Path(scratch))
        measured = measure(template.functions(), where, runs, template.region)
    summary = summarize(measured)
    slowest = max(summary, key=lambda lid: summary[lid]["import_median_ms"])
    typical = median_run(measured[slowest])
    layer_bytes, per_package = tree_bytes(where.deployed) if where.deployed else (None, {})
    data = {
        "benchmark": NAME,
        "when": now_iso(),
        "machine": machine(),
        "code": commit(),
        "method": {
            "command": "python -S -X importtime -c 'import app' (cwd and PYTHONPATH: function code, then the layer)",
            "runs_per_handler": runs,
            "statistic": "median of the `app` module's cumulative import time",
            "layer": where.description,
            "bytecode": "PYTHONDONTWRITEBYTECODE=1: only the .pyc files the build ships are used",
            "seconds": round(time.monotonic() - started, 1),
        },
        "goals": {"import_ms": GOAL_MS, "layer_bytes": GOAL_LAYER_BYTES},
        "handlers": summary,
        "slowest": {
            "handler": slowest,
            "top_self": top_imports(typical, cumulative=False),
            "top_cumulative": top_imports(typical, cumulative=True),
            "self_ms_by_package": by_package(typical),
        },
        "layer": {
            "path": str(where.deployed) if where.deployed else None,
            "bytes": layer_bytes,
            "meets_goal": layer_bytes is not None and layer_bytes < GOAL_LAYER_BYTES,
            "bytes_by_entry": per_package,
        },
    }
    path = write_json(options, NAME, data)
    plot(options, summary, layer_bytes)
    return report(data, path)


def report(data: dict[str, Any], path: Path) -> Report:
    table = [["handler", "import (median)", "min-max", "process wall", "process CPU", f"< {GOAL_MS:.0f} ms"]]
    for logical_id, row in data["handlers"].items():
        table.append(
            [
                logical_id,
                f"{row['import_median_ms']:.0f} ms",
                f"{row['import_min_ms']:.0f}-{row['import_max_ms']:.0f} ms",
                f"{row['wall_median_ms']:.0f} ms",
                f"{row['cpu_median_ms']:.0f} ms",
                "yes" if row["meets_goal"] else "NO",
            ]
        )
    layer, slowest = data["layer"], data["slowest"]
    notes = [f"layer measured: {data['method']['layer']}; {data['method']['runs_per_handler']} runs per handler"]
    if layer["bytes"] is not None:
        biggest = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in list(layer["bytes_by_entry"].items())[:6])
        notes.append(
            f"layer size: {layer['bytes'] / 1e6:.1f} MB unzipped (goal < {GOAL_LAYER_BYTES / 1e6:.0f} MB: "
            f"{'met' if layer['meets_goal'] else 'MISSED'}); biggest, MB: {biggest}"
        )
    notes.append(
        f"slowest, {slowest['handler']}: self ms by package "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in slowest["self_ms_by_package"].items())
    )
    notes.append(
        "  top cumulative: "
        + ", ".join(f"{row['module']} {row['cumulative_ms']:.0f}" for row in slowest["top_cumulative"][:5])
    )
    notes.append("  top self: " + ", ".join(f"{row['module']} {row['self_ms']:.0f}" for row in slowest["top_self"][:5]))
    return Report(name=NAME, title="Cold start (handler import time, layer size)", table=table, notes=notes, path=path)
