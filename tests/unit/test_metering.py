"""localcloud.metering: who made a request, EMF metrics, billed state transitions, and the meter on a moto server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from localcloud.metering import LOCAL_CLOUD_APP_ID, Meter, MetricKey, Origin, emf_metrics, origin, transitions

SIGNED_BY_ENGINE = "AWS4-HMAC-SHA256 Credential=ak/20261127/us-east-1/ec2/aws4_request, SignedHeaders=host"
SIGNED_BY_FUNCTION = "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/ec2/aws4_request, SignedHeaders=host"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"User-Agent": "Boto3/1.43 md/Botocore#1.43 os/linux", "Authorization": SIGNED_BY_FUNCTION}, Origin.FUNCTIONS),
        ({"User-Agent": "aws-cli/1.46.3 md/Botocore#1.43", "Authorization": SIGNED_BY_FUNCTION}, Origin.HOSTS),
        ({"User-Agent": "Boto3/1.43 md/Botocore#1.43", "Authorization": SIGNED_BY_ENGINE}, Origin.STATE_MACHINES),
        ({"User-Agent": f"Boto3/1.43 app/{LOCAL_CLOUD_APP_ID}", "Authorization": SIGNED_BY_FUNCTION}, None),
        ({}, Origin.FUNCTIONS),
    ],
)
def test_origin(headers: dict[str, str], expected: Origin | None) -> None:
    assert origin(headers) == expected


def _emf(name: str, **dimensions: str) -> str:
    return json.dumps(
        {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {"Namespace": "Swarmwarden", "Dimensions": [sorted(dimensions)], "Metrics": [{"Name": name}]}
                ],
            },
            name: [1.0],
            **dimensions,
        }
    )


def test_emf_metrics_are_keyed_by_namespace_name_and_dimension_values() -> None:
    line = _emf("RepairsStarted", service="swarmwarden", cluster="c1")
    assert emf_metrics(line) == [
        MetricKey("Swarmwarden", "RepairsStarted", (("cluster", "c1"), ("service", "swarmwarden")))
    ]
    assert emf_metrics(_emf("RepairsStarted", service="swarmwarden", cluster="c2")) != emf_metrics(line)


@pytest.mark.parametrize("line", ["plain text", '{"level": "INFO", "message": "reconcile"}', "[1, 2]", ""])
def test_other_lines_publish_no_metric(line: str) -> None:
    assert emf_metrics(line) == []


def _task(attempts: int) -> list[dict[str, str]]:
    events = [{"type": "TaskStateEntered"}]
    for _ in range(attempts):
        events += [{"type": "LambdaFunctionScheduled"}, {"type": "LambdaFunctionStarted"}]
    return [*events, {"type": "TaskStateExited"}]


@given(st.lists(st.one_of(st.integers(min_value=1, max_value=5), st.sampled_from(["Choice", "Wait", "Pass", "Map"]))))
def test_transitions_are_states_entered_plus_retries(states: list[int | str]) -> None:
    events: list[dict[str, str]] = [{"type": "ExecutionStarted"}]
    expected = 0
    for state in states:
        if isinstance(state, int):  # a task and its number of attempts
            events += _task(state)
            expected += 1 + (state - 1)
        else:
            events += [{"type": f"{state}StateEntered"}, {"type": f"{state}StateExited"}]
            expected += 1
    events.append({"type": "ExecutionSucceeded"})
    assert transitions(events) == expected


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _client(url: str, *, key: str = "testing", agent: str | None = None) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="testing",
        config=Config(user_agent_extra=agent) if agent else None,
    )


def test_meter_counts_calls_by_origin_and_emf_and_logs(
    moto_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "lambda.log"
    meter = Meter()
    with meter.installed(log_file):
        before = meter.usage()
        _client(moto_server).describe_instances()
        _client(moto_server).describe_vpcs()
        _client(moto_server, key="ak").describe_instances()
        _client(moto_server, agent=f"app/{LOCAL_CLOUD_APP_ID}").describe_instances()
        log_file.write_text("x" * 100)
        print(_emf("RepairsStarted", service="swarmwarden"))
        print("not a metric")
        spent = meter.usage() - before
    assert spent.calls == {
        ("functions", "ec2", "DescribeInstances"): 1,
        ("functions", "ec2", "DescribeVpcs"): 1,
        ("state machines", "ec2", "DescribeInstances"): 1,
    }
    assert list(spent.metrics) == [MetricKey("Swarmwarden", "RepairsStarted", (("service", "swarmwarden"),))]
    assert spent.log_bytes == 100 + len(_emf("RepairsStarted", service="swarmwarden")) + 1
    assert "not a metric" in capsys.readouterr().out  # stdout still reaches its reader
