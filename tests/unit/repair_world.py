"""Drives the repair trigger and every step of the repair function once against moto, for the IAM
check in test_template (each AWS call they make must be granted to their deployed roles)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from swarmwarden import aws
from swarmwarden.adapters.store import ClusterStatus, ClusterStore
from swarmwarden.domain.model import ClusterSpec, Host

from functions.repair import app as repair_app
from functions.repair_trigger import app as repair_trigger_app

EVENTS = Path(__file__).resolve().parents[2] / "events"


def exercise_repair(
    as_function: Callable[[str], AbstractContextManager[None]],
    spec: dict[str, Any],
    hosts: dict[str, Any],
    context: Any,
) -> None:
    """A recorded ready cluster; its first worker terminates; the trigger and each repair step run."""
    store = ClusterStore(aws.dynamodb(), "ClusterTable")
    store.put_cluster(ClusterSpec.model_validate(spec), ClusterStatus.READY, swarm_id="swarm-1")
    seed, failed = hosts["seed"], hosts["workers"][0]
    store.put_nodes("demo", [Host.model_validate(h) for h in (seed, failed)], [])
    event = json.loads((EVENTS / "ec2-state-change-terminated.json").read_text())
    event["detail"]["instance-id"] = failed["instance_id"]
    with as_function("RepairTriggerFunction"), pytest.raises(ClientError, match=r"StateMachineDoesNotExist"):
        repair_trigger_app.lambda_handler(event, context)  # moto has no repair state machine here
    operation = {"spec": spec, "operation_id": "repair-1"}
    failed_node = {"host": failed, "node_id": ""}
    with as_function("RepairFunction"):
        repair_app.lambda_handler({"action": "classify", "spec": spec, "instance_id": failed["instance_id"]}, context)
        healthy = {"manager": seed, "nodes": [], "tried": []}
        guard = {"instance_id": failed["instance_id"], "healthy": healthy, "limits": {}}
        repair_app.lambda_handler({"action": "guard", **operation, **guard}, context)
        claimed = repair_app.lambda_handler(
            {"action": "claim", **operation, "failed": failed_node, "manager": seed}, context
        )
        added = failed | {"instance_id": "i-0123456789abcdef0", "slot": claimed["placement"]["slot"]}
        record = {"failed": failed_node, "added": added, "nodes": [], "started_at": "2026-11-27T06:00:00Z"}
        repair_app.lambda_handler({"action": "record", **operation, **record}, context)
        repair_app.lambda_handler(
            {"action": "fail", **operation, "instance_id": failed["instance_id"], "error": "InvalidRequest"}, context
        )


def clear_caches() -> None:
    for app in (repair_app, repair_trigger_app):
        app.adapters.cache_clear()
