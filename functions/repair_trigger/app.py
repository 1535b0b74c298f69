"""RepairTriggerFunction: EC2 state-change events (via EventBridge) -> the repair workflow, once per instance."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden.observability import logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import repair


@cache
def adapters() -> repair.TriggerAdapters:
    return repair.trigger_adapters(settings())


@logger.inject_lambda_context(log_event=True, correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = repair.trigger(parse(event=event, model=repair.Ec2StateChangeEvent), adapters())
    logger.info("repair trigger", extra=result.model_dump(mode="json"))
    return result.model_dump(mode="json")
