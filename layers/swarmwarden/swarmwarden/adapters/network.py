"""The cluster's network on EC2: VPC, subnets, internet gateway, routes and the swarm security group.

Every piece carries the `swarmwarden:cluster` tag and is found by it before anything is created, so
ensuring twice converges on the same ids, and deleting finds whatever a half-finished run left behind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from swarmwarden.adapters import tags
from swarmwarden.domain.model import ClusterSpec, NetworkRef, Subnet
from swarmwarden.domain.placement import subnet_cidrs
from swarmwarden.errors import InvalidRequest, TransientError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        IpPermissionTypeDef,
        SecurityGroupRuleTypeDef,
        TagSpecificationTypeDef,
    )

ANYWHERE = "0.0.0.0/0"
MAX_SUBNETS = 8

# (protocol, port) pairs the swarm nodes use between each other. IP protocol 50 (ESP) is needed
# only for encrypted overlay networks (`--opt encrypted`), which we do not create: left out on purpose.
SWARM_PORTS: tuple[tuple[str, int, str], ...] = (
    ("tcp", 2377, "swarm cluster management"),
    ("tcp", 7946, "swarm gossip"),
    ("udp", 7946, "swarm gossip"),
    ("udp", 4789, "swarm overlay data (VXLAN)"),
)

# One ingress permission: protocol, from port, to port, source (a group id or a CIDR).
Rule = tuple[str, int, int, str]


def _tag_specification(resource: ResourceTypeType, cluster: str, name: str) -> TagSpecificationTypeDef:
    return tags.tag_specification(resource, {tags.CLUSTER: cluster, tags.NAME: name})


def _ours(cluster: str) -> FilterTypeDef:
    return tags.tag_filter(tags.CLUSTER, cluster)


def security_group_name(cluster: str) -> str:
    return f"{cluster}-swarm"


def assign_subnet_cidrs(
    vpc_cidr: ipaddress.IPv4Network, azs: Sequence[str], existing: Mapping[str, str]
) -> dict[str, str]:
    """The CIDR of each AZ's subnet: an existing subnet keeps its own; a new one takes the first free
    block of the VPC's layout. On a fresh VPC that is simply the i-th block for the i-th AZ, and a
    change in the AZ list later never collides with subnets already there."""
    taken = set(existing.values())
    free = (str(block) for block in subnet_cidrs(vpc_cidr, MAX_SUBNETS) if str(block) not in taken)
    return {az: existing[az] if az in existing else next(free) for az in azs}


def swarm_rules(group_id: str) -> set[Rule]:
    return {(protocol, port, port, group_id) for protocol, port, _ in SWARM_PORTS}


def rule_of(rule: SecurityGroupRuleTypeDef) -> Rule:
    source = (
        rule.get("ReferencedGroupInfo", {}).get("GroupId")
        or rule.get("CidrIpv4")
        or rule.get("CidrIpv6")
        or rule.get("PrefixListId", "")
    )
    return (rule["IpProtocol"], rule.get("FromPort", -1), rule.get("ToPort", -1), source)


def _from_itself(group_id: str, protocol: str, port: int, description: str) -> IpPermissionTypeDef:
    return {
        "IpProtocol": protocol,
        "FromPort": port,
        "ToPort": port,
        "UserIdGroupPairs": [{"GroupId": group_id, "Description": description}],
    }


@contextmanager
def _dependencies_may_linger() -> Iterator[None]:
    """Right after instances terminate, their network interfaces take a while to go; EC2 answers
    DependencyViolation meanwhile. That is worth a retry with backoff, not a failed teardown."""
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "DependencyViolation":
            raise TransientError(f"network still in use: {error}") from error
        raise


class Network:
    """Ensures and deletes one cluster's network."""

    def __init__(self, ec2: EC2Client) -> None:
        self._ec2 = ec2

    def ensure(self, spec: ClusterSpec) -> NetworkRef:
        cluster = spec.cluster_name
        vpc_id = self._ensure_vpc(spec)
        azs = self.availability_zones(spec.max_azs)
        subnets = self._ensure_subnets(spec, vpc_id, azs)
        gateway_id = self._ensure_internet_gateway(cluster, vpc_id)
        self._ensure_routes(cluster, vpc_id, gateway_id, [s.subnet_id for s in subnets])
        group_id = self._ensure_security_group(cluster, vpc_id)
        return NetworkRef(vpc_id=vpc_id, security_group_id=group_id, subnets=tuple(subnets))

    def availability_zones(self, limit: int) -> list[str]:
        """The region's first `limit` available AZs by name (local and wavelength zones excluded)."""
        zones = self._ec2.describe_availability_zones(
            Filters=[
                {"Name": "state", "Values": ["available"]},
                {"Name": "zone-type", "Values": ["availability-zone"]},
            ]
        )["AvailabilityZones"]
        return sorted(zone["ZoneName"] for zone in zones)[:limit]

    def _ensure_vpc(self, spec: ClusterSpec) -> str:
        cluster = spec.cluster_name
        vpcs = self._ec2.describe_vpcs(Filters=[_ours(cluster)])["Vpcs"]
        if vpcs:
            vpc = vpcs[0]
            if vpc["CidrBlock"] != str(spec.vpc_cidr):
                raise InvalidRequest(
                    f"vpc_cidr cannot change: the cluster's VPC {vpc['VpcId']} is {vpc['CidrBlock']}, "
                    f"the spec asks for {spec.vpc_cidr}"
                )
            vpc_id = vpc["VpcId"]
        else:
            vpc_id = self._ec2.create_vpc(
                CidrBlock=str(spec.vpc_cidr),
                TagSpecifications=[_tag_specification("vpc", cluster, f"{cluster}-vpc")],
            )["Vpc"]["VpcId"]
        # Set every time (cheap and idempotent), so a run that died right after CreateVpc still converges.
        # Hosts need DNS to resolve the SSM, ECS and Parameter Store endpoints.
        self._ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
        self._ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        return vpc_id

    def _ensure_subnets(self, spec: ClusterSpec, vpc_id: str, azs: Sequence[str]) -> list[Subnet]:
        cluster = spec.cluster_name
        found = self._ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, _ours(cluster)])
        by_az = {s["AvailabilityZone"]: s for s in found["Subnets"]}
        cidrs = assign_subnet_cidrs(spec.vpc_cidr, azs, {az: s["CidrBlock"] for az, s in by_az.items()})
        subnets = []
        for az in azs:
            if az in by_az:
                subnet_id = by_az[az]["SubnetId"]
            else:
                subnet_id = self._ec2.create_subnet(
                    VpcId=vpc_id,
                    CidrBlock=cidrs[az],
                    AvailabilityZone=az,
                    TagSpecifications=[_tag_specification("subnet", cluster, f"{cluster}-{az}")],
                )["Subnet"]["SubnetId"]
            # Public addresses give the hosts outbound access to the SSM, ECS and package endpoints
            # through the internet gateway, without a NAT gateway's hourly cost. Nothing comes in:
            # the security group admits only swarm traffic from its own members.
            self._ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
            subnets.append(Subnet(subnet_id=subnet_id, az=az, cidr=cidrs[az]))
        return subnets

    def _ensure_internet_gateway(self, cluster: str, vpc_id: str) -> str:
        gateways = self._ec2.describe_internet_gateways(Filters=[_ours(cluster)])["InternetGateways"]
        if gateways:
            gateway = gateways[0]
            gateway_id = gateway["InternetGatewayId"]
            attached = {a["VpcId"] for a in gateway.get("Attachments", [])}
        else:
            gateway_id = self._ec2.create_internet_gateway(
                TagSpecifications=[_tag_specification("internet-gateway", cluster, f"{cluster}-igw")]
            )["InternetGateway"]["InternetGatewayId"]
            attached = set()
        if vpc_id not in attached:
            self._ec2.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc_id)
        return gateway_id

    def _ensure_routes(self, cluster: str, vpc_id: str, gateway_id: str, subnet_ids: Sequence[str]) -> None:
        tables = self._ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, _ours(cluster)])[
            "RouteTables"
        ]
        if tables:
            table = tables[0]
            table_id = table["RouteTableId"]
            routes = {r.get("DestinationCidrBlock"): r.get("GatewayId") for r in table.get("Routes", [])}
            associated = {a.get("SubnetId") for a in table.get("Associations", [])}
        else:
            table_id = self._ec2.create_route_table(
                VpcId=vpc_id,
                TagSpecifications=[_tag_specification("route-table", cluster, f"{cluster}-public")],
            )["RouteTable"]["RouteTableId"]
            routes, associated = {}, set()
        if ANYWHERE not in routes:
            self._ec2.create_route(RouteTableId=table_id, DestinationCidrBlock=ANYWHERE, GatewayId=gateway_id)
        elif routes[ANYWHERE] != gateway_id:
            self._ec2.replace_route(RouteTableId=table_id, DestinationCidrBlock=ANYWHERE, GatewayId=gateway_id)
        for subnet_id in subnet_ids:
            if subnet_id not in associated:
                self._ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)

    def _ensure_security_group(self, cluster: str, vpc_id: str) -> str:
        name = security_group_name(cluster)
        groups = self._ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
        )["SecurityGroups"]
        if groups:
            group_id = groups[0]["GroupId"]
        else:
            group_id = self._ec2.create_security_group(
                GroupName=name,
                Description=f"swarmwarden {cluster}: swarm traffic between the cluster's hosts only",
                VpcId=vpc_id,
                TagSpecifications=[_tag_specification("security-group", cluster, name)],
            )["GroupId"]
        # Converge to exactly the swarm rules: anything added by hand (say, SSH) is taken away again.
        # Egress stays at the default allow-all: hosts reach AWS endpoints and package mirrors.
        current = self._ingress_rules(group_id)
        wanted = swarm_rules(group_id)
        if missing := [
            _from_itself(group_id, protocol, port, description)
            for protocol, port, description in SWARM_PORTS
            if (protocol, port, port, group_id) not in current
        ]:
            self._ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing)
        if extra := [rule_id for rule, rule_id in current.items() if rule not in wanted]:
            self._ec2.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=extra)
        return group_id

    def _ingress_rules(self, group_id: str) -> dict[Rule, str]:
        """The group's ingress rules, each with its rule id (revoking by id needs no exact rule shape)."""
        pages = self._ec2.get_paginator("describe_security_group_rules").paginate(
            Filters=[{"Name": "group-id", "Values": [group_id]}]
        )
        return {
            rule_of(rule): rule["SecurityGroupRuleId"]
            for page in pages
            for rule in page["SecurityGroupRules"]
            if not rule["IsEgress"]
        }

    def delete(self, cluster: str) -> dict[str, int]:
        """Deletes the cluster's network in dependency order and counts what went, by kind. The
        instances must be gone already (the teardown workflow waits for that). The launch templates
        go too: they reference the security group. Running it again finds nothing and deletes nothing."""
        with _dependencies_may_linger():
            return {
                "launch_template": self._delete_launch_templates(cluster),
                "security_group": self._delete_security_groups(cluster),
                "route_table": self._delete_route_tables(cluster),
                "internet_gateway": self._delete_internet_gateways(cluster),
                "subnet": self._delete_subnets(cluster),
                "vpc": self._delete_vpcs(cluster),
            }

    def _delete_launch_templates(self, cluster: str) -> int:
        templates = self._ec2.describe_launch_templates(Filters=[_ours(cluster)])["LaunchTemplates"]
        for template in templates:
            self._ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
        return len(templates)

    def _delete_security_groups(self, cluster: str) -> int:
        groups = self._ec2.describe_security_groups(Filters=[_ours(cluster)])["SecurityGroups"]
        for group in groups:
            # The group references itself; drop the rules first so nothing points at it.
            if rule_ids := list(self._ingress_rules(group["GroupId"]).values()):
                self._ec2.revoke_security_group_ingress(GroupId=group["GroupId"], SecurityGroupRuleIds=rule_ids)
            self._ec2.delete_security_group(GroupId=group["GroupId"])
        return len(groups)

    def _delete_route_tables(self, cluster: str) -> int:
        tables = self._ec2.describe_route_tables(Filters=[_ours(cluster)])["RouteTables"]
        for table in tables:
            for association in table.get("Associations", []):
                if not association.get("Main"):
                    self._ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
            self._ec2.delete_route_table(RouteTableId=table["RouteTableId"])
        return len(tables)

    def _delete_internet_gateways(self, cluster: str) -> int:
        gateways = self._ec2.describe_internet_gateways(Filters=[_ours(cluster)])["InternetGateways"]
        for gateway in gateways:
            gateway_id = gateway["InternetGatewayId"]
            for attachment in gateway.get("Attachments", []):
                self._ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=attachment["VpcId"])
            self._ec2.delete_internet_gateway(InternetGatewayId=gateway_id)
        return len(gateways)

    def _delete_subnets(self, cluster: str) -> int:
        subnets = self._ec2.describe_subnets(Filters=[_ours(cluster)])["Subnets"]
        for subnet in subnets:
            self._ec2.delete_subnet(SubnetId=subnet["SubnetId"])
        return len(subnets)

    def _delete_vpcs(self, cluster: str) -> int:
        vpcs = self._ec2.describe_vpcs(Filters=[_ours(cluster)])["Vpcs"]
        for vpc in vpcs:
            self._ec2.delete_vpc(VpcId=vpc["VpcId"])
        return len(vpcs)
