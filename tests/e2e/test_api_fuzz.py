"""Fuzzing the HTTP API with schemathesis, from its generated OpenAPI document (docs/openapi.json), against
the local cloud: every request SigV4-signed, a bounded number of examples per operation and mode, and a
time budget for all of them. No answer may be a 5xx, and every 4xx carries a JSON error body.

What each operation is fuzzed with, and why (PLAN):
- The reads, and DELETE /services/{name}, with valid and invalid input: no service exists, so a valid
  name reaches the manager (SSM Run Command) and gets a 404.
- PUT /cluster/capacity with valid and invalid bodies, while a placeholder scale lease holds the cluster
  lock: a valid body then reaches the lock and gets 409, so the fuzzer exercises the whole path (the
  per-stack MaxWorkers check, the idempotency store, the lock) without starting real scale workflows,
  which take minutes each.
- POST /services with invalid input only: a valid body creates a real service on the swarm (whose
  random image can never be pulled here, so its tasks would retry forever); test_services covers it.
  schemathesis's negative cases are sometimes invalid only in a header, with a valid body; those are
  not sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from pydantic import ValidationError
from schemathesis import GenerationMode
from swarmwarden.adapters.operations import OperationKind, Operations
from swarmwarden.api.models import ServiceSpec

from localcloud import apiclient
from localcloud.cloud import LocalCloud
from localcloud.httpapi import sign_request
from tests.e2e.conftest import start_cloud

pytestmark = pytest.mark.slow
PREFIX = "swz"
PARAMETERS = {"ManagerCount": "1", "WorkerCount": "0", "MaxWorkers": "5", "VpcCidr": "10.82.0.0/16"}
OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
EXAMPLES = 25
# For every operation and mode together; past it, the remaining examples are not sent (and counted).
BUDGET_SECONDS = 600.0
HOLDER = "op-fuzz-lock-holder"
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
PLAN: dict[tuple[str, str], tuple[GenerationMode, ...]] = {
    # No parameters and no body: nothing to make invalid.
    ("GET", "/cluster"): (POSITIVE,),
    ("GET", "/services"): (POSITIVE,),
    ("GET", "/operations/{operation_id}"): (POSITIVE, NEGATIVE),
    ("GET", "/services/{name}"): (POSITIVE, NEGATIVE),
    ("DELETE", "/services/{name}"): (POSITIVE, NEGATIVE),
    ("PUT", "/cluster/capacity"): (POSITIVE, NEGATIVE),
    ("POST", "/services"): (NEGATIVE,),
}
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
# (method path, mode) -> Counter of status codes; (method path, mode) -> examples left out for time.
ANSWERS: dict[str, Counter[int]] = {}
LEFT_OUT: Counter[str] = Counter()


class SigV4(requests.auth.AuthBase):
    """Signs each prepared request as the client signs, with the local cloud's credentials."""

    def __init__(self, region: str) -> None:
        self.region = region

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signed = sign_request(
            str(request.method),
            str(request.url),
            request.body,
            {},
            access_key=apiclient.LOCAL_ACCESS_KEY,
            secret_key=apiclient.LOCAL_SECRET_KEY,
            region=self.region,
        )
        request.headers.update(signed)
        return request


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    yield from start_cloud(PREFIX, parameters=PARAMETERS)


@pytest.fixture(scope="module")
def started(session: requests.Session) -> float:
    """When fuzzing began: the budget counts from here, not from the cloud's start."""
    return time.monotonic()


@pytest.fixture(scope="module")
def session(cloud: LocalCloud) -> Iterator[requests.Session]:
    outputs = cloud.up(timeout=600)
    Operations(cloud.client("dynamodb"), outputs["ClusterTableName"]).acquire(
        outputs["ClusterName"], HOLDER, OperationKind.SCALE, lease_seconds=3600
    )
    with requests.Session() as session:
        session.auth = SigV4(cloud.config.region)
        yield session


def _creates_a_service(body: object) -> bool:
    try:
        ServiceSpec.model_validate(body)
    except ValidationError:
        return False
    return True


def test_the_plan_covers_every_operation_of_the_document() -> None:
    documented = {(op.method.upper(), op.path) for op in (result.ok() for result in SCHEMA.get_all_operations())}
    assert documented == set(PLAN)


@pytest.mark.parametrize(("method", "path", "mode"), [(m, p, mode) for (m, p), modes in PLAN.items() for mode in modes])
def test_fuzz(
    cloud: LocalCloud, session: requests.Session, started: float, method: str, path: str, mode: GenerationMode
) -> None:
    operation = SCHEMA[path][method]
    label = f"{method} {path} {mode.value}"
    statuses = ANSWERS.setdefault(label, Counter())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # Shrinking would add examples beyond the bound; a failure shows the request as it was.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        if time.monotonic() - started > BUDGET_SECONDS:
            LEFT_OUT[label] += 1
            return
        if (method, path) == ("POST", "/services") and _creates_a_service(case.body):
            reject()
        response = case.call(base_url=cloud.api_url, session=session, timeout=60)
        statuses[response.status_code] += 1
        request = case.as_curl_command()
        assert response.status_code < 500, f"{response.status_code} {response.text[:500]}\n{request}"
        if response.status_code >= 400:
            # schemathesis keeps headers lowercased, each with its list of values.
            assert response.headers.get("content-type", [""])[0].startswith("application/json"), request
            body = response.json()
            assert isinstance(body, dict), request
            assert isinstance(body.get("message"), str), f"{body}\n{request}"

    fuzz()


def test_fuzzing_started_no_scale_and_left_no_service(
    cloud: LocalCloud, session: requests.Session, started: float
) -> None:
    assert [e for e in cloud.executions() if e["machine"].endswith("-scale")] == []
    listed = session.get(f"{cloud.api_url}/services", timeout=60)
    assert (listed.status_code, listed.json()["services"]) == (200, [])
    sent = sum(sum(c.values()) for c in ANSWERS.values())
    summary = "; ".join(f"{label}: {dict(sorted(c.items()))}" for label, c in ANSWERS.items())
    print(f"fuzzing: {sent} requests in {time.monotonic() - started:.0f} s ({summary}); left out {dict(LEFT_OUT)}")
