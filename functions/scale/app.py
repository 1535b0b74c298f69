"""ScaleFunction: the scale workflow's planning, node bookkeeping and task moves."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import scale, swarm
from swarmwarden.validation import parse


@cache
def adapters() -> scale.Adapters:
    config = settings()
    return scale.Adapters(
        store=ClusterStore(aws.dynamodb(), config.table_name), swarm=swarm.adapters_from_settings(config)
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(scale.REQUEST, event)
    return scale.run(request, adapters()).model_dump(mode="json")
