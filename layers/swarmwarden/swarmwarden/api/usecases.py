"""What each route does: read the cluster table, run host scripts on a healthy manager, start the scale
workflow. Errors are raised as `ApiError`s; the routes map them to HTTP."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from swarmwarden.adapters.operations import LockHeld, Operation, Operations
from swarmwarden.adapters.runcommand import RunCommand
from swarmwarden.adapters.store import ClusterRecord, ClusterStatus, ClusterStore, NodeRecord, NodeState
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.api.errors import Conflict, InvalidField, NotFound, SwarmRefused, Unavailable
from swarmwarden.api.models import (
    Capacity,
    ClusterView,
    Counts,
    NodeView,
    OperationView,
    ScaleAnswer,
    ServiceCreated,
    ServiceSpec,
    ServiceView,
    TaskCount,
)
from swarmwarden.domain.model import ClusterSpec, NodeStatus, Poll, Role
from swarmwarden.errors import ScriptFailed, SwarmwardenError
from swarmwarden.observability import logger
from swarmwarden.settings import Settings
from swarmwarden.steps.operations import ScaleStart, start_scale
from swarmwarden.validation import describe

# API Gateway gives up on an integration after 30 s, so every wait on a host is bounded: a few
# seconds per manager we probe, and the rest for the script that does the work.
MAX_PROBES = 2
PROBE_WAIT_SECONDS = 6.0
SCRIPT_WAIT_SECONDS = 14.0
SCRIPT_TIMEOUT_SECONDS = 30
# GET /cluster reuses a manager's answer this long: polling status costs one Run Command round trip per
# period instead of one per request. The answer says when it was observed.
SWARM_VIEW_MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True)
class Adapters:
    store: ClusterStore
    operations: Operations
    runner: RunCommand
    workflows: Workflows
    settings: Settings


@dataclass(frozen=True)
class SwarmView:
    """A manager's answer to `status`, and when it came (wall clock for the answer, monotonic for its age)."""

    nodes: list[NodeStatus]
    observed_at: datetime
    taken: float


def operation_id(idempotency_key: str | None, cluster: str) -> str:
    """The same key always names the same operation (and scale execution); without one, a fresh id."""
    if idempotency_key is None:
        return f"op-{uuid.uuid4().hex}"
    return "op-" + hashlib.sha256(f"{cluster}\0{idempotency_key}".encode()).hexdigest()[:32]


