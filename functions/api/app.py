"""ApiFunction: the HTTP API (swarmwarden.api.routes), behind API Gateway with IAM auth."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden.api.routes import handle
from swarmwarden.observability import logger, metrics, tracer


# log_event stays off: request bodies may carry service environment values.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
