"""Fixtures shared by the unit tests: fake AWS credentials, and moto with fresh cached clients."""

import json
from collections.abc import Iterator

import boto3
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


@pytest.fixture
def cluster_table(mocked_aws: None) -> str:
    """The cluster table as template.yaml creates it (key pk + sk), empty; returns its name."""
    boto3.client("dynamodb").create_table(
        TableName="ClusterTable",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return "ClusterTable"


# The public parameter CloudFormation resolves for the template's AMI parameter; moto knows it.
ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


@pytest.fixture
def ecs_ami(mocked_aws: None) -> str:
    """The ECS-optimized AL2023 AMI id, resolved the way CloudFormation resolves the template's parameter."""
    return aws.ssm().get_parameter(Name=ECS_AMI_PARAMETER)["Parameter"]["Value"]


@pytest.fixture
def instance_profiles(mocked_aws: None) -> dict[str, str]:
    """One IAM role and instance profile per host role, as template.yaml creates them: role -> profile ARN."""
    iam = boto3.client("iam")
    arns = {}
    for role in ("manager", "worker"):
        name = f"demo-{role}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        arns[role] = profile["Arn"]
    return arns


EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
