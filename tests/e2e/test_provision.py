"""`up` and `down` of a 3-manager, 2-worker cluster through the real workflows and handlers.

The tests run in file order on one cloud: up, then what up built, then down.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import docker
import pytest
from swarmwarden.commands import TOKEN_MARKER

from localcloud.cloud import LocalCloud
from localcloud.hosts import leftovers
from tests.e2e.conftest import start_cloud
from tests.e2e.surfaces import surfaces

pytestmark = pytest.mark.slow
PREFIX = "swe"
CLUSTER = "swarmwarden"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    yield from start_cloud(PREFIX, parameters={"ManagerCount": "3", "WorkerCount": "2"})


@pytest.fixture(scope="module")
def outputs(cloud: LocalCloud) -> dict[str, str]:
    return cloud.up(timeout=600)


def _instances(cloud: LocalCloud) -> list[dict]:
    pages = (
        cloud.client("ec2")
        .get_paginator("describe_instances")
        .paginate(Filters=[{"Name": "tag:swarmwarden:cluster", "Values": [CLUSTER]}])
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _tag(instance: dict, key: str) -> str:
    return next(t["Value"] for t in instance["Tags"] if t["Key"] == key)


def _swarm_nodes(cloud: LocalCloud) -> list[dict]:
    manager = next(h for iid, h in cloud.hosts.items() if cloud.agents.get(iid) and "manager" in _role_of(cloud, iid))
    client = docker.DockerClient(base_url=manager.docker_host, timeout=10)
    try:
        return [node.attrs for node in client.nodes.list()]
    finally:
        client.close()


def _role_of(cloud: LocalCloud, instance_id: str) -> str:
    return next(v.role for v in cloud.nodes(with_swarm=False) if v.instance_id == instance_id)


def test_up_provisions_the_planned_swarm_on_real_hosts(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    instances = [i for i in _instances(cloud) if i["State"]["Name"] == "running"]
    roles = Counter(_tag(i, "swarmwarden:role") for i in instances)
    assert roles == {"manager": 3, "worker": 2}
    manager_azs = {i["Placement"]["AvailabilityZone"] for i in instances if _tag(i, "swarmwarden:role") == "manager"}
    assert len(manager_azs) == 3, f"managers share AZs: {manager_azs}"
    assert sorted(outputs["ManagerInstanceIds"].split(",")) == sorted(
        i["InstanceId"] for i in instances if _tag(i, "swarmwarden:role") == "manager"
    )

    nodes = _swarm_nodes(cloud)
    by_addr = {n["Status"]["Addr"]: n for n in nodes}
    assert set(by_addr) == {i["PrivateIpAddress"] for i in instances}
    for instance in instances:
        node = by_addr[instance["PrivateIpAddress"]]
        assert node["Status"]["State"] == "ready"
        assert node["Spec"]["Role"] == _tag(instance, "swarmwarden:role")
        # Each host reports its own hostname, as an EC2 instance does.
        assert node["Description"]["Hostname"] == f"ip-{instance['PrivateIpAddress'].replace('.', '-')}"
    managers = [n for n in nodes if n["Spec"]["Role"] == "manager"]
    assert all(n["ManagerStatus"]["Reachability"] == "reachable" for n in managers)
    assert sum(bool(n["ManagerStatus"].get("Leader")) for n in managers) == 1
    assert (
        outputs["SwarmId"]
        == docker.DockerClient(
            base_url=cloud.hosts[outputs["ManagerInstanceIds"].split(",")[0]].docker_host
        ).swarm.attrs["ID"]
    )


def test_the_overlay_pool_lies_outside_the_vpc(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    manager = cloud.hosts[outputs["ManagerInstanceIds"].split(",")[0]]
    swarm = docker.DockerClient(base_url=manager.docker_host).swarm.attrs
    assert swarm["DefaultAddrPool"] == ["172.20.0.0/16"]


def test_the_table_matches_the_swarm(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    items = cloud.client("dynamodb").scan(TableName=outputs["ClusterTableName"])["Items"]
    spec = next(i for i in items if i["sk"]["S"] == "SPEC")
    assert spec["status"]["S"] == "ready"
    assert spec["swarm_id"]["S"] == outputs["SwarmId"]
    recorded = {i["sk"]["S"].removeprefix("NODE#"): i for i in items if i["sk"]["S"].startswith("NODE#")}
    running = {i["InstanceId"]: i for i in _instances(cloud) if i["State"]["Name"] == "running"}
    assert set(recorded) == set(running)
    nodes = {n["Status"]["Addr"]: n["ID"] for n in _swarm_nodes(cloud)}
    for instance_id, item in recorded.items():
        assert item["node_id"]["S"] == nodes[running[instance_id]["PrivateIpAddress"]]
        assert item["role"]["S"] == _tag(running[instance_id], "swarmwarden:role")
        assert item["az"]["S"] == running[instance_id]["Placement"]["AvailabilityZone"]


def test_the_workflows_polled_with_the_local_interval(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    (provision,) = [e for e in cloud.executions() if e["machine"].endswith("-provision")]
    described = cloud.client("stepfunctions").describe_execution(executionArn=provision["executionArn"])
    assert json.loads(described["input"])["poll"] == {"interval_seconds": 1, "max_attempts": 180}
    assert cloud.template.parameters["PollIntervalSeconds"] == "1"


def test_no_join_token_reaches_any_log_history_command_or_response(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    ssm = cloud.client("ssm")
    tokens = {
        role: ssm.get_parameter(Name=f"/swarmwarden/{CLUSTER}/tokens/{role}", WithDecryption=True)["Parameter"]
        for role in ("manager", "worker")
    }
    # The scan means something only if the tokens exist, as SecureString, and the surfaces are not empty.
    assert all(p["Type"] == "SecureString" and p["Value"].startswith(TOKEN_MARKER) for p in tokens.values())
    found = surfaces(cloud)
    for surface in ("lambda log", "lambda invocation", "execution history", "ssm command text", "ssm command output"):
        assert found[surface], f"nothing collected from {surface}"
    leaks = {
        surface: sum(TOKEN_MARKER in text or any(t["Value"] in text for t in tokens.values()) for text in texts)
        for surface, texts in found.items()
    }
    assert leaks == dict.fromkeys(found, 0)


def test_down_leaves_nothing_behind(cloud: LocalCloud, outputs: dict[str, str]) -> None:
    cloud.down(timeout=600)
    assert [i["InstanceId"] for i in _instances(cloud) if i["State"]["Name"] != "terminated"] == []
    ec2 = cloud.client("ec2")
    tagged = [{"Name": "tag:swarmwarden:cluster", "Values": [CLUSTER]}]
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []
    assert ec2.describe_security_groups(Filters=tagged)["SecurityGroups"] == []
    assert ec2.describe_subnets(Filters=tagged)["Subnets"] == []
    assert ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"] == []
    assert ec2.describe_launch_templates(Filters=tagged)["LaunchTemplates"] == []
    assert (
        cloud.client("ssm").get_parameters_by_path(Path=f"/swarmwarden/{CLUSTER}", Recursive=True)["Parameters"] == []
    )
    clusters = cloud.client("ecs").describe_clusters(clusters=[CLUSTER])["clusters"]
    assert all(c["status"] == "INACTIVE" for c in clusters)
    assert cloud.hosts == {}
    cloud.close()
    assert leftovers(PREFIX) == []
