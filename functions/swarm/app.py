"""SwarmFunction: init, join, verify and token cleanup, run on the hosts through SSM."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import swarm
from swarmwarden.validation import parse


@cache
def adapters() -> swarm.Adapters:
    return swarm.adapters_from_settings(settings())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(swarm.REQUEST, event)
    return swarm.run(request, adapters()).model_dump(mode="json")
