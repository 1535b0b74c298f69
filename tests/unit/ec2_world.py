"""Helpers that play the parts moto cannot: host agents registering, and SSM's view of its agents."""

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from botocore.stub import Stubber
from swarmwarden import aws


def bare_instances(count: int) -> list[str]:
    """Instances outside any cluster, for tests that only need ids EC2 knows."""
    found = aws.ec2().run_instances(ImageId="ami-0123456789abcdef0", MinCount=count, MaxCount=count)
    return [i["InstanceId"] for i in found["Instances"]]


def register_with_ecs(instance_ids: Iterable[str], cluster: str = "demo") -> None:
    """What each host's ECS agent does once the user data has pointed it at our cluster."""
    for instance_id in instance_ids:
        document = json.dumps({"instanceId": instance_id})
        aws.ecs().register_container_instance(cluster=cluster, instanceIdentityDocument=document)


@contextmanager
def ssm_agents(asked: list[str], online: Iterable[str]) -> Iterator[Stubber]:
    """moto lacks DescribeInstanceInformation, so the library's own SSM client gets a stubbed answer:
    the agents in `online` ping Online, the rest of `asked` ConnectionLost. The stub also checks the
    adapter filters on exactly the instance ids it was asked about."""
    online = set(online)
    with Stubber(aws.ssm()) as stub:
        stub.add_response(
            "describe_instance_information",
            {
                "InstanceInformationList": [
                    {"InstanceId": i, "PingStatus": "Online" if i in online else "ConnectionLost"} for i in asked
                ]
            },
            {"Filters": [{"Key": "InstanceIds", "Values": sorted(asked)}]},
        )
        yield stub
