"""The repair trigger with AWS-shaped EC2 events, on moto (EC2 tags, the cluster table, Step Functions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from swarmwarden import aws
from swarmwarden.adapters.instances import Instances
from swarmwarden.adapters.store import ClusterStatus, ClusterStore, NodeState
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.domain.model import ClusterSpec, Host, Poll, Role
from swarmwarden.steps import repair

EVENTS = Path(__file__).resolve().parents[2] / "events"
SPEC = ClusterSpec(cluster_name="demo", ami_id="ami-0123456789abcdef0")
TABLE = "ClusterTable"  # the conftest fixture cluster_table


def event(instance_id: str, state: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((EVENTS / "ec2-state-change-terminated.json").read_text())
    sample["detail"] = {"instance-id": instance_id, "state": state}
    sample["resources"] = [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"]
    return sample


class World:
    """moto with one recorded ready cluster `demo`, its repair state machine, and the trigger's adapters."""

    def __init__(self) -> None:
        self.store = ClusterStore(aws.dynamodb(), TABLE)
        self.store.put_cluster(SPEC, ClusterStatus.READY, swarm_id="swarm-1")
        self.sfn = boto3.client("stepfunctions")
        self.machine = self.sfn.create_state_machine(
            name="demo-repair",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        self.metrics: list[tuple[str, dict[str, str]]] = []
        workflows = Workflows(aws.stepfunctions())
        self.adapters = repair.TriggerAdapters(
            store=self.store,
            instances=Instances(aws.ec2()),
            start=lambda name, payload: workflows.start_new(self.machine, name, payload),
            metrics=repair.Metrics("demo", lambda name, value, unit, dims: self.metrics.append((name, dims))),
            cluster="demo",
            poll=Poll(interval_seconds=15, max_attempts=40),
            limits=repair.Limits(max_repairs=2, pause_threshold_percent=30),
        )

    def instance(self, cluster: str | None = "demo", *, record: NodeState | None = NodeState.ACTIVE) -> str:
        tags = [{"Key": "swarmwarden:cluster", "Value": cluster}] if cluster else []
        extra = {"TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]} if tags else {}
        (made,) = aws.ec2().run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, **extra)["Instances"]
        instance_id = made["InstanceId"]
        if record is not None:
            host = Host(
                instance_id=instance_id, role=Role.WORKER, slot="worker-0", az="us-east-1a", private_ip="10.0.0.1"
            )
            self.store.put_nodes("demo", [host], [])
            self.store.set_node_state("demo", instance_id, record)
        return instance_id

    def trigger(self, instance_id: str, state: str) -> repair.TriggerResult:
        return repair.trigger(repair.Ec2StateChangeEvent.model_validate(event(instance_id, state)), self.adapters)

    def executions(self) -> list[dict[str, Any]]:
        return list(self.sfn.list_executions(stateMachineArn=self.machine)["executions"])


@pytest.fixture
def world(cluster_table: str) -> World:
    return World()


def test_a_failure_of_ours_starts_one_repair_named_after_the_instance(world: World) -> None:
    instance_id = world.instance()
    result = world.trigger(instance_id, "terminated")
    assert (result.outcome, result.instance_id) == ("started", instance_id)
    (execution,) = world.executions()
    assert execution["name"] == f"repair-{instance_id}"
    started = world.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(started["input"]) == {
        "spec": SPEC.model_dump(mode="json"),
        "instance_id": instance_id,
        "poll": {"interval_seconds": 15, "max_attempts": 40},
        "limits": {"max_repairs": 2, "pause_threshold_percent": 30},
    }


def test_the_same_event_ten_times_and_stopping_around_terminated_start_exactly_one_repair(world: World) -> None:
    instance_id = world.instance()
    states = ["stopping", *["terminated"] * 10, "stopping", "shutting-down", "stopped"]
    outcomes = [world.trigger(instance_id, state).outcome for state in states]
    assert len(world.executions()) == 1
    assert set(outcomes) <= {"started", "duplicate"}
    # The input is the same whatever the event (no event id or time in it), so a running duplicate is
    # the same execution; once it has closed, the name is refused.
    (execution,) = world.executions()
    world.sfn.stop_execution(executionArn=execution["executionArn"])
    assert world.trigger(instance_id, "terminated").outcome == "duplicate"
    assert len(world.executions()) == 1


@pytest.mark.parametrize("cluster", ["other", None])
def test_instances_that_are_not_ours_are_ignored(world: World, cluster: str | None) -> None:
    instance_id = world.instance(cluster, record=None)
    result = world.trigger(instance_id, "terminated")
    assert result.outcome == "ignored"
    assert "not an instance of cluster demo" in result.reason
    assert world.executions() == []


def test_an_instance_ec2_no_longer_knows_is_ignored(world: World) -> None:
    assert world.trigger("i-0000000000000dead", "terminated").outcome == "ignored"
    assert world.executions() == []


@pytest.mark.parametrize("status", [ClusterStatus.TEARING_DOWN, ClusterStatus.DELETED])
def test_teardown_terminations_are_ours(world: World, status: ClusterStatus) -> None:
    instance_id = world.instance()
    world.store.set_status("demo", status)
    result = world.trigger(instance_id, "shutting-down")
    assert (result.outcome, result.reason) == ("ignored", f"cluster demo is {status.value}: our own teardown")
    assert world.executions() == []


@pytest.mark.parametrize("state", [NodeState.RETIRING, NodeState.FAILED, NodeState.REPLACED])
def test_nodes_a_workflow_of_ours_is_ending_are_ignored(world: World, state: NodeState) -> None:
    instance_id = world.instance(record=state)
    result = world.trigger(instance_id, "terminated")
    assert result.outcome == "ignored"
    assert state.value in result.reason
    assert world.executions() == []


def test_an_instance_that_never_joined_is_left_to_reconcile(world: World) -> None:
    instance_id = world.instance(record=None)
    assert "never joined" in world.trigger(instance_id, "terminated").reason
    assert world.executions() == []


def test_states_that_are_no_failure_are_ignored(world: World) -> None:
    instance_id = world.instance()
    assert world.trigger(instance_id, "running").outcome == "ignored"
    assert world.executions() == []


def test_while_paused_nothing_starts_and_the_alarm_metric_is_emitted(world: World) -> None:
    instance_id = world.instance()
    world.store.pause_repairs("demo", "3 of 5 nodes unhealthy")
    result = world.trigger(instance_id, "terminated")
    assert (result.outcome, result.reason) == ("paused", "3 of 5 nodes unhealthy")
    assert world.executions() == []
    assert world.metrics == [("RepairPaused", {"cluster": "demo"})]


def test_the_handler_parses_the_event_samples(cluster_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.repair_trigger import app

    world = World()
    instance_id = world.instance()
    for name, value in {
        "CLUSTER_NAME": "demo",
        "TABLE_NAME": TABLE,
        "TOKEN_PARAMETER_PREFIX": "/swarmwarden/demo/tokens",
        "REPAIR_STATE_MACHINE_ARN": world.machine,
    }.items():
        monkeypatch.setenv(name, value)
    app.adapters.cache_clear()
    for sample in ("stopping", "terminated", "running"):
        data = json.loads((EVENTS / f"ec2-state-change-{sample}.json").read_text())
        data["detail"]["instance-id"] = instance_id
        app.lambda_handler(data, context())
    assert [e["name"] for e in world.executions()] == [f"repair-{instance_id}"]
    app.adapters.cache_clear()


def context() -> Any:
    from dataclasses import dataclass

    @dataclass
    class Context:
        function_name: str = "trigger"
        function_version: str = "$LATEST"
        invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:trigger"
        memory_limit_in_mb: int = 256
        aws_request_id: str = "req-1"

    return Context()
