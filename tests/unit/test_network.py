"""The network and ECS adapters against moto: idempotent ensure, an exact security group, clean deletes."""

import ipaddress
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from swarmwarden import aws
from swarmwarden.adapters import tags
from swarmwarden.adapters.ecs import EcsCluster
from swarmwarden.adapters.hosts import Hosts
from swarmwarden.adapters.network import Network, assign_subnet_cidrs, rule_of, swarm_rules
from swarmwarden.domain.model import ClusterSpec, Role
from swarmwarden.domain.placement import subnet_cidrs
from swarmwarden.errors import InvalidRequest, TransientError

from tests.unit.ec2_world import bare_instances, register_with_ecs

SPEC = ClusterSpec(cluster_name="demo", ami_id="ami-0123456789abcdef0")
OTHER = ClusterSpec(cluster_name="other", ami_id="ami-0123456789abcdef0", vpc_cidr="10.50.0.0/16")
OURS = [tags.tag_filter(tags.CLUSTER, "demo")]


@pytest.fixture
def network(mocked_aws: None) -> Network:
    return Network(aws.ec2())


def test_ensuring_twice_yields_the_same_network(network: Network) -> None:
    first = network.ensure(SPEC)
    second = network.ensure(SPEC)

    assert second == first
    ec2 = aws.ec2()
    assert [v["VpcId"] for v in ec2.describe_vpcs(Filters=OURS)["Vpcs"]] == [first.vpc_id]
    assert len(ec2.describe_subnets(Filters=OURS)["Subnets"]) == 3
    assert len(ec2.describe_internet_gateways(Filters=OURS)["InternetGateways"]) == 1
    assert len(ec2.describe_route_tables(Filters=OURS)["RouteTables"]) == 1
    assert [g["GroupId"] for g in ec2.describe_security_groups(Filters=OURS)["SecurityGroups"]] == [
        first.security_group_id
    ]


def test_one_public_subnet_per_az_with_the_planned_cidrs(network: Network) -> None:
    ref = network.ensure(SPEC)

    azs = [s.az for s in ref.subnets]
    assert azs == ["us-east-1a", "us-east-1b", "us-east-1c"]  # the first three by name
    assert [s.cidr for s in ref.subnets] == [str(c) for c in subnet_cidrs(SPEC.vpc_cidr, 3)]
    described = aws.ec2().describe_subnets(SubnetIds=[s.subnet_id for s in ref.subnets])["Subnets"]
    assert {s["AvailabilityZone"] for s in described} == set(azs)
    assert all(s["MapPublicIpOnLaunch"] for s in described)
    assert all(s["VpcId"] == ref.vpc_id for s in described)


def test_max_azs_bounds_the_subnets(network: Network) -> None:
    ref = network.ensure(SPEC.model_validate({**SPEC.model_dump(), "max_azs": 2}))
    assert [s.az for s in ref.subnets] == ["us-east-1a", "us-east-1b"]


def test_vpc_has_dns_and_a_default_route_to_its_internet_gateway(network: Network) -> None:
    ref = network.ensure(SPEC)
    ec2 = aws.ec2()

    assert ec2.describe_vpc_attribute(VpcId=ref.vpc_id, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]
    hostnames = ec2.describe_vpc_attribute(VpcId=ref.vpc_id, Attribute="enableDnsHostnames")
    assert hostnames["EnableDnsHostnames"]["Value"]
    (gateway,) = ec2.describe_internet_gateways(Filters=OURS)["InternetGateways"]
    assert [a["VpcId"] for a in gateway["Attachments"]] == [ref.vpc_id]
    (table,) = ec2.describe_route_tables(Filters=OURS)["RouteTables"]
    routes = {r.get("DestinationCidrBlock"): r.get("GatewayId") for r in table["Routes"]}
    assert routes["0.0.0.0/0"] == gateway["InternetGatewayId"]
    assert {a["SubnetId"] for a in table["Associations"]} == {s.subnet_id for s in ref.subnets}
    (vpc,) = ec2.describe_vpcs(VpcIds=[ref.vpc_id])["Vpcs"]
    assert {t["Key"]: t["Value"] for t in vpc["Tags"]} == {"swarmwarden:cluster": "demo", "Name": "demo-vpc"}


