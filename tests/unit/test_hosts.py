"""Launching, checking and terminating hosts against moto, through the HostsFunction use cases."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest
from swarmwarden import aws
from swarmwarden.adapters import tags
from swarmwarden.adapters.ecs import EcsCluster
from swarmwarden.adapters.hosts import Hosts, client_token, launch_template_name
from swarmwarden.adapters.network import Network
from swarmwarden.domain.model import ClusterSpec, LaunchResult, NetworkRef, Readiness, Role
from swarmwarden.domain.placement import plan_placements
from swarmwarden.errors import InvalidRequest
from swarmwarden.steps import hosts as steps

from tests.unit.ec2_world import register_with_ecs, ssm_agents

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef


class World:
    """A provisioned network and ECS cluster in moto, and the HostsFunction's adapters on top."""

    def __init__(self, spec: ClusterSpec, profiles: dict[str, str]) -> None:
        self.spec = spec
        self.profiles = profiles
        self.network = Network(aws.ec2()).ensure(spec)
        EcsCluster(aws.ecs()).ensure_cluster(spec.cluster_name)
        hosts = Hosts(aws.ec2(), aws.ssm(), {Role(role): arn for role, arn in profiles.items()})
        self.adapters = steps.Adapters(hosts=hosts, ecs=EcsCluster(aws.ecs()))

    def launch(self, run_id: str, **spec_changes: object) -> LaunchResult:
        spec = ClusterSpec.model_validate({**self.spec.model_dump(), **spec_changes})
        request = steps.Launch(action="launch", spec=spec, network=self.network, run_id=run_id)
        result = steps.run(request, self.adapters)
        assert isinstance(result, LaunchResult)
        return result

    def instances(self, *states: str) -> list[InstanceTypeDef]:
        filters = [tags.tag_filter(tags.CLUSTER, self.spec.cluster_name)]
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        reservations = aws.ec2().describe_instances(Filters=filters)["Reservations"]
        return [i for r in reservations for i in r["Instances"]]


@pytest.fixture
def world(ecs_ami: str, instance_profiles: dict[str, str]) -> World:
    return World(ClusterSpec(cluster_name="demo", ami_id=ecs_ami, managers=3, workers=2), instance_profiles)


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_hosts_run_the_ami_from_the_ssm_parameter(world: World, ecs_ami: str) -> None:
    result = world.launch("run-a")

    instances = world.instances()
    assert len(instances) == 5
    assert {i["ImageId"] for i in instances} == {ecs_ami}
    assert sorted(result.instance_ids) == sorted(i["InstanceId"] for i in instances)


def test_managers_are_spread_over_distinct_azs(world: World) -> None:
    result = world.launch("run-a")

    managers = [result.seed, *result.managers]
    assert [m.slot for m in managers] == ["manager-0", "manager-1", "manager-2"]
    assert sorted(m.az for m in managers) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    # Workers carry on the rotation, so no AZ gets more than two of the five hosts.
    assert max(Counter(h.az for h in [*managers, *result.workers]).values()) == 2
    subnet_of = {s.az: s.subnet_id for s in world.network.subnets}
    for instance in world.instances():
        assert instance["SubnetId"] == subnet_of[instance["Placement"]["AvailabilityZone"]]
        assert instance["PrivateIpAddress"]


def test_hosts_are_tagged_with_cluster_role_slot_and_run(world: World) -> None:
    result = world.launch("run-a")

    by_id = {i["InstanceId"]: tags_of(i) for i in world.instances()}
    for host in [result.seed, *result.managers, *result.workers]:
        assert (
            by_id[host.instance_id].items()
            >= {
                "swarmwarden:cluster": "demo",
                "swarmwarden:role": host.role.value,
                "swarmwarden:slot": host.slot,
                "swarmwarden:run": "run-a",
                "Name": f"demo-{host.slot}",
            }.items()
        )
    volumes = aws.ec2().describe_volumes(Filters=[tags.tag_filter(tags.CLUSTER, "demo")])
    assert len(volumes["Volumes"]) == 5


