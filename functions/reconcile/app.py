"""ReconcileFunction: the scheduled sweep (what no EC2 event reports), and the rebalance after one of our
instances comes up (the EC2 `running` event)."""

import dataclasses
import time
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from swarmwarden import aws
from swarmwarden.adapters.hosts import Hosts
from swarmwarden.adapters.operations import Operations
from swarmwarden.adapters.store import ClusterStore
from swarmwarden.adapters.workflows import Workflows
from swarmwarden.domain.model import ClusterSpec, Poll
from swarmwarden.observability import emit_metric, logger, metrics, tracer
from swarmwarden.settings import settings
from swarmwarden.steps import reconcile, repair, swarm
from swarmwarden.steps.operations import ScaleStart


@cache
def adapters() -> reconcile.Adapters:
    config = settings()
    trigger = repair.trigger_adapters(config)
    sfn = aws.stepfunctions()
    operations = Operations(aws.dynamodb(), config.table_name)

    # A repair retried after a closed one runs only once the operator has lifted a pause: they have
    # judged the failures, so the circuit breaker does not hold it back again (the quorum guard does).
    retry = dataclasses.replace(trigger, limits=trigger.limits.model_copy(update={"pause_threshold_percent": 100}))

    def start_repair(spec: ClusterSpec, instance_id: str, attempt: int) -> repair.TriggerResult:
        return repair.start_repair(spec, instance_id, retry if attempt else trigger, attempt=attempt)

    def execution_status(name: str) -> str:
        arn = config.repair_state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        try:
            return sfn.describe_execution(executionArn=arn)["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            return ""

    return reconcile.Adapters(
        cluster=config.cluster_name,
        store=ClusterStore(aws.dynamodb(), config.table_name),
        operations=operations,
        hosts=Hosts(aws.ec2(), aws.ssm(), {}),
        swarm=swarm.adapters_from_settings(config),
        start_repair=start_repair,
        execution_status=execution_status,
        scale=ScaleStart(
            operations=operations,
            workflows=Workflows(sfn),
            state_machine_arn=config.scale_state_machine_arn,
            poll=Poll(interval_seconds=config.poll_interval_seconds, max_attempts=config.poll_max_attempts),
        ),
        metrics=repair.Metrics(config.cluster_name, emit_metric),
        grace_seconds=config.never_joined_grace_minutes * 60,
        clock=time.time,
    )


@logger.inject_lambda_context(log_event=True, correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = reconcile.handle(event, adapters())
    logger.info("reconcile", extra=result.model_dump(mode="json"))
    return result.model_dump(mode="json")
