"""The cluster's EC2 hosts: their launch templates, launching them by slot, their readiness signals, and
terminating them.

A host is identified by its tags (cluster + slot), not by an instance id we remembered: a launch
retried after a timeout finds the instance the first attempt made (moto ignores ClientToken, and
a ClientToken alone does not cover a retry with a new run id)."""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import batched
from typing import TYPE_CHECKING, Any

from swarmwarden.adapters import tags
from swarmwarden.domain.model import ClusterSpec, Host, NetworkRef, Role
from swarmwarden.domain.placement import Placement
from swarmwarden.domain.reconcile import Instance
from swarmwarden.errors import InvalidRequest

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef, RequestLaunchTemplateDataTypeDef
    from mypy_boto3_ssm import SSMClient

# Every state but `terminated`: an instance in any of these still counts against the cluster.
NOT_TERMINATED = ["pending", "running", "shutting-down", "stopping", "stopped"]
# Instances that hold a slot: a stopping or stopped one is repair's business, not a launch's.
HOLDING_SLOT = ["pending", "running"]
# DescribeInstanceInformation accepts at most 50 instance ids per filter; EC2 filters take 200 values.
SSM_BATCH = 50
EC2_FILTER_BATCH = 200
# Concurrent RunInstances calls: well under EC2's request-rate limits, fast enough for 100+ hosts.
LAUNCH_CONCURRENCY = 10


def launch_template_name(cluster: str, role: Role) -> str:
    return f"swarmwarden-{cluster}-{role.value}"


def client_token(cluster: str, run_id: str, slot: str) -> str:
    """RunInstances' idempotency key: the same (cluster, run, slot) always gives the same token,
    well within the 64-character limit."""
    digest = hashlib.sha256(f"{cluster}/{run_id}/{slot}".encode()).hexdigest()
    return f"sw-{digest[:48]}"


def user_data(cluster: str) -> str:
    """The boot script of every host: cloud-init runs it once, as root, on first boot; on the ECS AMI the
    agent starts after it, so it reads the cluster name written here."""
    ecs_line = shlex.quote(f"ECS_CLUSTER={cluster}")
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "# Without this the ECS agent registers in the cluster named 'default'.",
            "mkdir -p /etc/ecs",
            f"grep -qxF {ecs_line} /etc/ecs/ecs.config 2>/dev/null || echo {ecs_line} >> /etc/ecs/ecs.config",
            "systemctl enable --now docker",
            "# The ECS AMI is built from AL2023 minimal; the host scripts need the AWS CLI for Parameter Store.",
            "command -v aws >/dev/null 2>&1 || dnf install -y awscli-2",
            "",
        ]
    )


def template_data(
    spec: ClusterSpec, role: Role, security_group_id: str, instance_profile_arn: str
) -> RequestLaunchTemplateDataTypeDef:
    cluster = spec.cluster_name
    role_tags = {tags.CLUSTER: cluster, tags.ROLE: role.value}
    data: RequestLaunchTemplateDataTypeDef = {
        "ImageId": spec.ami_id,
        "InstanceType": spec.instance_type,  # type: ignore[typeddict-item]  # validated by the spec's pattern
        "IamInstanceProfile": {"Arn": instance_profile_arn},
        "SecurityGroupIds": [security_group_id],
        # IMDSv2 only. Hop limit 2 lets the ECS agent, which runs in a container, reach the metadata service.
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
        "UserData": base64.b64encode(user_data(cluster).encode()).decode(),
        "TagSpecifications": [
            tags.tag_specification("instance", role_tags),
            tags.tag_specification("volume", role_tags),
        ],
    }
    if spec.key_name:
        data["KeyName"] = spec.key_name
    return data


