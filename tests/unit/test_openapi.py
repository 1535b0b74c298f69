"""docs/openapi.json is generated from the routes (`make openapi`); this fails when it is stale."""

import json
import re
from pathlib import Path

from swarmwarden.api import openapi

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_current() -> None:
    assert DOCUMENT.read_text() == openapi.render(), "docs/openapi.json is stale: run `make openapi`"


def test_every_error_answer_is_an_error_body() -> None:
    document = json.loads(DOCUMENT.read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', DOCUMENT.read_text()))
    assert refs <= set(document["components"]["schemas"]), "dangling $ref"


def test_every_route_requires_sigv4() -> None:
    document = json.loads(DOCUMENT.read_text())
    assert document["security"] == [{"sigv4": []}]
    assert all("security" not in op for ops in document["paths"].values() for op in ops.values())
