"""Turns pydantic's errors into one clear sentence that names each bad field."""

from typing import Any

from pydantic import TypeAdapter, ValidationError

from swarmwarden.errors import InvalidRequest


def describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors(include_url=False, include_input=False):
        field = ".".join(str(step) for step in problem["loc"]) or "request"
        parts.append(f"{field}: {problem['msg']}")
    return "; ".join(parts)


def parse[T](adapter: TypeAdapter[T], event: Any) -> T:
    """Validates an event, raising InvalidRequest (never retried) that names the fields at fault."""
    try:
        return adapter.validate_python(event)
    except ValidationError as error:
        raise InvalidRequest(describe(error)) from None
