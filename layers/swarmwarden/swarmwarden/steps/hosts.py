"""HostsFunction: launch the cluster's hosts, wait until they are ready, terminate them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Self

from botocore.exceptions import ClientError
from pydantic import Field, TypeAdapter

from swarmwarden import aws
from swarmwarden.adapters.ecs import EcsCluster
from swarmwarden.adapters.hosts import Hosts
from swarmwarden.domain.model import ClusterSpec, Contract, Host, LaunchResult, NetworkRef, Readiness, Role
from swarmwarden.domain.placement import Placement, plan_placements
from swarmwarden.errors import InsufficientCapacity
from swarmwarden.settings import Settings

# A Step Functions execution name: the run id that tags every instance a run launches.
RunId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")]
InstanceId = Annotated[str, Field(pattern=r"^i-[0-9a-f]{8,17}$")]


class Launch(Contract):
    action: Literal["launch"]
    spec: ClusterSpec
    network: NetworkRef
    run_id: RunId


class LaunchSlots(Contract):
    """Launches exactly these slots (a repair's replacement), not the spec's whole plan."""

    action: Literal["launch_slots"]
    spec: ClusterSpec
    network: NetworkRef
    run_id: RunId
    placements: tuple[Placement, ...] = Field(min_length=1)


class WaitRound(Contract):
    attempt: int = Field(ge=0)
    max_attempts: int = Field(ge=1)


class CheckReady(WaitRound):
    action: Literal["check_ready"]
    spec: ClusterSpec
    instance_ids: tuple[InstanceId, ...] = Field(min_length=1)


class TerminateRun(Contract):
    action: Literal["terminate_run"]
    spec: ClusterSpec
    run_id: RunId


class TerminateInstances(Contract):
    """Scale-in: terminates these instances, if they are the cluster's (IAM checks the tag as well)."""

    action: Literal["terminate_instances"]
    spec: ClusterSpec
    instance_ids: tuple[InstanceId, ...] = Field(min_length=1)


class TerminateCluster(Contract):
    action: Literal["terminate_cluster"]
    spec: ClusterSpec


class CheckTerminated(WaitRound):
    action: Literal["check_terminated"]
    spec: ClusterSpec


HostsRequest = Annotated[
    Launch | LaunchSlots | CheckReady | TerminateRun | TerminateInstances | TerminateCluster | CheckTerminated,
    Field(discriminator="action"),
]
REQUEST: TypeAdapter[HostsRequest] = TypeAdapter(HostsRequest)


class LaunchedSlots(Contract):
    hosts: tuple[Host, ...]
    instance_ids: tuple[str, ...]
    launched_instance_ids: tuple[str, ...]


class Terminated(Contract):
    terminated: tuple[str, ...]


class Terminating(Contract):
    terminating: tuple[str, ...]


class Termination(Contract):
    """One round of teardown's wait loop."""

    done: bool
    exhausted: bool
    attempt: int
    remaining: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class Adapters:
    hosts: Hosts
    ecs: EcsCluster

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        profiles = {
            Role.MANAGER: settings.manager_instance_profile_arn,
            Role.WORKER: settings.worker_instance_profile_arn,
        }
        return cls(hosts=Hosts(aws.ec2(), aws.ssm(), profiles), ecs=EcsCluster(aws.ecs()))


def launch(request: Launch, hosts: Hosts) -> LaunchResult:
    spec = request.spec
    placements = plan_placements(spec, [subnet.az for subnet in request.network.subnets])
    launched = hosts.launch(spec, request.network, placements, request.run_id)
    # The spec guarantees at least one manager; the first manager slot seeds the swarm.
    managers = [h.host for h in launched if h.host.role is Role.MANAGER]
    return LaunchResult(
        seed=managers[0],
        managers=tuple(managers[1:]),
        workers=tuple(h.host for h in launched if h.host.role is Role.WORKER),
        instance_ids=tuple(h.host.instance_id for h in launched),
        launched_instance_ids=tuple(h.host.instance_id for h in launched if h.run_id == request.run_id),
    )


def launch_slots(request: LaunchSlots, hosts: Hosts) -> LaunchedSlots:
    try:
        launched = hosts.launch(request.spec, request.network, request.placements, request.run_id)
    except ClientError as error:
        if error.response["Error"]["Code"] != "InsufficientInstanceCapacity":
            raise
        azs = ", ".join(sorted({p.az for p in request.placements}))
        raise InsufficientCapacity(f"no {request.spec.instance_type} capacity in {azs}") from None
    return LaunchedSlots(
        hosts=tuple(h.host for h in launched),
        instance_ids=tuple(h.host.instance_id for h in launched),
        launched_instance_ids=tuple(h.host.instance_id for h in launched if h.run_id == request.run_id),
    )


def _exhausted(round_: WaitRound) -> bool:
    return round_.attempt + 1 >= round_.max_attempts


def check_ready(request: CheckReady, adapters: Adapters) -> Readiness:
    """Ready means: EC2 running, the SSM agent online (Run Command can reach it), and the ECS agent
    registered in the cluster (the user data ran). Each host that is not gets its reasons listed."""
    cluster = request.spec.cluster_name
    ids = request.instance_ids
    states = adapters.hosts.instance_states(ids)
    running = [i for i in ids if i in states and states[i].state == "running"]
    online = adapters.hosts.ssm_online(running) if running else set()
    registered = adapters.ecs.registered_instance_ids(cluster) if running else set()
    not_ready: dict[str, list[str]] = {}
    for instance_id in ids:
        if instance_id not in states:
            reasons = ["not found"]
        elif states[instance_id].state != "running":
            # SSM and ECS cannot be up before the instance runs; its state says all there is.
            reasons = [f"state {states[instance_id].state}"]
        else:
            reasons = [
                *([] if instance_id in online else ["SSM agent not online"]),
                *([] if instance_id in registered else [f"not registered with ECS cluster {cluster}"]),
            ]
        if reasons:
            not_ready[instance_id] = reasons
    if not_ready:
        details = "; ".join(f"{i}: {', '.join(reasons)}" for i, reasons in not_ready.items())
        summary = f"{len(not_ready)} of {len(ids)} hosts not ready: {details}"
    else:
        summary = f"all {len(ids)} hosts ready: {', '.join(ids)}"
    return Readiness(
        ready=not not_ready,
        exhausted=_exhausted(request),
        attempt=request.attempt + 1,
        summary=summary,
        not_ready=not_ready,
    )


def check_terminated(request: CheckTerminated, hosts: Hosts) -> Termination:
    remaining = hosts.remaining(request.spec.cluster_name)
    if remaining:
        summary = f"not terminated yet ({len(remaining)}): {', '.join(remaining)}"
    else:
        summary = "all instances terminated"
    return Termination(
        done=not remaining,
        exhausted=_exhausted(request),
        attempt=request.attempt + 1,
        remaining=tuple(remaining),
        summary=summary,
    )


def run(request: HostsRequest, adapters: Adapters) -> Contract:
    cluster = request.spec.cluster_name
    match request:
        case Launch():
            return launch(request, adapters.hosts)
        case LaunchSlots():
            return launch_slots(request, adapters.hosts)
        case CheckReady():
            return check_ready(request, adapters)
        case TerminateRun(run_id=run_id):
            return Terminated(terminated=tuple(adapters.hosts.terminate_run(cluster, run_id)))
        case TerminateInstances(instance_ids=instance_ids):
            return Terminated(terminated=tuple(adapters.hosts.terminate(cluster, instance_ids)))
        case TerminateCluster():
            return Terminating(terminating=tuple(adapters.hosts.terminate_cluster(cluster)))
        case CheckTerminated():
            return check_terminated(request, adapters.hosts)
