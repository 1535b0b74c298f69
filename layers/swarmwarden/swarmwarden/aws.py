"""boto3 clients with the retry policy AWS recommends for flaky control-plane calls."""

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient

# Standard mode retries throttling and 5xx with exponential backoff and full jitter.
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=30)


@cache
def _client(service: str) -> Any:
    return boto3.client(service, config=RETRY_CONFIG)  # type: ignore[call-overload]


def ec2() -> "EC2Client":
    return _client("ec2")  # type: ignore[no-any-return]


def ecs() -> "ECSClient":
    return _client("ecs")  # type: ignore[no-any-return]


def ssm() -> "SSMClient":
    return _client("ssm")  # type: ignore[no-any-return]


def dynamodb() -> "DynamoDBClient":
    return _client("dynamodb")  # type: ignore[no-any-return]


def stepfunctions() -> "SFNClient":
    return _client("stepfunctions")  # type: ignore[no-any-return]
