"""Every place a join token must never reach, collected from a running local cloud."""

from __future__ import annotations

import json
from typing import Any

from moto.ssm.models import ssm_backends

from localcloud.cloud import LocalCloud
from localcloud.template import ACCOUNT


def _history(cloud: LocalCloud, execution_arn: str) -> list[dict[str, Any]]:
    sfn = cloud.client("stepfunctions")
    events: list[dict[str, Any]] = []
    token = None
    for _page in range(100):
        page = sfn.get_execution_history(executionArn=execution_arn, **({"nextToken": token} if token else {}))
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events
    raise AssertionError(f"history of {execution_arn} has more than 100 pages")


def surfaces(cloud: LocalCloud) -> dict[str, list[str]]:
    """Texts by surface: Lambda logs, invocation payloads and results, execution histories (input, output
    and every event), SSM command texts and outputs, and the HTTP API's responses."""
    found: dict[str, list[str]] = {
        "lambda log": (cloud.state_dir / "lambda.log").read_text(errors="replace").splitlines(),
        "lambda invocation": [f"{i.payload}\n{i.response}" for i in cloud.runtime.invocations],
        "execution history": [],
        "ssm command text": [],
        "ssm command output": [],
        "api response": [],
    }
    sfn = cloud.client("stepfunctions")
    for execution in cloud.executions():
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        found["execution history"].append(json.dumps([described.get("input"), described.get("output")]))
        found["execution history"].extend(
            json.dumps(e, default=str) for e in _history(cloud, execution["executionArn"])
        )
    for command in ssm_backends[ACCOUNT][cloud.config.region]._commands:
        found["ssm command text"].append(json.dumps(command.parameters))
        for invocation in command.invocations:
            found["ssm command output"].append(
                invocation.get("StandardOutputContent", "") + invocation.get("StandardErrorContent", "")
            )
    if cloud.api is not None:
        found["api response"].extend(e.body.decode(errors="replace") for e in cloud.api.exchanges)
    return found
