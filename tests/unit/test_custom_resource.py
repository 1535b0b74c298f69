"""The custom resource: CloudFormation requests as CloudFormation sends them (events/cfn-*.json),
answered over a real HTTP PUT to a local ResponseURL."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from swarmwarden.adapters.cloudformation import send_response
from swarmwarden.adapters.operations import OperationKind, Operations, OperationStatus
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.domain.model import Poll
from swarmwarden.steps import custom_resource
from swarmwarden.steps.operations import ScaleStart

EVENTS = Path(__file__).parents[2] / "events"


def event(name: str, **changes: Any) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text()) | changes


class ResponseCatcher:
    """A stand-in for the presigned S3 URL: records every PUT body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                catcher.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?X-Amz-Signature=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    catcher = ResponseCatcher()
    yield catcher
    catcher.server.shutdown()


@pytest.fixture
def machines(mocked_aws) -> dict[str, str]:
    sfn = boto3.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/sfn"
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    return {
        name: sfn.create_state_machine(name=f"demo-{name}", definition=definition, roleArn=role)["stateMachineArn"]
        for name in ("provision", "teardown", "scale")
    }


@pytest.fixture
def operations(cluster_table: str) -> Operations:
    return Operations(boto3.client("dynamodb"), cluster_table)


@pytest.fixture
def adapters(machines: dict[str, str], operations: Operations) -> custom_resource.Adapters:
    workflows = Workflows(boto3.client("stepfunctions"))
    poll = Poll(interval_seconds=15, max_attempts=40)
    return custom_resource.Adapters(
        workflows=workflows,
        respond=send_response,
        stored_data=lambda name: {"ManagerInstanceIds": "i-1,i-2,i-3", "SwarmId": "swarm-1"},
        provision_arn=machines["provision"],
        teardown_arn=machines["teardown"],
        poll=poll,
        scale=ScaleStart(operations=operations, workflows=workflows, state_machine_arn=machines["scale"], poll=poll),
    )


def executions(arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]


def test_create_starts_provision_once_and_leaves_the_answer_to_the_workflow(adapters, machines, catcher) -> None:
    request = event("cfn-create", ResponseURL=catcher.url)
    assert custom_resource.handle(request, adapters).startswith("started provision")
    assert custom_resource.handle(request, adapters).startswith("started provision")  # Lambda's async retry
    (execution,) = executions(machines["provision"])
    assert execution["name"] == f"create-{request['RequestId']}"
    payload = json.loads(execution["input"])
    assert payload["spec"]["managers"] == 3
    assert payload["spec"]["workers"] == 2
    assert "key_name" not in payload["spec"] or payload["spec"]["key_name"] is None
    assert payload["cfn"]["response_url"] == catcher.url
    assert payload["cfn"]["physical_resource_id"] == "demo"
    assert payload["poll"] == {"interval_seconds": 15, "max_attempts": 40}
    assert catcher.bodies == []


def test_create_with_an_even_manager_count_is_refused_at_once_naming_the_field(adapters, machines, catcher) -> None:
    request = event("cfn-create", ResponseURL=catcher.url)
    request["ResourceProperties"]["managers"] = "4"
    assert custom_resource.handle(request, adapters) == "failed"
    (body,) = catcher.bodies
    assert body["Status"] == "FAILED"
    assert "managers" in body["Reason"]
    assert body["RequestId"] == request["RequestId"]
    assert executions(machines["provision"]) == []


def test_an_unchanged_update_succeeds_at_once_with_the_stored_attributes(adapters, machines, catcher) -> None:
    request = event("cfn-update", ResponseURL=catcher.url)
    request["ResourceProperties"] = request["OldResourceProperties"]
    assert custom_resource.handle(request, adapters) == "unchanged"
    (body,) = catcher.bodies
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == "demo"
    assert body["Data"] == {"ManagerInstanceIds": "i-1,i-2,i-3", "SwarmId": "swarm-1"}
    assert executions(machines["provision"]) == []


@pytest.mark.parametrize("workers", ["4", "1"])
def test_new_counts_start_the_scale_workflow_as_an_api_request_does(
    adapters, machines, operations, catcher, workers: str
) -> None:
    request = event("cfn-update", ResponseURL=catcher.url)
    request["ResourceProperties"] = request["ResourceProperties"] | {"workers": workers}
    name = f"update-{request['RequestId']}"
    assert custom_resource.handle(request, adapters) == f"started scale {name}"
    assert custom_resource.handle(request, adapters) == f"started scale {name}"  # Lambda's async retry
    (execution,) = executions(machines["scale"])
    assert execution["name"] == name
    payload = json.loads(execution["input"])
    assert payload["spec"]["workers"] == int(workers)
    assert payload["operation_id"] == name
    assert payload["cfn"]["physical_resource_id"] == "demo"
    assert payload["poll"] == {"interval_seconds": 15, "max_attempts": 40}
    # The operation exists and holds the lock; the workflow answers CloudFormation, not this function.
    operation = operations.get("demo", name)
    assert operation is not None
    assert operation.kind is OperationKind.SCALE
    assert operation.request == {"managers": 3, "workers": int(workers)}
    assert operation.execution_arn == execution["executionArn"]
    assert [lock.operation_id for lock in operations.holders("demo")] == [name]
    assert executions(machines["provision"]) == []
    assert catcher.bodies == []