class ClusterApi:
    def __init__(self, adapters: Adapters, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._a = adapters
        self._cluster = adapters.settings.cluster_name
        self._clock = clock
        self._swarm_view: SwarmView | None = None

    # ------------------------------------------------------------------ the cluster
    def _record(self) -> ClusterRecord:
        record = self._a.store.cluster(self._cluster)
        if record is None or record.status is ClusterStatus.DELETED:
            raise NotFound(f"cluster {self._cluster} is not provisioned")
        return record

    def _manager(self, records: list[NodeRecord]) -> tuple[NodeRecord, list[NodeStatus]]:
        """An active manager that answers `status` (tried in slot order, at most MAX_PROBES), and its answer."""
        managers = sorted(
            (n for n in records if n.role is Role.MANAGER and n.state is NodeState.ACTIVE),
            key=lambda n: n.slot,
        )
        problems = []
        for record in managers[:MAX_PROBES]:
            try:
                result = self._a.runner.run(
                    record.instance_id, "status", {}, SCRIPT_TIMEOUT_SECONDS, wait_seconds=PROBE_WAIT_SECONDS
                )
                return record, [NodeStatus.model_validate(node) for node in result["nodes"]]
            except (SwarmwardenError, ClientError, BotoCoreError) as error:
                problems.append(f"{record.instance_id}: {error}")
        reason = "; ".join(problems) or "no active manager is recorded"
        raise Unavailable(f"no manager of {self._cluster} answered ({reason})")

    def _swarm(self, records: list[NodeRecord]) -> SwarmView:
        """The swarm as a manager saw it at most SWARM_VIEW_MAX_AGE_SECONDS ago; asks one if it is older."""
        view = self._swarm_view
        if view is None or self._clock() - view.taken > SWARM_VIEW_MAX_AGE_SECONDS:
            _, nodes = self._manager(records)
            view = self._swarm_view = SwarmView(nodes, datetime.now(UTC), self._clock())
        return view

    def cluster(self) -> ClusterView:
        record = self._record()
        records = self._a.store.nodes(self._cluster)
        swarm: SwarmView | None = None
        swarm_error: str | None = None
        try:
            swarm = self._swarm(records)
        except Unavailable as error:
            # Status matters most when the swarm is in trouble: answer with what the table knows.
            swarm_error = error.message
        running = self._a.operations.running(self._cluster)
        actual = None
        if swarm is not None:
            ready = [node.role for node in swarm.nodes if node.status == "ready"]
            actual = Counts(managers=ready.count(Role.MANAGER), workers=ready.count(Role.WORKER))
        return ClusterView(
            name=self._cluster,
            status=record.status,
            desired=Counts(managers=record.spec.managers, workers=record.spec.workers),
            actual=actual,
            nodes=_join(records, [] if swarm is None else swarm.nodes),
            operation=None if running is None else OperationView.of(running),
            swarm_error=swarm_error,
            swarm_observed_at=None if swarm is None else swarm.observed_at,
        )

    # ------------------------------------------------------------------ scaling
    def scale(self, capacity: Capacity, idempotency_key: str | None) -> tuple[int, ScaleAnswer]:
        """(202, the operation) once the scale workflow has started; (200, unchanged) for a no-op."""
        settings, operations = self._a.settings, self._a.operations
        if capacity.workers > settings.max_workers:
            raise InvalidField("workers", f"must be at most {settings.max_workers} (the stack's MaxWorkers)")
        record = self._record()
        if record.status is not ClusterStatus.READY:
            raise Conflict(f"cluster {self._cluster} is {record.status.value}, not ready")
        op_id = operation_id(idempotency_key, self._cluster)
        request = capacity.model_dump()
        if idempotency_key is not None and (existing := operations.get(self._cluster, op_id)) is not None:
            return 202, _accepted(existing, request)
        spec = record.spec
        if (spec.managers, spec.workers) == (capacity.managers, capacity.workers) and not operations.holders(
            self._cluster
        ):
            message = f"{self._cluster} already wants {capacity.managers} managers and {capacity.workers} workers"
            return 200, ScaleAnswer(operation_id=None, status="unchanged", message=message)
        poll = Poll(interval_seconds=settings.poll_interval_seconds, max_attempts=settings.poll_max_attempts)
        starter = ScaleStart(operations, self._a.workflows, settings.scale_state_machine_arn, poll)
        try:
            operation, _ = start_scale(self._target(spec, capacity), op_id, request, starter)
        except LockHeld as held:
            raise Conflict(str(held), operation_id=held.holder.operation_id) from None
        except (ClientError, BotoCoreError):
            logger.exception("starting the scale workflow failed", extra={"operation_id": op_id})
            raise Unavailable(f"could not start the scale workflow for {op_id}; try again") from None
        return 202, _accepted(operation, request)

    def _target(self, spec: ClusterSpec, capacity: Capacity) -> ClusterSpec:
        try:
            return ClusterSpec.model_validate(spec.model_dump() | capacity.model_dump())
        except ValidationError as error:
            raise InvalidField("workers", describe(error)) from None

    def operation(self, op_id: str) -> OperationView:
        operation = self._a.operations.get(self._cluster, op_id)
        if operation is None:
            raise NotFound(f"there is no operation {op_id}")
        return OperationView.of(operation)

    # ------------------------------------------------------------------ services
    def _script(self, script: str, parameters: dict[str, str]) -> dict[str, Any]:
        manager, _ = self._manager(self._a.store.nodes(self._cluster))
        try:
            return self._a.runner.run(
                manager.instance_id, script, parameters, SCRIPT_TIMEOUT_SECONDS, wait_seconds=SCRIPT_WAIT_SECONDS
            )
        except ScriptFailed as error:
            raise SwarmRefused(str(error)) from None
        except (SwarmwardenError, ClientError, BotoCoreError) as error:
            raise Unavailable(f"{script} on {manager.instance_id} did not finish: {error}") from None

    def services(self, name: str | None = None) -> list[ServiceView]:
        result = self._script("service-list", {"SW_NAME": name} if name else {})
        instances = {n.node_id: n.instance_id for n in self._a.store.nodes(self._cluster) if n.node_id}
        views = []
        for service in result["services"]:
            tasks = [
                TaskCount(node_id=node, instance_id=instances.get(node), running=count)
                for node, count in sorted(service.pop("tasks").items())
            ]
            views.append(ServiceView.model_validate(service | {"tasks": tasks}))
        return views

    def service(self, name: str) -> ServiceView:
        found = self.services(name)
        if not found:
            raise NotFound(f"there is no service {name}")
        return found[0]

    def create_service(self, spec: ServiceSpec) -> ServiceCreated:
        parameters = {
            "SW_NAME": spec.name,
            "SW_IMAGE": spec.image,
            "SW_REPLICAS": str(spec.replicas),
            "SW_RESOLVE_IMAGE": self._a.settings.resolve_image,
            # One item per line: the script reads them line by line, never through eval.
            "SW_COMMAND": "\n".join(spec.command),
            "SW_ENV": "\n".join(f"{key}={value}" for key, value in spec.env.items()),
            "SW_PORTS": "\n".join(f"{p.published}:{p.target}:{p.protocol}" for p in spec.ports),
            "SW_CONSTRAINTS": "\n".join(spec.constraints),
        }
        result = self._script("service-create", parameters)
        if not result["created"]:
            raise Conflict(f"service {spec.name} exists")
        return ServiceCreated(name=spec.name, id=result["id"], image=spec.image, replicas=spec.replicas)

    def delete_service(self, name: str) -> None:
        if not self._script("service-rm", {"SW_NAME": name})["removed"]:
            raise NotFound(f"there is no service {name}")


def _accepted(operation: Operation, request: dict[str, Any]) -> ScaleAnswer:
    if operation.request != request:
        raise InvalidField("Idempotency-Key", "was used before for a different request; use a new key")
    counts = f"{request['managers']} managers and {request['workers']} workers"
    return ScaleAnswer(operation_id=operation.id, status=operation.status, message=f"scaling to {counts}")


def _swarm_fields(node: NodeStatus) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "hostname": node.hostname,
        "swarm_state": node.status,
        "availability": node.availability,
        "leader": node.leader,
        "tasks": node.tasks,
    }


def _join(records: list[NodeRecord], swarm: list[NodeStatus]) -> list[NodeView]:
    """Our records, managers first, each with the swarm's view of it; then swarm nodes we have no record of."""
    by_id = {node.id: node for node in swarm}
    by_addr = {node.addr: node for node in swarm}
    views, seen = [], set()
    for record in sorted(records, key=lambda r: (r.role is not Role.MANAGER, r.slot)):
        node = by_id.get(record.node_id) or by_addr.get(record.private_ip)
        fields = {"node_id": record.node_id or None}
        if node is not None:
            seen.add(node.id)
            fields = _swarm_fields(node)
        views.append(
            NodeView(instance_id=record.instance_id, role=record.role, az=record.az, state=record.state, **fields)
        )
    views += [
        NodeView(instance_id=None, role=node.role, az=None, state=None, **_swarm_fields(node))
        for node in swarm
        if node.id not in seen
    ]
    return views
