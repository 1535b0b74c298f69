"""Answers a CloudFormation custom resource request by PUTting to its presigned ResponseURL."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Literal

from swarmwarden.errors import TransientError
from swarmwarden.observability import logger

# CloudFormation rejects responses over 4096 bytes; the reason is what gets cut.
_MAX_REASON = 1500
_ATTEMPTS = 5


def response_body(
    *,
    status: Literal["SUCCESS", "FAILED"],
    reason: str,
    physical_resource_id: str,
    stack_id: str,
    request_id: str,
    logical_resource_id: str,
    data: dict[str, str],
) -> bytes:
    return json.dumps(
        {
            "Status": status,
            "Reason": reason[:_MAX_REASON],
            "PhysicalResourceId": physical_resource_id,
            "StackId": stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_resource_id,
            "NoEcho": False,
            "Data": data,
        }
    ).encode()


def _put(url: str, body: bytes) -> None:
    # The presigned URL is signed for an empty content type.
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - URL comes from CloudFormation
        response.read()


def send_response(url: str, body: bytes, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """PUTs the response, retrying transport errors with exponential backoff."""
    for attempt in range(_ATTEMPTS):
        try:
            _put(url, body)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            logger.warning("response to CloudFormation failed", extra={"attempt": attempt + 1, "error": str(error)})
            sleep(min(2**attempt, 10))
        else:
            return
    raise TransientError(f"could not deliver the response to CloudFormation after {_ATTEMPTS} attempts")
