"""Drives ReconcileFunction once through each of its paths against moto, for the IAM check in
test_template (each AWS call it makes must be granted to its deployed role)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from swarmwarden import aws
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, item_key
from swarmwarden.domain.model import ClusterSpec, Host

from functions.reconcile import app as reconcile_app

EVENTS = Path(__file__).resolve().parents[2] / "events"


def exercise_reconcile(
    as_function: Callable[[str], AbstractContextManager[None]],
    spec: dict[str, Any],
    hosts: dict[str, Any],
    context: Any,
) -> None:
    """A recorded ready cluster whose first worker's instance is gone: a sweep (moto runs no script, so
    no manager answers and the lost instance's repair is what it starts), the rebalance after a
    `running` event, and the calls a sweep makes only when the swarm answers."""
    store = ClusterStore(aws.dynamodb(), "ClusterTable")
    store.put_cluster(ClusterSpec.model_validate(spec), ClusterStatus.READY, swarm_id="swarm-1")
    seed, lost = hosts["seed"], hosts["workers"][0]
    store.put_nodes("demo", [Host.model_validate(h) for h in (seed, lost)], [])
    aws.ec2().terminate_instances(InstanceIds=[lost["instance_id"]])
    # Not paused (an earlier exercise's guard may have paused repair): the sweep then starts the repair.
    aws.dynamodb().delete_item(TableName="ClusterTable", Key=item_key("demo", "PAUSE"))
    running = json.loads((EVENTS / "ec2-state-change-terminated.json").read_text())
    running["detail"] |= {"instance-id": seed["instance_id"], "state": "running"}
    with as_function("ReconcileFunction"):
        swept = reconcile_app.lambda_handler(json.loads((EVENTS / "scheduled-event.json").read_text()), context)
        # moto has no repair state machine here: the start is refused, after the call was made.
        (lost_finding,) = [f for f in swept["findings"] if f["target"] == lost["instance_id"]]
        assert (lost_finding["kind"], lost_finding["outcome"][:6]) == ("lost_instance", "failed"), lost_finding
        reconcile_app.lambda_handler(running, context)
        adapters = reconcile_app.adapters()
        adapters.hosts.terminate("demo", [hosts["managers"][-1]["instance_id"]])
        assert adapters.execution_status(f"repair-{lost['instance_id']}-9") == ""


def clear_caches() -> None:
    reconcile_app.adapters.cache_clear()
