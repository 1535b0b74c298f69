"""A repair's milestones, read back from its execution history: when it started (the failure was
detected), and when the dead node was removed, the replacement launched, ready (running, agents
registered), joined and recorded.

The demo prints them; the repair benchmark splits its MTTR with them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module; only the process that owns a cloud imports moto
    from localcloud.cloud import LocalCloud

# Milestone -> the repair state whose exit marks it (statemachines/repair.asl.json).
MILESTONES = {
    "removed": "RemoveDeadNode",
    "replacement launched": "LaunchReplacement",
    "replacement ready": "CheckReplacementReady",
    "joined": "JoinReplacement",
    "recorded": "RecordRepair",
}
DETECTED = "detected"


def history(cloud: LocalCloud, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution, oldest first, each with `t` in epoch seconds."""
    sfn = cloud.client("stepfunctions")
    events: list[dict[str, Any]] = []
    token = None
    for _page in range(200):
        page = sfn.get_execution_history(executionArn=execution_arn, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    for event in events:
        stamp = event["timestamp"]
        event["t"] = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
    return sorted(events, key=lambda e: (e["t"], e["id"]))


def milestones(cloud: LocalCloud, execution_arn: str) -> dict[str, float]:
    """Milestone -> epoch seconds, for those the execution has reached (the last exit of each state)."""
    found: dict[str, float] = {}
    states = {state: name for name, state in MILESTONES.items()}
    for event in history(cloud, execution_arn):
        if event["type"] == "ExecutionStarted":
            found[DETECTED] = event["t"]
        elif event["type"].endswith("StateExited"):
            name = states.get(str(event["stateExitedEventDetails"]["name"]))
            if name is not None:
                found[name] = event["t"]
    return found
