"""bench.cost's pure part: counts -> billable quantities -> dollars."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.cost import (
    COMPONENTS,
    PLATFORM_LOG_BYTES,
    Counts,
    Invoked,
    billed_gb_seconds,
    by_component,
    controller_month,
    dollars,
    fixed_month,
    quantities,
    runs_per_month,
)

invocations = st.lists(
    st.builds(
        Invoked,
        function=st.just("F"),
        duration_seconds=st.floats(min_value=0, max_value=900, allow_nan=False),
        memory_mb=st.sampled_from([128, 256, 1024]),
    ),
    max_size=20,
)


def test_duration_is_billed_rounded_up_to_the_millisecond() -> None:
    assert billed_gb_seconds([Invoked("F", 0.0010001, 1024)]) == pytest.approx(0.002)
    assert billed_gb_seconds([Invoked("F", 0.5, 256)]) == pytest.approx(0.125)


@given(invocations)
def test_billed_gb_seconds_is_at_most_one_millisecond_over_per_invocation(invoked: list[Invoked]) -> None:
    raw = sum(i.duration_seconds * i.memory_mb / 1024 for i in invoked)
    billed = billed_gb_seconds(invoked)
    assert raw - 1e-9 <= billed <= raw + sum(0.001 * i.memory_mb / 1024 for i in invoked) + 1e-9


# The control plane's prices (the controller's instance, disk and address are not a component).
amounts = st.dictionaries(
    st.sampled_from(sorted(n for names in COMPONENTS.values() for n in names)),
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
)


@given(amounts, st.floats(min_value=0, max_value=100, allow_nan=False))
def test_dollars_scale_with_the_amounts_and_the_free_tier_only_lowers_them(
    quantities_: dict[str, float], factor: float
) -> None:
    bill = dollars(quantities_)
    free = dollars(quantities_, free_tier=True)
    assert all(0 <= free[name] <= bill[name] for name in bill)
    scaled = dollars({name: amount * factor for name, amount in quantities_.items()})
    assert sum(scaled.values()) == pytest.approx(sum(bill.values()) * factor, rel=1e-9, abs=1e-9)
    assert sum(by_component(bill).values()) == pytest.approx(sum(bill.values()), rel=1e-9, abs=1e-12)


def test_free_tier_takes_the_monthly_allowance_off() -> None:
    assert dollars({"state transitions": 4_000}, free_tier=True)["state transitions"] == 0
    assert dollars({"state transitions": 5_000}, free_tier=True)["state transitions"] == pytest.approx(0.025)
    assert dollars({"DynamoDB writes": 1e6}, free_tier=True)["DynamoDB writes"] == pytest.approx(0.625)


def test_quantities_from_counts() -> None:
    counts = Counts(
        invocations=[Invoked("ApiFunction", 0.1, 256), Invoked("ReconcileFunction", 1.0, 256)],
        transitions=7,
        calls=Counter(
            {
                ("functions", "dynamodb", "GetItem"): 3,
                ("functions", "dynamodb", "TransactWriteItems"): 1,
                ("functions", "dynamodb", "PutItem"): 2,
                ("hosts", "ssm", "GetParameter"): 4,
                ("hosts", "ssm", "PutParameter"): 2,
                ("functions", "ec2", "DescribeInstances"): 9,
            }
        ),
        log_bytes=1000,
        metrics=2,
        traces=1,
        http_requests=1,
    )
    q = quantities(counts, metric_hours=2)
    assert q["lambda requests"] == 2
    assert q["lambda GB-s (arm64)"] == pytest.approx(0.275)
    assert q["state transitions"] == 7
    assert q["DynamoDB reads"] == 3
    assert q["DynamoDB writes"] == 2 + 4  # a transaction of two items costs twice each
    assert q["KMS requests"] == 6
    assert q["log ingestion"] == pytest.approx((1000 + 2 * PLATFORM_LOG_BYTES) / 1024**3)
    assert q["custom metrics"] == pytest.approx(2 * 2 / 730)
    assert q["HTTP API requests"] == 1


def test_a_schedule_every_five_minutes_runs_8760_times_a_month() -> None:
    assert runs_per_month(300) == pytest.approx(8760)


def test_an_always_on_t4g_nano_controller() -> None:
    month = controller_month("t4g.nano")
    assert month == pytest.approx({"t4g.nano": 3.066, "gp3": 0.64, "public IPv4": 3.65})


def test_fixed_month_keeps_the_retention_window_of_logs() -> None:
    month = fixed_month(alarms=3, table_bytes=1024**3, log_retention_days=30, monthly_log_bytes=1024**3)
    assert month["alarms"] == 3
    assert month["DynamoDB storage"] == month["DynamoDB PITR"] == pytest.approx(1)
    assert month["log storage"] == pytest.approx(30 * 24 / 730)
    assert fixed_month(0, 0, 3650, 1024**3)["log storage"] == pytest.approx(1)
