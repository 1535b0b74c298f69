"""What the API answers instead of a result. The routes turn each into its status and an `ErrorBody`
in one place (swarmwarden.api.routes)."""

from __future__ import annotations

from swarmwarden.api.models import ErrorBody, FieldError
from swarmwarden.errors import SwarmwardenError


class ApiError(SwarmwardenError):
    status = 500

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = (), operation_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.operation_id = operation_id

    def body(self) -> ErrorBody:
        return ErrorBody(message=self.message, errors=list(self.errors), operation_id=self.operation_id)


class InvalidField(ApiError):
    """Input the models accept but the cluster does not (e.g. more workers than MaxWorkers)."""

    status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", errors=(FieldError(field=field, problem=problem),))


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class SwarmRefused(ApiError):
    """A host script failed: the swarm refused, or the host could not do it."""

    status = 502


class Unavailable(ApiError):
    """No manager answered, or AWS did not let us start the work; worth retrying later."""

    status = 503
