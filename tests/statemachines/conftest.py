"""Fixtures for running the workflows in moto's ASL engine with stubbed Lambda tasks."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from tests.statemachines.aslrunner import MOTO_CONFIG, REGION, AslRunner, LambdaStubs
from tests.statemachines.samples import STATEMACHINES


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config=copy.deepcopy(MOTO_CONFIG)):  # type: ignore[call-overload]
        yield


@pytest.fixture
def stubs(aws: None) -> Iterator[LambdaStubs]:
    with LambdaStubs().installed() as installed:
        yield installed


@pytest.fixture
def runner(aws: None) -> AslRunner:
    return AslRunner(boto3.client("stepfunctions", region_name=REGION))


@pytest.fixture
def provision_arn(runner: AslRunner) -> str:
    return runner.create("provision", STATEMACHINES / "provision.asl.json")


@pytest.fixture
def teardown_arn(runner: AslRunner) -> str:
    return runner.create("teardown", STATEMACHINES / "teardown.asl.json")
