"""CustomResourceFunction: CloudFormation's Create/Update/Delete start the workflows, which report back."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.cloudformation import send_response
from swarmwarden.adapters.operations import Operations
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.domain.model import Poll
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import custom_resource
from swarmwarden.steps.operations import ScaleStart


def stored_data(cluster_name: str) -> dict[str, str]:
    """The attributes of an unchanged cluster, re-read so an Update keeps answering !GetAtt."""
    store = ClusterStore(aws.dynamodb(), settings().table_name)
    record = store.cluster(cluster_name)
    managers = sorted(n.instance_id for n in store.nodes(cluster_name) if n.role.value == "manager")
    return {"ManagerInstanceIds": ",".join(managers), "SwarmId": record.swarm_id if record else ""}


@cache
def adapters() -> custom_resource.Adapters:
    config = settings()
    poll = Poll(interval_seconds=config.poll_interval_seconds, max_attempts=config.poll_max_attempts)
    workflows = Workflows(aws.stepfunctions())
    return custom_resource.Adapters(
        workflows=workflows,
        respond=send_response,
        stored_data=stored_data,
        provision_arn=config.provision_state_machine_arn,
        teardown_arn=config.teardown_state_machine_arn,
        poll=poll,
        scale=ScaleStart(
            operations=Operations(aws.dynamodb(), config.table_name),
            workflows=workflows,
            state_machine_arn=config.scale_state_machine_arn,
            poll=poll,
        ),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return {"outcome": custom_resource.handle(event, adapters())}
