"""Slims the layer that pip installed, then compiles it. The Makefile here runs it during `sam build`:

    python3.13 slim.py ARTIFACTS_DIR/python

Issue 7's goals are a layer under 20 MB unzipped and handlers that import in under 300 ms.
- botocore ships a model of every AWS service (~20 MB) and the functions call five: CLIENTS
  (tests/unit/test_layer.py checks it against every client the code creates). A client loads only
  its service's newest API version.
- Lambda mounts the layer read-only, so Python cannot cache the bytecode it compiles: without .pyc
  files every cold start compiles each module it imports again, most of the import time. The
  dependencies ship as bytecode only (bytecode and sources together would not fit in 20 MB);
  swarmwarden keeps its sources next to its bytecode, for tracebacks that show our code.
"""

from __future__ import annotations

import py_compile
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

CLIENTS = frozenset({"dynamodb", "ec2", "ecs", "ssm", "stepfunctions"})
# Plus the X-Ray SDK's: outside Lambda (no LAMBDA_TASK_ROOT) its sampler creates an xray client at import.
SERVICES = CLIENTS | {"xray"}
OWN = "swarmwarden"
# Where Lambda mounts the layer: the file names that tracebacks through the dependencies show.
MOUNTED_AT = "/opt/python"
# botocore's service models and boto3's resource models, one directory per service.
SERVICE_DATA = ("botocore/data", "boto3/data")
# Read by nothing at run time: bytecode caches (rebuilt below), type stubs, C sources, and pip's
# list of installed files (wrong once slimmed).
UNUSED_DIRS = {"__pycache__"}
UNUSED_SUFFIXES = {".pyi", ".c"}


def unused(root: Path, services: frozenset[str] = SERVICES) -> Iterator[Path]:
    """Every file or directory under the installed layer `root` that no function reads."""
    missing = services - {p.name for p in (root / SERVICE_DATA[0]).iterdir()}
    if missing:
        raise ValueError(f"botocore has no model for {', '.join(sorted(missing))}")
    for relative in SERVICE_DATA:
        for service in sorted(p for p in (root / relative).iterdir() if p.is_dir()):
            if service.name not in services:
                yield service
                continue
            *older, newest = sorted(p for p in service.iterdir() if p.is_dir())
            yield from older  # clients load the newest API version unless given `api_version`
            yield from newest.glob("examples-*.json")  # documentation only
    for path in root.rglob("*"):
        if (
            path.name in UNUSED_DIRS
            or (path.suffix in UNUSED_SUFFIXES and path.is_file())
            or (path.name == "RECORD" and path.parent.name.endswith(".dist-info"))
        ):
            yield path


def compile_layer(root: Path) -> None:
    """Compiles every module. The dependencies' sources are then dropped; ours stay."""
    for source in sorted(root.rglob("*.py")):
        relative = source.relative_to(root)
        if relative.parts[0] == OWN:
            # Checked against the source, so an edited file is never shadowed by stale bytecode.
            py_compile.compile(str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            continue
        py_compile.compile(
            str(source),
            cfile=str(source.with_suffix(".pyc")),
            dfile=f"{MOUNTED_AT}/{relative}",
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,  # no source left to check
        )
        source.unlink()


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if sys.version_info[:2] != (3, 13):
        raise SystemExit("slim.py: run it with python3.13, the functions' runtime (bytecode is version-specific)")
    if len(argv) != 1:
        raise SystemExit(__doc__)
    root = Path(argv[0])
    for path in list(unused(root)):
        remove(path)
    compile_layer(root)
    size = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"slim.py: {root} is {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
