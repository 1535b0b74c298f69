"""RepairFunction: the repair workflow's own steps (classify, guard, claim, replan, record, fail)."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.instances import Instances
from swarmwarden.adapters.operations import Operations
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.observability import emit_metric, logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import repair
from swarmwarden.validation import parse


@cache
def adapters() -> repair.Adapters:
    config = settings()
    return repair.Adapters(
        store=ClusterStore(aws.dynamodb(), config.table_name),
        operations=Operations(aws.dynamodb(), config.table_name),
        instances=Instances(aws.ec2()),
        metrics=repair.Metrics(config.cluster_name, emit_metric),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(repair.REQUEST, event)
    return repair.run(request, adapters()).model_dump(mode="json")
