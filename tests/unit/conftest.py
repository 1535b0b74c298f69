"""Fixtures shared by the unit tests: fake AWS credentials, and moto with fresh cached clients."""

from collections.abc import Iterator

import pytest
from moto import mock_aws
from swarmwarden import aws, settings

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach real AWS: fake credentials, a fixed region, no shared config files."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "SwarmwardenTest",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield
    # Cached clients and settings must not leak from one test's environment into the next.
    aws._client.cache_clear()
    settings.settings.cache_clear()


@pytest.fixture
def mocked_aws() -> Iterator[None]:
    """moto for every service; the library's cached clients are rebuilt inside the mock."""
    with mock_aws():
        aws._client.cache_clear()
        yield
