"""The layer's build (layers/swarmwarden/Makefile and slim.py): what it drops, what it compiles, and
that the botocore it ships still creates every client the functions use."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slim

REPO = Path(__file__).resolve().parents[2]
LAYER_SOURCE = REPO / "layers" / "swarmwarden"
CODE = [LAYER_SOURCE / "swarmwarden", REPO / "functions"]


def _touch(root: Path, *paths: str) -> None:
    for relative in paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")


def test_unused_keeps_the_used_services_newest_version_and_what_botocore_reads(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "botocore/data/endpoints.json",
        "botocore/data/_retry.json",
        "botocore/data/ec2/2015-10-01/service-2.json.gz",
        "botocore/data/ec2/2016-11-15/service-2.json.gz",
        "botocore/data/ec2/2016-11-15/paginators-1.json",
        "botocore/data/ec2/2016-11-15/examples-1.json",
        "botocore/data/s3/2006-03-01/service-2.json.gz",
        "boto3/data/ec2/2016-11-15/resources-1.json",
        "boto3/data/s3/2006-03-01/resources-1.json",
        "botocore/__pycache__/client.cpython-313.pyc",
        "wrapt/_wrappers.c",
        "wrapt/__init__.pyi",
        "wrapt-2.5.2.dist-info/RECORD",
        "wrapt-2.5.2.dist-info/METADATA",
    )

    unused = {str(p.relative_to(tmp_path)) for p in slim.unused(tmp_path, frozenset({"ec2"}))}

    assert unused == {
        "botocore/data/ec2/2015-10-01",
        "botocore/data/ec2/2016-11-15/examples-1.json",
        "botocore/data/s3",
        "boto3/data/s3",
        "botocore/__pycache__",
        "wrapt/_wrappers.c",
        "wrapt/__init__.pyi",
        "wrapt-2.5.2.dist-info/RECORD",
    }


def test_unused_refuses_a_service_botocore_has_no_model_for(tmp_path: Path) -> None:
    _touch(tmp_path, "botocore/data/ec2/2016-11-15/service-2.json.gz", "boto3/data/ec2/2016-11-15/resources-1.json")

    with pytest.raises(ValueError, match="no model for ecs"):
        list(slim.unused(tmp_path, frozenset({"ec2", "ecs"})))


def test_compile_layer_ships_dependencies_as_bytecode_and_keeps_our_sources(tmp_path: Path) -> None:
    (tmp_path / "dep").mkdir()
    (tmp_path / "dep" / "__init__.py").write_text("def fail():\n    raise RuntimeError('from dep')\n")
    (tmp_path / "swarmwarden").mkdir()
    (tmp_path / "swarmwarden" / "__init__.py").write_text("VALUE = 42\n")

    slim.compile_layer(tmp_path)

    assert sorted(p.name for p in (tmp_path / "dep").iterdir()) == ["__init__.pyc"]
    assert (tmp_path / "swarmwarden" / "__init__.py").is_file()
    assert list((tmp_path / "swarmwarden" / "__pycache__").glob("__init__.cpython-313.pyc"))
    # Read-only, as on Lambda: nothing may need compiling, and tracebacks name the mounted path.
    probe = "import dep, swarmwarden\nprint(dep.__file__, dep.fail.__code__.co_filename, swarmwarden.VALUE)"
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(tmp_path / "dep" / "__init__.pyc"), "/opt/python/dep/__init__.py", "42"]


def _created_clients() -> tuple[set[str], list[str]]:
    """Service names of every `client("x")`/`_client("x")`/`resource("x")` call in the deployed code, and
    where a call names its service with anything but a literal."""
    literal: set[str] = set()
    dynamic: list[str] = []
    for root in CODE:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in {"client", "_client", "resource"}:
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    literal.add(first.value)
                else:
                    dynamic.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return literal, dynamic


def test_the_kept_service_models_are_exactly_the_clients_the_code_creates() -> None:
    literal, dynamic = _created_clients()

    assert literal == slim.CLIENTS
    # The one call that takes a variable is swarmwarden.aws._client, behind the named helpers above.
    assert dynamic == ["layers/swarmwarden/swarmwarden/aws.py:22"]


BUILT = REPO / ".aws-sam" / "build" / "SwarmwardenLayer" / "python"


@pytest.mark.skipif(not BUILT.is_dir(), reason="no sam build output (make test builds it first)")
def test_the_built_layer_creates_every_client_the_layer_needs() -> None:
    # A fresh interpreter with only the built layer on the path (-S: not this venv's boto3). The
    # layer's pure-Python part loads on any CPU; pydantic_core, built for arm64, is not needed here.
    probe = """
import json, sys
import boto3, botocore
from swarmwarden import aws
clients = {name: boto3.client(name, config=aws.RETRY_CONFIG) for name in sys.argv[1:]}
print(json.dumps({
    "boto3": boto3.__file__, "botocore": botocore.__file__,
    "services": sorted(c.meta.service_model.service_name for c in clients.values()),
    "endpoints": sorted(c.meta.endpoint_url for c in clients.values()),
    "paginate": [clients["ec2"].can_paginate("describe_instances"), clients["dynamodb"].can_paginate("query")],
}))
"""
    env = {
        "PYTHONPATH": str(BUILT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    command = [sys.executable, "-S", "-c", probe, *sorted(slim.SERVICES)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)

    assert found["boto3"].startswith(str(BUILT))
    assert found["botocore"].startswith(str(BUILT))
    assert set(found["services"]) == slim.SERVICES
    assert all(url.endswith("eu-west-1.amazonaws.com") for url in found["endpoints"])
    assert found["paginate"] == [True, True]