def test_each_role_has_a_launch_template_with_imdsv2_and_its_own_instance_profile(world: World, ecs_ami: str) -> None:
    result = world.launch("run-a")
    ec2 = aws.ec2()

    for role in Role:
        name = launch_template_name("demo", role)
        (version,) = ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Default"])[
            "LaunchTemplateVersions"
        ]
        data = version["LaunchTemplateData"]
        assert data["ImageId"] == ecs_ami
        assert data["InstanceType"] == "t3.small"
        assert data["IamInstanceProfile"] == {"Arn": world.profiles[role.value]}
        assert data["SecurityGroupIds"] == [world.network.security_group_id]
        assert data["MetadataOptions"] == {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 2,
            "HttpEndpoint": "enabled",
        }
        assert "KeyName" not in data  # no key pair unless asked for: SSM is the way in
        script = base64.b64decode(data["UserData"]).decode()
        assert "echo ECS_CLUSTER=demo >> /etc/ecs/ecs.config" in script
        assert "command -v aws >/dev/null 2>&1 || dnf install -y awscli-2" in script
        assert "systemctl enable --now docker" in script
        (template,) = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        assert tags_of(template)["swarmwarden:cluster"] == "demo"

    # Every instance came from its role's template. (moto does not copy the template's metadata
    # options or instance profile onto the instance, so the template is where IMDSv2 is checked.)
    template_id = {
        role.value: ec2.describe_launch_templates(LaunchTemplateNames=[launch_template_name("demo", role)])[
            "LaunchTemplates"
        ][0]["LaunchTemplateId"]
        for role in Role
    }
    for host in [result.seed, *result.managers, *result.workers]:
        (instance,) = [i for i in world.instances() if i["InstanceId"] == host.instance_id]
        assert tags_of(instance)["aws:ec2launchtemplate:id"] == template_id[host.role.value]
        assert instance["SecurityGroups"][0]["GroupId"] == world.network.security_group_id


def test_a_key_pair_is_set_only_when_asked_for(world: World) -> None:
    spec = ClusterSpec.model_validate({**world.spec.model_dump(), "key_name": "ops"})
    template = world.adapters.hosts.ensure_launch_template(spec, Role.WORKER, world.network.security_group_id)
    (version,) = aws.ec2().describe_launch_template_versions(
        LaunchTemplateId=template.template_id, Versions=["$Default"]
    )["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"]["KeyName"] == "ops"


def test_a_new_ami_or_instance_type_is_a_new_default_template_version(world: World) -> None:
    hosts, sg = world.adapters.hosts, world.network.security_group_id
    first = hosts.ensure_launch_template(world.spec, Role.WORKER, sg)
    assert hosts.ensure_launch_template(world.spec, Role.WORKER, sg) == first

    newer = ClusterSpec.model_validate({**world.spec.model_dump(), "ami_id": "ami-0fedcba9876543210"})
    second = hosts.ensure_launch_template(newer, Role.WORKER, sg)
    bigger = ClusterSpec.model_validate({**newer.model_dump(), "instance_type": "t3.large"})
    third = hosts.ensure_launch_template(bigger, Role.WORKER, sg)

    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert hosts.ensure_launch_template(bigger, Role.WORKER, sg) == third
    (template,) = aws.ec2().describe_launch_templates(LaunchTemplateIds=[first.template_id])["LaunchTemplates"]
    assert template["DefaultVersionNumber"] == 3


def test_launching_twice_in_the_same_run_launches_nothing_new(world: World) -> None:
    first = world.launch("run-a")
    second = world.launch("run-a")

    assert second == first
    assert len(world.instances()) == 5
    assert sorted(second.launched_instance_ids) == sorted(second.instance_ids)


def test_a_large_cluster_gets_exactly_one_instance_per_slot(world: World) -> None:
    result = world.launch("run-a", workers=24, max_workers=24)

    slots = [tags_of(i)["swarmwarden:slot"] for i in world.instances()]
    assert sorted(slots) == sorted([f"manager-{i}" for i in range(3)] + [f"worker-{i}" for i in range(24)])
    assert [w.slot for w in result.workers] == [f"worker-{i}" for i in range(24)]
    assert len(set(result.instance_ids)) == 27


