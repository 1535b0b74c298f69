"""NetworkFunction and HostsFunction end to end through their handlers, fed the sample events the
state machines send (events/steps/), against moto: provision's first steps, then teardown, twice."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from swarmwarden.errors import InvalidRequest

from functions.hosts import app as hosts_app
from functions.network import app as network_app
from tests.unit.ec2_world import register_with_ecs, ssm_agents

EVENTS = Path(__file__).parents[2] / "events" / "steps"


@dataclass
class Context:
    """The attributes of a Lambda context that Powertools' Logger reads."""

    function_name: str = "demo-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:demo-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


def sample(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event | changes


@pytest.fixture
def function_environment(monkeypatch: pytest.MonkeyPatch, instance_profiles: dict[str, str]) -> dict[str, str]:
    """What template.yaml gives the two functions."""
    for name, value in {
        "CLUSTER_NAME": "demo",
        "TABLE_NAME": "demo-cluster",
        "TOKEN_PARAMETER_PREFIX": "/swarmwarden/demo/tokens",
        "MANAGER_INSTANCE_PROFILE_ARN": instance_profiles["manager"],
        "WORKER_INSTANCE_PROFILE_ARN": instance_profiles["worker"],
    }.items():
        monkeypatch.setenv(name, value)
    return instance_profiles


def network_fn(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = network_app.lambda_handler(event, Context())
    return result


def hosts_fn(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = hosts_app.lambda_handler(event, Context())
    return result


def test_provision_steps_then_teardown_twice(function_environment: dict[str, str], ecs_ami: str) -> None:
    spec = sample("network-ensure_network")["spec"] | {"ami_id": ecs_ami}

    network = network_fn(sample("network-ensure_network", spec=spec))
    assert network_fn(sample("network-ensure_network", spec=spec)) == network
    cluster = network_fn(sample("network-ensure_ecs_cluster", spec=spec))
    assert cluster == {"cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo"}
    hosts = hosts_fn(sample("hosts-launch", spec=spec, network=network, run_id="provision-demo-1"))
    assert hosts["seed"]["slot"] == "manager-0"
    assert [m["slot"] for m in hosts["managers"]] == ["manager-1", "manager-2"]
    assert [w["slot"] for w in hosts["workers"]] == ["worker-0", "worker-1"]
    assert sorted(hosts["launched_instance_ids"]) == sorted(hosts["instance_ids"])

    ids = hosts["instance_ids"]
    check = sample("hosts-check_ready", spec=spec, instance_ids=ids)
    with ssm_agents(ids, online=ids):
        waiting = hosts_fn(check)
    assert waiting["ready"] is False
    assert set(waiting["not_ready"]) == set(ids)
    register_with_ecs(ids)
    with ssm_agents(ids, online=ids):
        ready = hosts_fn(check | {"attempt": waiting["attempt"]})
    assert ready == {
        "ready": True,
        "exhausted": False,
        "attempt": 2,
        "summary": f"all 5 hosts ready: {', '.join(ids)}",
        "not_ready": {},
    }

    teardowns = [
        (
            hosts_fn(sample("hosts-terminate_cluster", spec=spec)),
            hosts_fn(sample("hosts-check_terminated", spec=spec)),
            network_fn(sample("network-delete_network", spec=spec)),
            network_fn(sample("network-delete_ecs_cluster", spec=spec)),
        )
        for _ in range(2)  # teardown, and teardown again
    ]
    kinds = ["launch_template", "security_group", "route_table", "internet_gateway", "subnet", "vpc"]
    (terminating, terminated, network_deleted, ecs_deleted), again = teardowns
    assert sorted(terminating["terminating"]) == sorted(ids)
    assert terminated == {
        "done": True,
        "exhausted": False,
        "attempt": 1,
        "remaining": [],
        "summary": "all instances terminated",
    }
    assert network_deleted == {"deleted": dict(zip(kinds, [2, 1, 1, 1, 3, 1], strict=True))}
    assert ecs_deleted == {"deleted": True}
    assert again == (
        {"terminating": []},
        terminated,
        {"deleted": dict.fromkeys(kinds, 0)},
        {"deleted": False},
    )


def test_compensation_sample_terminates_only_its_run(function_environment: dict[str, str], ecs_ami: str) -> None:
    spec = sample("network-ensure_network")["spec"] | {"ami_id": ecs_ami}
    network = network_fn(sample("network-ensure_network", spec=spec))
    launch = sample("hosts-launch", spec=spec, network=network)

    hosts = hosts_fn(launch)

    assert hosts_fn(sample("hosts-terminate_run", spec=spec, run_id="another-run")) == {"terminated": []}
    terminated = hosts_fn(sample("hosts-terminate_run", spec=spec, run_id=launch["run_id"]))
    assert sorted(terminated["terminated"]) == sorted(hosts["launched_instance_ids"])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"spec": sample("hosts-launch")["spec"]}, "action"),
        (sample("hosts-launch", action="reboot"), "action"),
        ({k: v for k, v in sample("hosts-launch").items() if k != "run_id"}, "launch.run_id"),
        (sample("hosts-launch", run_id="no spaces allowed"), "launch.run_id"),
        (sample("hosts-check_ready", instance_ids=["not-an-instance"]), "check_ready.instance_ids.0"),
        (sample("hosts-check_ready", attempt=-1), "check_ready.attempt"),
        (sample("hosts-check_terminated", extra="field"), "check_terminated.extra"),
        (sample("hosts-terminate_cluster", spec=sample("hosts-launch")["spec"] | {"ami_id": "x"}), "spec.ami_id"),
    ],
)
def test_hosts_function_refuses_a_bad_event_naming_the_field(
    function_environment: dict[str, str], event: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
        hosts_fn(event)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (sample("network-ensure_network", action="ensure_everything"), "action"),
        (sample("network-delete_network", spec={"cluster_name": "Bad_Name"}), "delete_network.spec.cluster_name"),
        (sample("network-ensure_ecs_cluster", spec=None), "ensure_ecs_cluster.spec"),
    ],
)
def test_network_function_refuses_a_bad_event_naming_the_field(
    function_environment: dict[str, str], event: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
        network_fn(event)