def test_security_group_allows_only_the_swarm_ports_from_itself(network: Network) -> None:
    ref = network.ensure(SPEC)
    (group,) = aws.ec2().describe_security_groups(GroupIds=[ref.security_group_id])["SecurityGroups"]

    def from_itself(protocol: str, port: int, description: str) -> dict[str, Any]:
        pair = {"GroupId": ref.security_group_id, "UserId": "123456789012", "Description": description}
        return {
            "IpProtocol": protocol,
            "FromPort": port,
            "ToPort": port,
            "UserIdGroupPairs": [pair],
            "IpRanges": [],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }

    assert group["GroupName"] == "demo-swarm"
    # The exact ingress: the swarm ports, from members of the group only. No CIDR, no SSH, no ESP.
    assert sorted(group["IpPermissions"], key=lambda p: (p["IpProtocol"], p["FromPort"])) == [
        from_itself("tcp", 2377, "swarm cluster management"),
        from_itself("tcp", 7946, "swarm gossip"),
        from_itself("udp", 4789, "swarm overlay data (VXLAN)"),
        from_itself("udp", 7946, "swarm gossip"),
    ]
    assert group["IpPermissionsEgress"] == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [],
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]


def test_ensure_takes_away_ingress_added_by_hand(network: Network) -> None:
    ref = network.ensure(SPEC)
    ec2 = aws.ec2()
    ec2.authorize_security_group_ingress(
        GroupId=ref.security_group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "udp", "FromPort": 4789, "ToPort": 4789, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ],
    )

    network.ensure(SPEC)

    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [ref.security_group_id]}])
    ingress = {rule_of(r) for r in rules["SecurityGroupRules"] if not r["IsEgress"]}
    assert ingress == swarm_rules(ref.security_group_id)


def test_a_changed_vpc_cidr_is_refused(network: Network) -> None:
    network.ensure(SPEC)
    with pytest.raises(InvalidRequest, match="vpc_cidr cannot change"):
        network.ensure(SPEC.model_validate({**SPEC.model_dump(), "vpc_cidr": "10.43.0.0/16"}))


