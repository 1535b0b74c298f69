"""CustomResourceFunction: CloudFormation's lifecycle drives the workflows, and they answer back.

Create starts provision, Delete starts teardown, Update re-plans: new counts go through the scale
workflow exactly as an API scale request does (steps.operations.start_scale). The workflow, not this
function, answers CloudFormation (action `report`) once it has finished, so `sam deploy`
returns when the swarm is up. Any failure to start is answered at once, never left to time out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from swarmwarden.adapters.cloudformation import response_body
from swarmwarden.adapters.operations import LockHeld
from swarmwarden.adapters.workflows import execution_name
from swarmwarden.domain.model import ClusterSpec, Contract, LaunchResult, Poll, SwarmRef
from swarmwarden.domain.plan import UnsupportedChange, UpdateAction, classify_update
from swarmwarden.errors import InvalidRequest
from swarmwarden.observability import logger
from swarmwarden.steps.operations import ScaleStart, start_scale
from swarmwarden.validation import parse

# CloudFormation delivers every property as a string.
_NUMERIC_PROPERTIES = ("managers", "workers", "max_workers", "address_pool_mask_length", "max_azs")
_CLOUDFORMATION_ONLY = ("ServiceToken", "ServiceTimeout")


class CloudFormationRequest(BaseModel):
    """A custom resource request, exactly as CloudFormation sends it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_type: Literal["Create", "Update", "Delete"] = Field(alias="RequestType")
    response_url: str = Field(alias="ResponseURL")
    stack_id: str = Field(alias="StackId")
    request_id: str = Field(alias="RequestId")
    logical_resource_id: str = Field(alias="LogicalResourceId")
    physical_resource_id: str | None = Field(default=None, alias="PhysicalResourceId")
    resource_properties: dict[str, Any] = Field(alias="ResourceProperties")
    old_resource_properties: dict[str, Any] | None = Field(default=None, alias="OldResourceProperties")


class CfnContext(Contract):
    """What a workflow needs to answer CloudFormation. No secret: the URL is presigned for one PUT."""

    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str


class ReportData(Contract):
    hosts: LaunchResult | None = None
    swarm: SwarmRef | None = None


class Report(Contract):
    action: Literal["report"]
    status: Literal["SUCCESS", "FAILED"]
    cfn: CfnContext
    reason: str = ""
    data: ReportData = ReportData()


REPORT: TypeAdapter[Report] = TypeAdapter(Report)
CFN_REQUEST: TypeAdapter[CloudFormationRequest] = TypeAdapter(CloudFormationRequest)


class Starter(Protocol):
    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str: ...


class Responder(Protocol):
    def __call__(self, url: str, body: bytes) -> None: ...


