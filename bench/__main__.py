"""Runs every benchmark module in bench/ (or those named), writes their JSON, prints their summaries.

    python -m bench [--quick] [--only provision] [--out docs/benchmarks]

A benchmark module is any `bench/<name>.py` other than this one and `common` that defines
`run(options: bench.common.Options) -> bench.common.Report`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

import bench
from bench.common import RESULTS, Options, Report

NOT_BENCHMARKS = {"__main__", "common"}


def benchmark_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name not in NOT_BENCHMARKS)


def in_run_order(names: list[str]) -> list[str]:
    """A module that reads others' results names them in `READS`; those run first when chosen too."""
    reads = {name: getattr(importlib.import_module(f"bench.{name}"), "READS", ()) for name in names}
    return sorted(names, key=lambda name: (any(r in names for r in reads[name]), name))


def main(argv: list[str] | None = None) -> int:
    # Powertools warns on every invoke of a handler that emits no metrics; it would bury the tables.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    names = benchmark_names()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition per arm instead of the full count")
    parser.add_argument("--only", action="append", choices=names, help="run only this benchmark (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, out_dir=args.out)
    reports: list[Report] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in in_run_order(args.only or names):
        module = importlib.import_module(f"bench.{name}")
        run = cast(Callable[[Options], Report], getattr(module, "run", None))
        if run is None:
            continue
        print(f"[bench] {name}: running{' (quick)' if options.quick else ''}", flush=True)
        began = time.monotonic()
        try:
            report = run(options)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"[bench] {name}: FAILED after {time.monotonic() - began:.0f} s", flush=True)
            continue
        print(f"[bench] {name}: done in {time.monotonic() - began:.0f} s", flush=True)
        reports.append(report)
    print()
    for report in reports:
        print(report.render())
        print()
    print(
        f"[bench] {len(reports)} benchmark(s) in {time.monotonic() - started:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