def test_a_later_run_launches_only_the_missing_slots_and_compensation_takes_only_those(world: World) -> None:
    first = world.launch("run-a", workers=1)
    second = world.launch("run-b", workers=2)

    assert len(world.instances()) == 5
    assert set(first.instance_ids) < set(second.instance_ids)
    (added,) = second.launched_instance_ids
    assert [w.instance_id for w in second.workers if w.slot == "worker-1"] == [added]

    result = steps.run(steps.TerminateRun(action="terminate_run", spec=world.spec, run_id="run-b"), world.adapters)

    assert result == steps.Terminated(terminated=(added,))
    assert sorted(i["InstanceId"] for i in world.instances("pending", "running")) == sorted(first.instance_ids)
    # Terminating again finds nothing left of that run.
    again = steps.run(steps.TerminateRun(action="terminate_run", spec=world.spec, run_id="run-b"), world.adapters)
    assert again == steps.Terminated(terminated=())


def test_a_slot_whose_instance_is_gone_is_launched_again(world: World) -> None:
    first = world.launch("run-a")
    aws.ec2().terminate_instances(InstanceIds=[first.seed.instance_id])

    second = world.launch("run-b")

    assert second.seed.slot == "manager-0"
    assert second.seed.instance_id != first.seed.instance_id
    assert second.launched_instance_ids == (second.seed.instance_id,)


def test_a_placement_outside_the_network_is_refused(world: World) -> None:
    network = NetworkRef(
        vpc_id=world.network.vpc_id,
        security_group_id=world.network.security_group_id,
        subnets=world.network.subnets[:1],
    )
    hosts = world.adapters.hosts
    with pytest.raises(InvalidRequest, match="no subnet in us-east-1b"):
        hosts.launch(world.spec, network, plan_placements(world.spec, ["us-east-1a", "us-east-1b"]), "run-a")


def test_launch_needs_an_instance_profile_per_role(world: World) -> None:
    hosts = Hosts(aws.ec2(), aws.ssm(), {Role.MANAGER: world.profiles["manager"], Role.WORKER: ""})
    with pytest.raises(InvalidRequest, match="WORKER_INSTANCE_PROFILE_ARN"):
        hosts.ensure_launch_template(world.spec, Role.WORKER, world.network.security_group_id)


def test_client_tokens_are_deterministic_short_and_distinct() -> None:
    token = client_token("demo", "provision-" + "x" * 70, "worker-99")
    assert token == client_token("demo", "provision-" + "x" * 70, "worker-99")
    assert len(token) <= 64
    assert len({client_token("demo", run, slot) for run in ("a", "b") for slot in ("manager-0", "worker-0")}) == 4


