"""ClusterStateFunction: records what the workflows do in the cluster table, and holds the cluster lock."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.operations import Operations
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import cluster_state
from swarmwarden.validation import parse


@cache
def adapters() -> cluster_state.Adapters:
    table = settings().table_name
    return cluster_state.Adapters(
        store=ClusterStore(aws.dynamodb(), table), operations=Operations(aws.dynamodb(), table)
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(cluster_state.REQUEST, event)
    return cluster_state.run(request, adapters()).model_dump(mode="json")
