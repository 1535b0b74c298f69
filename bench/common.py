"""What every benchmark shares: timing, medians and ratios, the machine it ran on, and where results go.

A benchmark module in `bench/` defines `run(options: Options) -> Report`. It measures, writes its
raw figures with `write_json` to `docs/benchmarks/<name>.json` and returns a report whose summary
`bench.__main__` prints. These machines are noisy: compare medians measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks"


@dataclass(frozen=True)
class Options:
    quick: bool = False
    out_dir: Path = RESULTS

    def repetitions(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full


@dataclass
class Report:
    """A benchmark's result: a title, a table to print (header row first) and notes under it."""

    name: str
    title: str
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    def render(self) -> str:
        lines = [self.title, "=" * len(self.title)]
        if self.table:
            widths = [max(len(row[i]) for row in self.table) for i in range(len(self.table[0]))]
            for n, row in enumerate(self.table):
                cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
                lines.append("  ".join(cells).rstrip())
                if n == 0:
                    lines.append("  ".join("-" * w for w in widths))
        lines += self.notes
        if self.path is not None:
            lines.append(f"raw figures: {self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}")
        return "\n".join(lines)


class Stopwatch:
    """Marks on one monotonic clock, plus the wall clock at the start to line them up with logs."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Stores the block's duration in seconds under `key`, also when it raises."""
    started = time.monotonic()
    try:
        yield
    finally:
        into[key] = round(time.monotonic() - started, 4)


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def seconds(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def wait_for[T](what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Polls `probe` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s (last seen {last!r})")
        time.sleep(interval)


def _command(*args: str) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """The machine and the code the figures belong to."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker": _command("dockerd", "--version"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def commit() -> dict[str, Any]:
    return {
        "commit": _command("git", "rev-parse", "HEAD"),
        # Tracked files that differed from the commit when the figures were taken.
        "dirty": _command("git", "status", "--porcelain", "--untracked-files=no").splitlines(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(options: Options, name: str, data: dict[str, Any]) -> Path:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def save_figure(options: Options, name: str, figure: Any) -> Path:
    """Writes a matplotlib figure to `<out_dir>/<name>.png` and closes it."""
    import matplotlib.pyplot as plt  # only benchmarks that plot pay for the import

    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def new_figure(width: float = 7.0, height: float = 4.0, columns: int = 1) -> tuple[Any, Any]:
    """A figure and its axes (one per column) on the non-interactive backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height))