class TestReadiness:
    def check(self, world: World, ids: list[str], attempt: int = 0, max_attempts: int = 40) -> Readiness:
        request = steps.CheckReady(
            action="check_ready",
            spec=world.spec,
            instance_ids=tuple(ids),
            attempt=attempt,
            max_attempts=max_attempts,
        )
        result = steps.run(request, world.adapters)
        assert isinstance(result, Readiness)
        return result

    def test_ready_when_running_online_and_registered(self, world: World) -> None:
        ids = list(world.launch("run-a").instance_ids)
        register_with_ecs(ids)

        with ssm_agents(ids, online=ids) as stub:
            readiness = self.check(world, ids)
            stub.assert_no_pending_responses()

        assert readiness.ready
        assert readiness.not_ready == {}
        assert readiness.attempt == 1
        assert not readiness.exhausted
        assert readiness.summary.startswith("all 5 hosts ready: ")

    def test_each_host_that_is_not_ready_says_why(self, world: World) -> None:
        result = world.launch("run-a")
        seed, offline, unregistered, stopped, fine = result.instance_ids
        aws.ec2().stop_instances(InstanceIds=[stopped])
        register_with_ecs([seed, offline, fine])
        missing = "i-0123456789abcdef0"
        running = [seed, offline, unregistered, fine]

        with ssm_agents(running, online=[seed, unregistered, fine]):
            readiness = self.check(world, [*result.instance_ids, missing], attempt=3, max_attempts=4)

        assert not readiness.ready
        assert readiness.exhausted
        assert readiness.attempt == 4
        assert readiness.not_ready == {
            offline: ["SSM agent not online"],
            unregistered: ["not registered with ECS cluster demo"],
            stopped: ["state stopped"],
            missing: ["not found"],
        }
        assert readiness.summary.startswith("4 of 6 hosts not ready: ")
        assert f"{offline}: SSM agent not online" in readiness.summary
        assert f"{stopped}: state stopped" in readiness.summary
        assert "\n" not in readiness.summary

    def test_nothing_running_asks_neither_ssm_nor_ecs(self, world: World) -> None:
        ids = list(world.launch("run-a", managers=1, workers=0).instance_ids)
        aws.ec2().stop_instances(InstanceIds=ids)

        with ssm_agents([], online=[]) as stub:
            readiness = self.check(world, ids)
            # The stubbed response is still queued: SSM was not called.
            with pytest.raises(AssertionError):
                stub.assert_no_pending_responses()

        assert readiness.not_ready == {ids[0]: ["state stopped"]}


class TestTeardown:
    def test_terminate_cluster_then_wait_until_none_remain(self, world: World) -> None:
        launched = world.launch("run-a")
        spec = world.spec
        check = steps.CheckTerminated(action="check_terminated", spec=spec, attempt=0, max_attempts=2)

        terminating = steps.run(steps.TerminateCluster(action="terminate_cluster", spec=spec), world.adapters)

        assert terminating == steps.Terminating(terminating=tuple(sorted(launched.instance_ids)))
        done = steps.run(check, world.adapters)
        assert done == steps.Termination(
            done=True, exhausted=False, attempt=1, remaining=(), summary="all instances terminated"
        )
        again = steps.run(steps.TerminateCluster(action="terminate_cluster", spec=spec), world.adapters)
        assert again == steps.Terminating(terminating=())

    def test_check_terminated_names_what_remains(self, world: World) -> None:
        launched = world.launch("run-a", managers=1, workers=0)
        check = steps.CheckTerminated(action="check_terminated", spec=world.spec, attempt=1, max_attempts=2)

        result = steps.run(check, world.adapters)

        assert result == steps.Termination(
            done=False,
            exhausted=True,
            attempt=2,
            remaining=launched.instance_ids,
            summary=f"not terminated yet (1): {launched.seed.instance_id}",
        )

    def test_teardown_removes_everything_provision_created(self, world: World) -> None:
        world.launch("run-a")
        network, ecs = Network(aws.ec2()), EcsCluster(aws.ecs())
        register_with_ecs([i["InstanceId"] for i in world.instances()])

        for _ in range(2):  # a second teardown finds nothing to do, and does not fail
            world.adapters.hosts.terminate_cluster("demo")
            assert world.adapters.hosts.remaining("demo") == []
            network.delete("demo")
            ecs.delete_cluster("demo")

        ec2 = aws.ec2()
        ours = [tags.tag_filter(tags.CLUSTER, "demo")]
        assert {i["State"]["Name"] for i in world.instances()} == {"terminated"}
        assert ec2.describe_vpcs(Filters=ours)["Vpcs"] == []
        assert ec2.describe_subnets(Filters=ours)["Subnets"] == []
        assert ec2.describe_security_groups(Filters=ours)["SecurityGroups"] == []
        assert ec2.describe_internet_gateways(Filters=ours)["InternetGateways"] == []
        assert ec2.describe_route_tables(Filters=ours)["RouteTables"] == []
        assert ec2.describe_launch_templates(Filters=ours)["LaunchTemplates"] == []
        assert [c["status"] for c in aws.ecs().describe_clusters(clusters=["demo"])["clusters"]] == ["INACTIVE"]