def _covers(actual: Any, wanted: Any) -> bool:
    """Whether a stored template already holds everything we want. EC2 may echo back extra
    defaults inside nested fields, so nested dicts need only contain ours."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(k in actual and _covers(actual[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(map(_covers, actual, wanted))
    return bool(actual == wanted)


def same_template(actual: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    actual = dict(actual)
    # moto 5.2.5 also lists the template's own tags (resource type launch-template) in its data; AWS
    # does not. Only the resource types we tag for count.
    if "TagSpecifications" in actual:
        ours = {spec["ResourceType"] for spec in wanted.get("TagSpecifications", [])}
        actual["TagSpecifications"] = [s for s in actual["TagSpecifications"] if s["ResourceType"] in ours]
    # At the top level a field we no longer set (a dropped key pair) is a difference too.
    return set(actual) == set(wanted) and _covers(actual, dict(wanted))


@dataclass(frozen=True)
class LaunchTemplate:
    template_id: str
    version: int


@dataclass(frozen=True)
class LaunchedHost:
    """A host, and the run whose launch made it."""

    host: Host
    run_id: str


@dataclass(frozen=True)
class InstanceState:
    state: str
    private_ip: str | None


def _tag_map(instance: InstanceTypeDef) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


class Hosts:
    """EC2 (and the SSM agent's view) of one account's swarmwarden hosts."""

    def __init__(self, ec2: EC2Client, ssm: SSMClient, instance_profiles: Mapping[Role, str]) -> None:
        self._ec2 = ec2
        self._ssm = ssm
        self._instance_profiles = dict(instance_profiles)

    def ensure_launch_template(self, spec: ClusterSpec, role: Role, security_group_id: str) -> LaunchTemplate:
        """The role's template at its default version, creating it, or a new default version when
        what we want (say a new AMI or instance type) differs from what is there."""
        profile = self._instance_profiles.get(role)
        if not profile:
            raise InvalidRequest(f"no instance profile for {role} hosts: set {role.value.upper()}_INSTANCE_PROFILE_ARN")
        name = launch_template_name(spec.cluster_name, role)
        data = template_data(spec, role, security_group_id, profile)
        found = self._ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
        if not found["LaunchTemplates"]:
            created = self._ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData=data,
                TagSpecifications=[
                    tags.tag_specification("launch-template", {tags.CLUSTER: spec.cluster_name, tags.NAME: name})
                ],
            )["LaunchTemplate"]
            return LaunchTemplate(created["LaunchTemplateId"], created["DefaultVersionNumber"])
        template_id = found["LaunchTemplates"][0]["LaunchTemplateId"]
        current = self._ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["$Default"])[
            "LaunchTemplateVersions"
        ][0]
        if same_template(current["LaunchTemplateData"], data):
            return LaunchTemplate(template_id, current["VersionNumber"])
        version = self._ec2.create_launch_template_version(
            LaunchTemplateId=template_id, LaunchTemplateData=data, VersionDescription="spec changed"
        )["LaunchTemplateVersion"]["VersionNumber"]
        self._ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(version))
        return LaunchTemplate(template_id, version)

    def launch(
        self, spec: ClusterSpec, network: NetworkRef, placements: Sequence[Placement], run_id: str
    ) -> list[LaunchedHost]:
        """One host per placement: the live instance already in that slot, else a new one in the
        placement's AZ, tagged with this run."""
        cluster = spec.cluster_name
        subnets = {s.az: s.subnet_id for s in network.subnets}
        if unknown := sorted({p.az for p in placements} - subnets.keys()):
            raise InvalidRequest(f"network.subnets has no subnet in {', '.join(unknown)}")
        templates = {
            role: self.ensure_launch_template(spec, role, network.security_group_id)
            for role in sorted({p.role for p in placements})
        }
        # Slot -> (instance, the run that launched it). The first live instance found holds the slot.
        held: dict[str, tuple[InstanceTypeDef, str]] = {}
        for instance in self._describe([tags.tag_filter(tags.CLUSTER, cluster), _states(HOLDING_SLOT)]):
            found = _tag_map(instance)
            held.setdefault(found.get(tags.SLOT, ""), (instance, found.get(tags.RUN, "")))
        missing = [p for p in placements if p.slot not in held]
        # One RunInstances per slot (each has its own tags and token); in parallel, because a call can
        # take seconds and a large cluster must launch well within the function's timeout. If one
        # fails, the others' instances carry the run tag: a retry adopts them, compensation ends them.
        with ThreadPoolExecutor(max_workers=LAUNCH_CONCURRENCY) as pool:
            launched = pool.map(lambda p: self._run(cluster, p, run_id, templates[p.role], subnets[p.az]), missing)
            held.update({p.slot: (instance, run_id) for p, instance in zip(missing, launched, strict=True)})
        return [LaunchedHost(_host(held[p.slot][0], p), held[p.slot][1]) for p in placements]

    def _run(
        self, cluster: str, placement: Placement, run_id: str, template: LaunchTemplate, subnet_id: str
    ) -> InstanceTypeDef:
        instance_tags = {
            tags.CLUSTER: cluster,
            tags.ROLE: placement.role.value,
            tags.SLOT: placement.slot,
            tags.RUN: run_id,
            tags.NAME: f"{cluster}-{placement.slot}",
        }
        return self._ec2.run_instances(
            LaunchTemplate={"LaunchTemplateId": template.template_id, "Version": str(template.version)},
            SubnetId=subnet_id,
            MinCount=1,
            MaxCount=1,
            ClientToken=client_token(cluster, run_id, placement.slot),
            TagSpecifications=[
                tags.tag_specification("instance", instance_tags),
                tags.tag_specification("volume", instance_tags),
            ],
        )["Instances"][0]

    def instance_states(self, instance_ids: Iterable[str]) -> dict[str, InstanceState]:
        """State and private IP of each instance EC2 knows. An id missing from the answer is one EC2
        does not show yet (its API is eventually consistent right after RunInstances)."""
        states = {}
        for batch in batched(sorted(set(instance_ids)), EC2_FILTER_BATCH, strict=False):
            for instance in self._describe([{"Name": "instance-id", "Values": list(batch)}]):
                states[instance["InstanceId"]] = InstanceState(
                    instance["State"]["Name"], instance.get("PrivateIpAddress")
                )
        return states

    def ssm_online(self, instance_ids: Iterable[str]) -> set[str]:
        """The instances whose SSM agent reports PingStatus Online, i.e. that Run Command can reach."""
        paginator = self._ssm.get_paginator("describe_instance_information")
        online: set[str] = set()
        for batch in batched(sorted(set(instance_ids)), SSM_BATCH, strict=False):
            for page in paginator.paginate(Filters=[{"Key": "InstanceIds", "Values": list(batch)}]):
                online.update(
                    info["InstanceId"]
                    for info in page.get("InstanceInformationList", [])
                    if info.get("PingStatus") == "Online" and "InstanceId" in info
                )
        return online

    def inventory(self, cluster: str) -> list[Instance]:
        """Every instance tagged to the cluster that EC2 still lists, with its role and launch time."""
        roles = {role.value: role for role in Role}
        return [
            Instance(
                instance_id=i["InstanceId"],
                role=roles.get(_tag_map(i).get(tags.ROLE, "")),
                state=i["State"]["Name"],
                private_ip=i.get("PrivateIpAddress", ""),
                launched_at=i["LaunchTime"].timestamp(),
            )
            for i in self._describe([tags.tag_filter(tags.CLUSTER, cluster)])
        ]

    def terminate(self, cluster: str, instance_ids: Sequence[str]) -> list[str]:
        """Terminates those of the instances that are the cluster's and not terminated yet."""
        return self._terminate([{"Name": "instance-id", "Values": list(instance_ids)}], cluster)

    def terminate_run(self, cluster: str, run_id: str) -> list[str]:
        """Terminates exactly the instances that run launched (compensation)."""
        return self._terminate([tags.tag_filter(tags.RUN, run_id)], cluster)

    def terminate_cluster(self, cluster: str) -> list[str]:
        return self._terminate([], cluster)

    def remaining(self, cluster: str) -> list[str]:
        """The cluster's instances not terminated yet."""
        return self._live(cluster, [])

    def _terminate(self, filters: list[FilterTypeDef], cluster: str) -> list[str]:
        ids = self._live(cluster, filters)
        if ids:
            self._ec2.terminate_instances(InstanceIds=ids)
        return ids

    def _live(self, cluster: str, filters: list[FilterTypeDef]) -> list[str]:
        found = self._describe([tags.tag_filter(tags.CLUSTER, cluster), _states(NOT_TERMINATED), *filters])
        return sorted(i["InstanceId"] for i in found)

    def _describe(self, filters: list[FilterTypeDef]) -> list[InstanceTypeDef]:
        pages = self._ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r.get("Instances", [])]


def _states(states: list[str]) -> FilterTypeDef:
    return {"Name": "instance-state-name", "Values": states}


def _host(instance: InstanceTypeDef, placement: Placement) -> Host:
    return Host(
        instance_id=instance["InstanceId"],
        role=placement.role,
        slot=placement.slot,
        az=instance.get("Placement", {}).get("AvailabilityZone", placement.az),
        private_ip=instance.get("PrivateIpAddress", ""),
    )
