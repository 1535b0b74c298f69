"""Function settings from environment variables, validated once per cold start."""

import os
from functools import cache
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from swarmwarden.domain.model import MAX_WORKERS_CEILING


class Settings(BaseModel):
    """Every variable the functions read. Each function sets the ones it needs in template.yaml."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cluster_name: str = Field(alias="CLUSTER_NAME")
    table_name: str = Field(alias="TABLE_NAME")
    token_parameter_prefix: str = Field(alias="TOKEN_PARAMETER_PREFIX")
    region: str = Field(alias="AWS_REGION")
    manager_instance_profile_arn: str = Field(default="", alias="MANAGER_INSTANCE_PROFILE_ARN")
    worker_instance_profile_arn: str = Field(default="", alias="WORKER_INSTANCE_PROFILE_ARN")
    provision_state_machine_arn: str = Field(default="", alias="PROVISION_STATE_MACHINE_ARN")
    teardown_state_machine_arn: str = Field(default="", alias="TEARDOWN_STATE_MACHINE_ARN")
    poll_interval_seconds: int = Field(default=5, alias="POLL_INTERVAL_SECONDS")
    poll_max_attempts: int = Field(default=120, alias="POLL_MAX_ATTEMPTS")
    command_timeout_seconds: int = Field(default=120, alias="COMMAND_TIMEOUT_SECONDS")
    # Reconcile's: how long a tagged instance may run without joining before it counts as broken.
    never_joined_grace_minutes: int = Field(default=10, ge=1, le=1440, alias="NEVER_JOINED_GRACE_MINUTES")
    # The scale workflow, started by the HTTP API and by the custom resource's Update.
    scale_state_machine_arn: str = Field(default="", alias="SCALE_STATE_MACHINE_ARN")
    # The repair trigger's: the workflow it starts, K (repairs at once) and X (the circuit breaker's %).
    repair_state_machine_arn: str = Field(default="", alias="REPAIR_STATE_MACHINE_ARN")
    max_concurrent_repairs: int = Field(default=2, ge=1, le=10, alias="MAX_CONCURRENT_REPAIRS")
    repair_pause_threshold_percent: int = Field(default=30, ge=1, le=100, alias="REPAIR_PAUSE_THRESHOLD_PERCENT")
    # The HTTP API's: the workers ceiling of scale requests, how services pull images (`never` in the
    # local cloud, which has no registry), and the Idempotency-Key store.
    max_workers: int = Field(default=20, ge=0, le=MAX_WORKERS_CEILING, alias="MAX_WORKERS")
    resolve_image: Literal["always", "never"] = Field(default="always", alias="RESOLVE_IMAGE")
    idempotency_table_name: str = Field(default="", alias="IDEMPOTENCY_TABLE_NAME")

    @classmethod
    def from_environment(cls) -> Self:
        return cls.model_validate(dict(os.environ))


@cache
def settings() -> Settings:
    return Settings.from_environment()
