"""The shapes that travel between the state machines and the functions.

They are the contract: a state machine passes these as task input and stores the
results under its ResultPath. None of them may ever carry a join token.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ClusterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,27}[a-z0-9]$")]
ManagerCount = Literal[1, 3, 5, 7]
MAX_WORKERS_CEILING = 100


class Role(StrEnum):
    MANAGER = "manager"
    WORKER = "worker"


class Contract(BaseModel):
    """Base for every contract shape: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(Contract):
    """What the user asked for: the custom resource's properties, and the workflows' `spec` input."""

    cluster_name: ClusterName
    managers: ManagerCount = 3
    workers: int = Field(default=2, ge=0, le=MAX_WORKERS_CEILING)
    max_workers: int = Field(default=20, ge=0, le=MAX_WORKERS_CEILING)
    instance_type: str = Field(default="t3.small", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    vpc_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.42.0.0/16")
    address_pool: ipaddress.IPv4Network = ipaddress.IPv4Network("172.20.0.0/16")
    address_pool_mask_length: int = Field(default=24, ge=16, le=28)
    ami_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")
    key_name: str | None = None
    max_azs: int = Field(default=3, ge=1, le=6)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSpec:
        if self.workers > self.max_workers:
            raise ValueError(f"workers ({self.workers}) exceeds max_workers ({self.max_workers})")
        if self.vpc_cidr.prefixlen > 24:
            raise ValueError(f"vpc_cidr {self.vpc_cidr} is too small: use /24 or larger")
        if self.address_pool.overlaps(self.vpc_cidr):
            raise ValueError(f"address_pool {self.address_pool} overlaps vpc_cidr {self.vpc_cidr}")
        if self.address_pool_mask_length < self.address_pool.prefixlen:
            raise ValueError("address_pool_mask_length is shorter than the address_pool prefix")
        return self


class Poll(Contract):
    """How a workflow's Wait -> check -> Choice loop polls: realistic on AWS, short in the local cloud."""

    interval_seconds: int = Field(default=5, ge=1, le=3600)
    max_attempts: int = Field(default=120, ge=1, le=1000)


class Subnet(Contract):
    subnet_id: str
    az: str
    cidr: str


class NetworkRef(Contract):
    vpc_id: str
    security_group_id: str
    subnets: tuple[Subnet, ...]


class Host(Contract):
    """One instance of the cluster, as the workflows pass it around."""

    instance_id: str
    role: Role
    slot: str
    az: str
    private_ip: str


class LaunchResult(Contract):
    """Hosts split the way provision consumes them: the seed manager inits, the rest join."""

    seed: Host
    managers: tuple[Host, ...]
    workers: tuple[Host, ...]
    instance_ids: tuple[str, ...]
    launched_instance_ids: tuple[str, ...]


class Readiness(Contract):
    """One round of the wait loop."""

    ready: bool
    exhausted: bool
    attempt: int
    summary: str
    not_ready: dict[str, list[str]] = Field(default_factory=dict)


class SwarmRef(Contract):
    """The swarm a host joins: identified by its id, reached through one manager."""

    swarm_id: str
    manager_addr: str


class NodeStatus(Contract):
    """One row of the `status` script: a swarm node as `docker node ls` sees it."""

    id: str
    hostname: str
    addr: str
    role: Role
    status: str
    availability: str
    leader: bool
    reachability: str | None = None
    tasks: int | None = None  # tasks meant to run there (desired state running); None from older scripts
