"""ClusterStateFunction: records provision and teardown in the cluster table."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import cluster_state
from swarmwarden.validation import parse


@cache
def store() -> ClusterStore:
    return ClusterStore(aws.dynamodb(), settings().table_name)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(cluster_state.REQUEST, event)
    return cluster_state.run(request, store()).model_dump(mode="json")
