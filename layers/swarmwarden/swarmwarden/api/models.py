"""The HTTP API's request and response bodies. Requests forbid unknown fields; the OpenAPI document
(docs/openapi.json) is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from swarmwarden.adapters.operations import Operation, OperationKind, OperationStatus, Step
from swarmwarden.adapters.store import ClusterStatus, NodeState
from swarmwarden.domain.model import MAX_WORKERS_CEILING, ManagerCount, Role

# Docker's own rules: a service name is what `docker service create --name` accepts.
SERVICE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
# An image reference as docker parses it (distribution/reference): [registry[:port]/]path[:tag][@digest].
# The first component is a registry only with a dot, a port, or as localhost (as docker decides).
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:(?:localhost|{_HOST}(?:\.{_HOST})+)(?::[0-9]+)?/|{_HOST}:[0-9]+/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# docker's tag is [\w][\w.-]{0,127} with Go's ASCII \w. Spelled out: pydantic's Rust regex compiles a
# Unicode \w{0,127} in ~30 ms, at every cold start of the API.
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_REFERENCE = rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@sha256:[a-f0-9]{{64}})?$"
# The node attributes docker's placement constraints know, compared with == or !=.
CONSTRAINT = (
    r"^(?:node\.(?:id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)"
    r"|engine\.labels\.[A-Za-z0-9_.-]+)\s*(?:==|!=)\s*[A-Za-z0-9_.-]+$"
)
OPERATION_ID = r"^[A-Za-z0-9_-]{1,80}$"


# Values travel to the host one per line (see service-create.sh), so none may hold a line break.
_OneLine = Annotated[str, StringConstraints(pattern=r"^[^\r\n\x00]*$", max_length=1024)]
# SSM keeps a command's text small (and records it): the command and the environment stay well within.
MAX_COMMAND_CHARS = 4096
MAX_ENV_CHARS = 8192
ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_NAME)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ requests


class Capacity(Request):
    """The counts to scale to. `workers` may not exceed the stack's MaxWorkers (checked per request)."""

    managers: ManagerCount = Field(description="Swarm managers: 1, 3, 5 or 7 (quorum needs an odd count).")
    workers: int = Field(ge=0, le=MAX_WORKERS_CEILING, description="Swarm workers, from 0 to MaxWorkers.")


class Port(Request):
    """A port published on the node that runs the task (host mode: the routing mesh is not used)."""

    published: int = Field(ge=1, le=65535)
    target: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"


class ServiceSpec(Request):
    name: ServiceName = Field(description="Docker's service name rules: letters, digits, `_.-`, at most 63.")
    image: Annotated[str, StringConstraints(pattern=IMAGE_REFERENCE, max_length=255)] = Field(
        description="An image reference: [registry/]repository[:tag][@sha256:digest]."
    )
    replicas: int = Field(default=1, ge=0, le=1000)
    command: list[_OneLine] = Field(default_factory=list, max_length=64, description="Command and arguments.")
    ports: list[Port] = Field(default_factory=list, max_length=32)
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], _OneLine] = Field(
        default_factory=dict, max_length=64, description="Environment variables. Not for secrets: commands are logged."
    )
    constraints: list[Annotated[str, StringConstraints(pattern=CONSTRAINT)]] = Field(
        default_factory=list, max_length=16, description='Placement constraints, e.g. "node.role==worker".'
    )

    @field_validator("command")
    @classmethod
    def _command_fits(cls, command: list[str]) -> list[str]:
        if sum(len(item) + 1 for item in command) > MAX_COMMAND_CHARS:
            raise ValueError(f"the command and its arguments may hold {MAX_COMMAND_CHARS} characters at most")
        return command

    @field_validator("env")
    @classmethod
    def _env_fits(cls, env: dict[str, str]) -> dict[str, str]:
        if sum(len(key) + len(value) + 2 for key, value in env.items()) > MAX_ENV_CHARS:
            raise ValueError(f"the environment may hold {MAX_ENV_CHARS} characters at most")
        return env

    @field_validator("ports")
    @classmethod
    def _published_once(cls, ports: list[Port]) -> list[Port]:
        published = [(p.published, p.protocol) for p in ports]
        if len(set(published)) != len(published):
            raise ValueError("a published port and protocol may appear only once")
        return ports


# ------------------------------------------------------------------ responses


class FieldError(BaseModel):
    field: str = Field(description="The field at fault: `workers`, `ports.0.target`, `Idempotency-Key`, ...")
    problem: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx this API answers."""

    message: str
    errors: list[FieldError] = Field(default_factory=list)
    operation_id: str | None = Field(default=None, description="On a 409: the operation in the way.")


class Counts(BaseModel):
    managers: int
    workers: int


class NodeView(BaseModel):
    """A node as DynamoDB records it, joined with what the swarm reports (null when it reports nothing)."""

    instance_id: str | None = Field(description="null for a swarm node we have no record of.")
    role: Role
    az: str | None
    state: NodeState | None = Field(description="Our lifecycle state; null for a swarm node we have no record of.")
    node_id: str | None
    hostname: str | None = None
    swarm_state: str | None = Field(default=None, description="The swarm's view: ready, down, unknown, ...")
    availability: str | None = None
    leader: bool = False
    tasks: int | None = Field(default=None, description="Tasks meant to run on the node.")


class OperationView(BaseModel):
    id: str
    kind: OperationKind
    status: OperationStatus
    request: dict[str, object]
    steps: list[Step]
    error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, operation: Operation) -> OperationView:
        return cls.model_validate(operation.model_dump(exclude={"execution_arn"}))


class ClusterView(BaseModel):
    name: str
    status: ClusterStatus
    desired: Counts
    actual: Counts | None = Field(description="Ready nodes per role as the swarm reports them; null if unreachable.")
    nodes: list[NodeView]
    operation: OperationView | None = Field(description="The operation holding the cluster, if any.")
    swarm_error: str | None = Field(default=None, description="Why no manager answered, when none did.")
    swarm_observed_at: datetime | None = Field(
        default=None,
        description="When a manager reported `actual` and the nodes' swarm fields (at most 5 s before the"
        " answer: status is reused that long); null if none answered.",
    )


class ScaleAnswer(BaseModel):
    operation_id: str | None = Field(description="null when the cluster already has these counts.")
    status: OperationStatus | Literal["unchanged"]
    message: str


class TaskCount(BaseModel):
    node_id: str
    instance_id: str | None
    running: int


class ServiceView(BaseModel):
    name: str
    id: str
    image: str
    mode: Literal["replicated", "global"]
    replicas: int | None = Field(description="Desired replicas; null for a global service.")
    running: int
    tasks: list[TaskCount] = Field(description="Running tasks per node.")


class ServiceList(BaseModel):
    services: list[ServiceView]


class ServiceCreated(BaseModel):
    name: str
    id: str
    image: str
    replicas: int
