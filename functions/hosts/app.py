"""HostsFunction: launches the hosts, checks their readiness, terminates them."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import hosts
from swarmwarden.validation import parse


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(hosts.REQUEST, event)
    return hosts.run(request, hosts.Adapters.from_settings(settings())).model_dump(mode="json")
