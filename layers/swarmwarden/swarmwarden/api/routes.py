"""The HTTP API: Powertools' resolver with validation on. Routes parse, call `ClusterApi`, and answer;
every error becomes an HTTP status and an `ErrorBody` in the handlers at the end, and nowhere else."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from pydantic import BaseModel

from swarmwarden import aws
from swarmwarden.adapters.operations import Operations
from swarmwarden.adapters.runcommand import RunCommand
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.api.errors import ApiError
from swarmwarden.api.models import (
    OPERATION_ID,
    SERVICE_NAME,
    Capacity,
    ClusterView,
    ErrorBody,
    FieldError,
    OperationView,
    ScaleAnswer,
    ServiceCreated,
    ServiceList,
    ServiceSpec,
    ServiceView,
)
from swarmwarden.api.usecases import Adapters, ClusterApi
from swarmwarden.errors import TransientError
from swarmwarden.observability import logger
from swarmwarden.settings import settings

app = APIGatewayHttpResolver(enable_validation=True)

# A retried request with the same key gets the first answer for this long.
IDEMPOTENCY_SECONDS = 24 * 3600
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="idempotency-key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the first answer and starts nothing new.",
    ),
]
_SCOPES = {"body", "path", "query", "header", "cookie"}


# Lambda sends an execution environment one request at a time, and Powertools' resolver keeps the
# current request on itself. The local cloud serves every request in one process, on threads: keep
# them from sharing the resolver mid-request (on Lambda this lock is never contended).
_one_at_a_time = threading.Lock()


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _one_at_a_time:
        return app.resolve(event, context)


@cache
def api() -> ClusterApi:
    config = settings()
    return ClusterApi(
        Adapters(
            store=ClusterStore(aws.dynamodb(), config.table_name),
            operations=Operations(aws.dynamodb(), config.table_name),
            # Someone waits on the answer: look for the result every 0.1 s (the workflows back off to 2 s).
            # GET /cluster reuses its view for seconds, so this stays a few calls per environment.
            runner=RunCommand(aws.ssm(), first_poll_seconds=0.05, poll_seconds=0.1),
            workflows=Workflows(aws.stepfunctions()),
            settings=config,
        )
    )


@cache
def _idempotency_store(action: str) -> DynamoDBPersistenceLayer:
    # One per action: a persistence layer remembers the key prefix it was last configured with.
    return DynamoDBPersistenceLayer(table_name=settings().idempotency_table_name, boto3_client=aws.dynamodb())


def _once(action: str, key: str | None, request: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()`, or, for a key seen before with the same request, the answer it gave then."""
    if key is None:
        return work()
    config = IdempotencyConfig(
        event_key_jmespath="key", payload_validation_jmespath="request", expires_after_seconds=IDEMPOTENCY_SECONDS
    )
    config.register_lambda_context(app.lambda_context)

    run = idempotent_function(
        lambda call: work(),
        data_keyword_argument="call",
        persistence_store=_idempotency_store(action),
        config=config,
        key_prefix=action,
    )
    answer: dict[str, Any] = run(call={"key": key, "request": request})
    return answer


def _json(status: int, body: BaseModel, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=body.model_dump(mode="json"),
        headers=headers,
    )


def _errors(*statuses: int) -> dict[int, OpenAPIResponse]:
    return {
        status: {"description": _DESCRIPTIONS[status], "content": {"application/json": {"model": ErrorBody}}}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "The body is not JSON.",
    404: "Not found.",
    409: "In conflict with the cluster's state; a running operation is named.",
    502: "The swarm refused.",
    503: "No manager answered, or AWS is busy; retry later.",
}


def _ok(model: type[BaseModel], description: str = "OK") -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


# ------------------------------------------------------------------ routes


@app.get("/cluster", summary="Cluster status", responses={200: _ok(ClusterView), **_errors(404)})
def get_cluster() -> Response[ClusterView]:
    return _json(200, api().cluster())


@app.put(
    "/cluster/capacity",
    summary="Scale to new counts",
    responses={
        200: _ok(ScaleAnswer, "The cluster already wants these counts; nothing started."),
        202: _ok(ScaleAnswer, "The scale operation started; follow it at /operations/{id}."),
        **_errors(400, 404, 409, 503),
    },
)
def put_capacity(capacity: Capacity, idempotency_key: IdempotencyKey = None) -> Response[ScaleAnswer]:
    def scale() -> dict[str, Any]:
        status, answer = api().scale(capacity, idempotency_key)
        return {"status": status, "answer": answer.model_dump(mode="json")}

    result = _once("scale", idempotency_key, capacity.model_dump(), scale)
    answer = ScaleAnswer.model_validate(result["answer"])
    location = {"Location": f"/operations/{answer.operation_id}"} if answer.operation_id else None
    return _json(result["status"], answer, location)


