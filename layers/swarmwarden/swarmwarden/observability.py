"""The one place that creates Powertools' Logger, Tracer and Metrics; every module imports them from here."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "swarmwarden"
NAMESPACE = "Swarmwarden"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def emit_metric(name: str, value: float, unit: str, dimensions: dict[str, str]) -> None:
    """One EMF record with its own dimensions (say a cluster and a role), printed at once. The alarms
    in template.yaml match these dimensions exactly."""
    with single_metric(
        name=name,
        unit=MetricUnit(unit),
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, **dimensions},
    ):
        pass