def test_delete_removes_everything_and_a_second_delete_finds_nothing(
    network: Network, instance_profiles: dict[str, str]
) -> None:
    ref = network.ensure(SPEC)
    hosts = Hosts(aws.ec2(), aws.ssm(), {Role(r): arn for r, arn in instance_profiles.items()})
    for role in Role:
        hosts.ensure_launch_template(SPEC, role, ref.security_group_id)
    ec2 = aws.ec2()

    assert network.delete("demo") == {
        "launch_template": 2,
        "security_group": 1,
        "route_table": 1,
        "internet_gateway": 1,
        "subnet": 3,
        "vpc": 1,
    }
    assert ec2.describe_vpcs(Filters=OURS)["Vpcs"] == []
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [ref.vpc_id]}])["Vpcs"] == []
    assert ec2.describe_subnets(Filters=OURS)["Subnets"] == []
    assert ec2.describe_internet_gateways(Filters=OURS)["InternetGateways"] == []
    assert ec2.describe_route_tables(Filters=OURS)["RouteTables"] == []
    assert ec2.describe_security_groups(Filters=OURS)["SecurityGroups"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert set(network.delete("demo").values()) == {0}


def test_delete_leaves_other_clusters_alone(network: Network) -> None:
    other = network.ensure(OTHER)
    network.ensure(SPEC)

    network.delete("demo")

    assert [v["VpcId"] for v in aws.ec2().describe_vpcs(VpcIds=[other.vpc_id])["Vpcs"]] == [other.vpc_id]
    assert network.ensure(OTHER) == other


def test_a_network_still_in_use_is_a_transient_error() -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_launch_templates", service_error_code="DependencyViolation")
        with pytest.raises(TransientError, match="network still in use"):
            Network(ec2).delete("demo")


AZ_NAMES = st.lists(st.sampled_from([f"zone-{c}" for c in "abcdefgh"]), min_size=1, max_size=8, unique=True)


@given(azs=AZ_NAMES, data=st.data())
def test_subnet_cidrs_stay_distinct_inside_the_vpc_whatever_exists_already(azs: list[str], data: st.DataObject) -> None:
    vpc = ipaddress.IPv4Network("10.42.0.0/16")
    layout = [str(c) for c in subnet_cidrs(vpc, 8)]
    # Some AZs already have a subnet, holding some block of the layout (not necessarily "theirs").
    kept = data.draw(st.lists(st.sampled_from(azs), unique=True))
    blocks = data.draw(st.permutations(layout))
    existing = dict(zip(kept, blocks, strict=False))

    assigned = assign_subnet_cidrs(vpc, azs, existing)

    assert list(assigned) == azs
    assert len(set(assigned.values())) == len(azs)
    assert all(ipaddress.IPv4Network(c).subnet_of(vpc) for c in assigned.values())
    assert all(assigned[az] == cidr for az, cidr in existing.items())


@given(azs=AZ_NAMES)
def test_a_fresh_vpc_gives_the_ith_az_the_ith_block(azs: list[str]) -> None:
    vpc = ipaddress.IPv4Network("10.42.0.0/16")
    assert list(assign_subnet_cidrs(vpc, azs, {}).values()) == [str(c) for c in subnet_cidrs(vpc, len(azs))]


class TestEcsCluster:
    @pytest.fixture
    def ecs(self, mocked_aws: None) -> EcsCluster:
        return EcsCluster(aws.ecs())

    def test_ensure_is_idempotent_and_tags_the_cluster(self, ecs: EcsCluster) -> None:
        arn = ecs.ensure_cluster("demo")
        instances = bare_instances(1)
        register_with_ecs(instances)

        assert ecs.ensure_cluster("demo") == arn
        (cluster,) = aws.ecs().describe_clusters(clusters=["demo"], include=["TAGS"])["clusters"]
        assert cluster["tags"] == [{"key": "swarmwarden:cluster", "value": "demo"}]
        # Ensuring again did not replace the cluster (moto would drop its instances).
        assert ecs.registered_instance_ids("demo") == set(instances)

    def test_registered_instances_are_the_active_ones(self, ecs: EcsCluster) -> None:
        ecs.ensure_cluster("demo")
        instances = bare_instances(2)
        register_with_ecs(instances)
        assert ecs.registered_instance_ids("demo") == set(instances)

    def test_delete_deregisters_leftovers_and_is_idempotent(self, ecs: EcsCluster) -> None:
        ecs.ensure_cluster("demo")
        register_with_ecs(bare_instances(1))

        assert ecs.delete_cluster("demo") is True
        assert ecs.delete_cluster("demo") is False
        assert aws.ecs().list_container_instances(cluster="demo")["containerInstanceArns"] == []
        (cluster,) = aws.ecs().describe_clusters(clusters=["demo"])["clusters"]
        assert cluster["status"] == "INACTIVE"

    def test_delete_of_a_cluster_that_never_existed(self, ecs: EcsCluster) -> None:
        assert ecs.delete_cluster("demo") is False

    def test_ensure_after_delete_makes_a_new_active_cluster(self, ecs: EcsCluster) -> None:
        ecs.ensure_cluster("demo")
        ecs.delete_cluster("demo")
        ecs.ensure_cluster("demo")
        (cluster,) = aws.ecs().describe_clusters(clusters=["demo"])["clusters"]
        assert cluster["status"] == "ACTIVE"