class StoredData(Protocol):
    def __call__(self, cluster_name: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Adapters:
    workflows: Starter
    respond: Responder
    stored_data: StoredData
    provision_arn: str
    teardown_arn: str
    poll: Poll
    scale: ScaleStart


def spec_from_properties(properties: dict[str, Any]) -> ClusterSpec:
    values = {k: v for k, v in properties.items() if k not in _CLOUDFORMATION_ONLY and v not in ("", None)}
    for name in _NUMERIC_PROPERTIES:
        if isinstance(values.get(name), str) and values[name].isdigit():
            values[name] = int(values[name])
    return parse(TypeAdapter(ClusterSpec), values)


def answer(request: CfnContext, status: Literal["SUCCESS", "FAILED"], reason: str, data: dict[str, str]) -> bytes:
    return response_body(
        status=status,
        reason=reason,
        physical_resource_id=request.physical_resource_id,
        stack_id=request.stack_id,
        request_id=request.request_id,
        logical_resource_id=request.logical_resource_id,
        data=data,
    )


def report_data(data: ReportData) -> dict[str, str]:
    """The attributes the template reads with !GetAtt."""
    if data.hosts is None or data.swarm is None:
        return {}
    managers = [data.hosts.seed, *data.hosts.managers]
    return {"ManagerInstanceIds": ",".join(h.instance_id for h in managers), "SwarmId": data.swarm.swarm_id}


def _context(request: CloudFormationRequest, physical_id: str) -> CfnContext:
    return CfnContext(
        response_url=request.response_url,
        stack_id=request.stack_id,
        request_id=request.request_id,
        logical_resource_id=request.logical_resource_id,
        physical_resource_id=physical_id,
    )


def handle_request(request: CloudFormationRequest, adapters: Adapters) -> str:
    """Starts the workflow for the request, or answers CloudFormation right away. Returns what happened."""
    # Before a physical id exists (a Create), the cluster name is the best one we can give.
    fallback_id = request.physical_resource_id or str(request.resource_properties.get("cluster_name", "swarm"))
    try:
        spec = spec_from_properties(request.resource_properties)
        cfn = _context(request, spec.cluster_name if request.request_type == "Create" else fallback_id)
        payload = {
            "spec": spec.model_dump(mode="json"),
            "poll": adapters.poll.model_dump(),
            "cfn": cfn.model_dump(),
        }
        match request.request_type:
            case "Create":
                name = execution_name("create", request.request_id)
                adapters.workflows.start(adapters.provision_arn, name, payload)
                return f"started provision {name}"
            case "Delete":
                name = execution_name("delete", request.request_id)
                adapters.workflows.start(adapters.teardown_arn, name, payload)
                return f"started teardown {name}"
            case "Update":
                old = spec_from_properties(request.old_resource_properties or {})
                name = execution_name("update", request.request_id)
                match classify_update(old, spec):
                    case UpdateAction.NOTHING:
                        adapters.respond(
                            cfn.response_url, answer(cfn, "SUCCESS", "", adapters.stored_data(spec.cluster_name))
                        )
                        return "unchanged"
                    case UpdateAction.SCALE:
                        # The same path as the API's scale requests: operation, lock, workflow.
                        counts = {"managers": spec.managers, "workers": spec.workers}
                        start_scale(spec, name, counts, adapters.scale, cfn=cfn.model_dump())
                        return f"started scale {name}"
                    case UpdateAction.PROVISION:
                        adapters.workflows.start(adapters.provision_arn, name, payload)
                        return f"started provision {name}"
    except (InvalidRequest, UnsupportedChange, LockHeld) as error:
        if request.request_type == "Delete":
            # Create refused these same properties, so there is nothing to tear down.
            cfn = _context(request, fallback_id)
            adapters.respond(cfn.response_url, answer(cfn, "SUCCESS", "nothing was created", {}))
            return "nothing to delete"
        reason = f"{request.request_type} refused: {error}"
    except Exception as error:
        logger.exception("could not start the workflow")
        reason = f"{request.request_type} could not start its workflow: {type(error).__name__}: {error}"
    cfn = _context(request, fallback_id)
    adapters.respond(cfn.response_url, answer(cfn, "FAILED", reason, {}))
    return "failed"


def readable_reason(reason: str) -> str:
    """`Error: {"errorMessage", "errorType", "stackTrace"}` (a Lambda error's cause) as `Error: message`."""
    error, separator, cause = reason.partition(": ")
    try:
        details = json.loads(cause)
    except ValueError:
        return reason
    if isinstance(details, dict) and "errorMessage" in details:
        return f"{error}{separator}{details['errorMessage']}"
    return reason


def handle_report(report: Report, adapters: Adapters) -> str:
    reason = readable_reason(report.reason)
    adapters.respond(report.cfn.response_url, answer(report.cfn, report.status, reason, report_data(report.data)))
    return f"reported {report.status}"


def handle(event: dict[str, Any], adapters: Adapters) -> str:
    if event.get("action") == "report":
        return handle_report(parse(REPORT, event), adapters)
    return handle_request(parse(CFN_REQUEST, event), adapters)