@app.get("/operations/<operation_id>", summary="Operation status", responses={200: _ok(OperationView), **_errors(404)})
def get_operation(operation_id: Annotated[str, Path(pattern=OPERATION_ID)]) -> Response[OperationView]:
    return _json(200, api().operation(operation_id))


@app.get("/services", summary="The swarm's services", responses={200: _ok(ServiceList), **_errors(502, 503)})
def list_services() -> Response[ServiceList]:
    return _json(200, ServiceList(services=api().services()))


@app.get("/services/<name>", summary="One service", responses={200: _ok(ServiceView), **_errors(404, 502, 503)})
def get_service(name: Annotated[str, Path(pattern=SERVICE_NAME)]) -> Response[ServiceView]:
    return _json(200, api().service(name))


@app.post(
    "/services",
    summary="Create a service",
    responses={201: _ok(ServiceCreated, "Created."), **_errors(400, 409, 502, 503)},
)
def create_service(service: ServiceSpec, idempotency_key: IdempotencyKey = None) -> Response[ServiceCreated]:
    def create() -> dict[str, Any]:
        return api().create_service(service).model_dump(mode="json")

    created = ServiceCreated.model_validate(_once("create_service", idempotency_key, service.model_dump(), create))
    return _json(201, created, {"Location": f"/services/{created.name}"})


@app.delete(
    "/services/<name>",
    summary="Remove a service",
    responses={204: {"description": "Removed."}, **_errors(404, 502, 503)},
)
def delete_service(name: Annotated[str, Path(pattern=SERVICE_NAME)]) -> Response[None]:
    api().delete_service(name)
    return Response(status_code=204)


# ------------------------------------------------------------------ errors, in one place


def _field_errors(error: RequestValidationError) -> list[FieldError]:
    found = []
    for problem in error.errors():
        parts = [str(part) for part in problem["loc"]]
        scope = parts.pop(0) if parts and parts[0] in _SCOPES else "body"
        if problem["type"] == "json_invalid":
            parts = []
        found.append(FieldError(field=".".join(parts) or scope, problem=str(problem["msg"])))
    return found


def _invalid_request(error: RequestValidationError) -> Response[Any]:
    errors = _field_errors(error)
    # Never the input itself: it may hold an env value the caller did not mean to see echoed or logged.
    message = "invalid request: " + "; ".join(f"{e.field}: {e.problem}" for e in errors)
    status = 400 if any(p["type"] == "json_invalid" for p in error.errors()) else 422
    return _json(status, ErrorBody(message=message, errors=errors))


def _api_error(error: ApiError) -> Response[Any]:
    return _json(error.status, error.body())


def _duplicate_in_progress(_: IdempotencyAlreadyInProgressError) -> Response[Any]:
    return _json(409, ErrorBody(message="a request with this Idempotency-Key is in progress; retry in a moment"))


def _key_reused(_: IdempotencyValidationError) -> Response[Any]:
    problem = "was used before for a different request; use a new key"
    field = FieldError(field="Idempotency-Key", problem=problem)
    return _json(422, ErrorBody(message=f"Idempotency-Key {problem}", errors=[field]))


def _busy(error: TransientError) -> Response[Any]:
    return _json(503, ErrorBody(message=f"busy, retry later: {error}"))


def _no_route(_: Exception) -> Response[Any]:
    return _json(404, ErrorBody(message="no such route"))


def _not_utf8(error: UnicodeDecodeError) -> Response[Any]:
    """Powertools decodes a base64 body as UTF-8 before validation, so a body of other bytes fails there."""
    event = app.current_event
    try:
        if event.is_base64_encoded:
            base64.b64decode(event.body or "").decode()
    except (binascii.Error, UnicodeDecodeError):
        problem = "not JSON: the bytes are not UTF-8"
        return _json(
            400,
            ErrorBody(message=f"invalid request: body: {problem}", errors=[FieldError(field="body", problem=problem)]),
        )
    return _unexpected(error)


def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unexpected error")
    return _json(500, ErrorBody(message="internal error"))


# Registered by call: Powertools' decorators are untyped.
for _error_type, _handler in (
    (RequestValidationError, _invalid_request),
    (ApiError, _api_error),
    (IdempotencyAlreadyInProgressError, _duplicate_in_progress),
    (IdempotencyValidationError, _key_reused),
    (TransientError, _busy),
    (UnicodeDecodeError, _not_utf8),
    (Exception, _unexpected),
):
    app.exception_handler(_error_type)(_handler)
app.not_found(_no_route)
