"""Prints the HTTP API's OpenAPI document, generated from the routes: `python -m swarmwarden.api.openapi`.

`make openapi` writes it to docs/openapi.json; a unit test fails when that file is stale.
"""

from __future__ import annotations

import json
from typing import Any

from swarmwarden.api.routes import app

TITLE = "swarmwarden HTTP API"
VERSION = "1.0.0"
_ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def document() -> dict[str, Any]:
    schema = app.get_openapi_schema(
        title=TITLE,
        version=VERSION,
        description="Every route requires SigV4 (IAM) authentication. Errors answer an ErrorBody.",
    )
    spec: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    # Powertools documents its own 422 shape; ours answers an ErrorBody for every validation error.
    for operation in (op for path in spec["paths"].values() for op in path.values()):
        if "422" in operation["responses"]:
            operation["responses"]["422"] = {
                "description": "Invalid input; `errors` names each field at fault.",
                "content": {"application/json": {"schema": _ERROR_BODY}},
            }
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        spec["components"]["schemas"].pop(unused, None)
    # API Gateway checks the signature before the function runs (AWS_IAM on every route).
    spec["components"]["securitySchemes"] = {
        "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization", "x-amazon-apigateway-authtype": "awsSigv4"}
    }
    spec["security"] = [{"sigv4": []}]
    return spec


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