def test_new_counts_while_another_operation_holds_the_cluster_are_refused(
    adapters, machines, operations, catcher
) -> None:
    operations.acquire("demo", "repair-i-1", OperationKind.REPAIR, lease_seconds=600)
    request = event("cfn-update", ResponseURL=catcher.url)
    assert custom_resource.handle(request, adapters) == "failed"
    (body,) = catcher.bodies
    assert body["Status"] == "FAILED"
    assert "repair operation repair-i-1 is in progress" in body["Reason"]
    assert executions(machines["scale"]) == []
    assert operations.get("demo", f"update-{request['RequestId']}") is None


def test_a_scale_workflow_that_cannot_start_fails_its_operation_and_frees_the_lock(
    adapters, machines, operations, catcher
) -> None:
    broken = custom_resource.Adapters(
        **vars(adapters)
        | {"scale": ScaleStart(**vars(adapters.scale) | {"state_machine_arn": machines["scale"] + "x"})}
    )
    request = event("cfn-update", ResponseURL=catcher.url)
    assert custom_resource.handle(request, broken) == "failed"
    (body,) = catcher.bodies
    assert body["Status"] == "FAILED"
    operation = operations.get("demo", f"update-{request['RequestId']}")
    assert operation is not None
    assert operation.status is OperationStatus.FAILED
    assert operations.holders("demo") == []


def test_a_new_instance_type_alone_reprovisions(adapters, machines, catcher) -> None:
    request = event("cfn-update", ResponseURL=catcher.url)
    request["ResourceProperties"] = request["OldResourceProperties"] | {"instance_type": "t3.medium"}
    assert custom_resource.handle(request, adapters).startswith("started provision")
    (execution,) = executions(machines["provision"])
    assert json.loads(execution["input"])["spec"]["instance_type"] == "t3.medium"
    assert executions(machines["scale"]) == []


def test_a_new_network_is_refused_with_the_reason(adapters, machines, catcher) -> None:
    request = event("cfn-update", ResponseURL=catcher.url)
    request["ResourceProperties"] = request["ResourceProperties"] | {"vpc_cidr": "10.9.0.0/16"}
    assert custom_resource.handle(request, adapters) == "failed"
    (body,) = catcher.bodies
    assert body["Status"] == "FAILED"
    assert "vpc_cidr cannot change" in body["Reason"]


def test_delete_starts_teardown(adapters, machines, catcher) -> None:
    request = event("cfn-delete", ResponseURL=catcher.url)
    assert custom_resource.handle(request, adapters).startswith("started teardown")
    (execution,) = executions(machines["teardown"])
    assert json.loads(execution["input"])["spec"]["cluster_name"] == "demo"


def test_delete_of_properties_create_refused_succeeds_without_a_workflow(adapters, machines, catcher) -> None:
    request = event("cfn-delete", ResponseURL=catcher.url)
    request["ResourceProperties"]["managers"] = "2"
    assert custom_resource.handle(request, adapters) == "nothing to delete"
    assert catcher.bodies[0]["Status"] == "SUCCESS"
    assert executions(machines["teardown"]) == []


def test_report_answers_with_the_manager_ids(adapters, catcher) -> None:
    workflow_input = json.loads((EVENTS / "provision-input-cfn.json").read_text())
    cfn = workflow_input["cfn"] | {"response_url": catcher.url}
    host = {"role": "manager", "az": "us-east-1a", "private_ip": "10.42.0.10"}
    hosts = {
        "seed": host | {"instance_id": "i-1", "slot": "manager-0"},
        "managers": [host | {"instance_id": "i-2", "slot": "manager-1"}],
        "workers": [],
        "instance_ids": ["i-1", "i-2"],
        "launched_instance_ids": ["i-1", "i-2"],
    }
    report = {
        "action": "report",
        "status": "SUCCESS",
        "cfn": cfn,
        "data": {"hosts": hosts, "swarm": {"swarm_id": "swarm-1", "manager_addr": "10.42.0.10"}},
    }
    assert custom_resource.handle(report, adapters) == "reported SUCCESS"
    (body,) = catcher.bodies
    assert body["Data"] == {"ManagerInstanceIds": "i-1,i-2", "SwarmId": "swarm-1"}
    assert body["PhysicalResourceId"] == cfn["physical_resource_id"]
    assert body["StackId"] == cfn["stack_id"]


def test_a_failure_report_carries_the_reason(adapters, catcher) -> None:
    cfn = json.loads((EVENTS / "provision-input-cfn.json").read_text())["cfn"] | {"response_url": catcher.url}
    report = {"action": "report", "status": "FAILED", "cfn": cfn, "reason": "HostsNotReady: i-1: state pending"}
    custom_resource.handle(report, adapters)
    assert catcher.bodies[0]["Status"] == "FAILED"
    assert catcher.bodies[0]["Reason"] == "HostsNotReady: i-1: state pending"
    assert catcher.bodies[0]["Data"] == {}


def test_a_lambda_error_cause_is_reported_as_its_message_not_its_stack_trace(adapters, catcher) -> None:
    cfn = json.loads((EVENTS / "provision-input-cfn.json").read_text())["cfn"] | {"response_url": catcher.url}
    cause = json.dumps(
        {
            "errorMessage": "init on i-1 failed: port 2377 in use",
            "errorType": "ScriptFailed",
            "stackTrace": ["  File x"],
        }
    )
    report = {"action": "report", "status": "FAILED", "cfn": cfn, "reason": f"ScriptFailed: {cause}"}
    custom_resource.handle(report, adapters)
    assert catcher.bodies[0]["Reason"] == "ScriptFailed: init on i-1 failed: port 2377 in use"
