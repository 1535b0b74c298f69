"""The one place that creates Powertools' Logger, Tracer and Metrics; every module imports them from here."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "swarmwarden"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="Swarmwarden", service=SERVICE)
