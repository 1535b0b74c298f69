"""The local EventBridge: pattern matching as AWS documents it, the events AWS sends, the bus, schedules."""

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from localcloud.events import (
    EventBus,
    Scheduler,
    ec2_state_change_event,
    matches,
    parse_schedule,
    rule_arn,
    scheduled_event,
)
from localcloud.template import Rule

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION, ACCOUNT = "us-east-1", "123456789012"
EC2_PATTERN = {
    "source": ["aws.ec2"],
    "detail-type": ["EC2 Instance State-change Notification"],
    "detail": {"state": ["stopping", "stopped", "shutting-down", "terminated"]},
}


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what AWS fixes about an event, leaving out the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


# ---------------------------------------------------------------------------------- matching: AWS's examples
EC2_EVENT = ec2_state_change_event("i-0123456789abcdef0", "terminated", region=REGION, account=ACCOUNT)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("pending", False),
        ("running", False),
        ("stopping", True),
        ("stopped", True),
        ("shutting-down", True),
        ("terminated", True),
    ],
)
def test_the_ec2_state_pattern_matches_exactly_the_failure_states(state: str, expected: bool) -> None:
    event = ec2_state_change_event("i-0123456789abcdef0", state, region=REGION, account=ACCOUNT)
    assert matches(EC2_PATTERN, event) is expected


def test_the_ec2_state_pattern_ignores_other_sources_and_types() -> None:
    assert not matches(EC2_PATTERN, {**EC2_EVENT, "source": "aws.ecs"})
    assert not matches(EC2_PATTERN, {**EC2_EVENT, "detail-type": "EC2 Spot Instance Interruption Warning"})
    assert not matches(EC2_PATTERN, {key: value for key, value in EC2_EVENT.items() if key != "detail"})


# The example event from AWS's "Content filtering in Amazon EventBridge event patterns" page.
DOC_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "terminated",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.123",
        "filename": "image.png",
        "location": "EventBridge",
        "tags": ["prod", "web"],
        "nothing": None,
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail": {"state": [{"prefix": "ter"}]}}, True),
        ({"detail": {"state": [{"prefix": "run"}]}}, False),
        ({"detail": {"state": [{"prefix": {"equals-ignore-case": "TER"}}]}}, True),
        ({"detail": {"filename": [{"suffix": ".png"}]}}, True),
        ({"detail": {"filename": [{"suffix": ".jpg"}]}}, False),
        ({"detail": {"filename": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}, True),
        ({"detail": {"state": [{"anything-but": "initializing"}]}}, True),
        ({"detail": {"state": [{"anything-but": "terminated"}]}}, False),
        ({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}, True),
        ({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}, False),
        ({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, True),
        ({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}, False),
        ({"detail": {"filename": [{"anything-but": {"suffix": ".txt"}}]}}, True),
        ({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["TERMINATED", "x"]}}]}}, False),
        ({"detail": {"state": [{"anything-but": {"wildcard": "term*"}}]}}, False),
        ({"detail": {"c-count": [{"anything-but": 5}]}}, False),
        ({"detail": {"c-count": [{"anything-but": [1, 2]}]}}, True),
        ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, True),
        ({"detail": {"c-count": [{"numeric": [">", 0, "<", 5]}]}}, False),
        ({"detail": {"d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 301.8]}]}}, True),
        ({"detail": {"state": [{"numeric": [">", 0]}]}}, False),
        ({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, True),
        ({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, False),
        ({"detail": {"location": [{"equals-ignore-case": "eventbridge"}]}}, True),
        ({"detail": {"location": [{"equals-ignore-case": "eventbus"}]}}, False),
        ({"detail": {"location": [{"wildcard": "Event*"}]}}, True),
        ({"detail": {"location": [{"wildcard": "*Bridge"}]}}, True),
        ({"detail": {"location": [{"wildcard": "E*t*e"}]}}, True),
        ({"detail": {"location": [{"wildcard": "*bridge"}]}}, False),
        ({"detail": {"state": [{"exists": True}]}}, True),
        ({"detail": {"state": [{"exists": False}]}}, False),
        ({"detail": {"no-such-field": [{"exists": False}]}}, True),
        ({"detail": {"no-such-field": [{"exists": True}]}}, False),
        ({"no-such-object": {"field": [{"exists": False}]}}, True),
        # An object is not a leaf: exists does not see it.
        ({"detail": [{"exists": True}]}, False),
        ({"detail": {"nothing": [None]}}, True),
        ({"detail": {"nothing": [{"exists": True}]}}, True),
        ({"detail": {"no-such-field": [None]}}, False),
        ({"detail": {"c-count": [5]}}, True),
        ({"detail": {"c-count": ["5"]}}, False),
        # An array in the event matches when any element matches.
        ({"detail": {"tags": ["web"]}}, True),
        ({"detail": {"tags": ["dev", "test"]}}, False),
        ({"resources": [{"prefix": "arn:aws:ec2:us-west-1:"}]}, True),
        # A leaf list is an OR of allowed values and filters.
        ({"detail": {"state": ["running", {"prefix": "term"}]}}, True),
        ({"source": ["aws.ec2"], "$or": [{"detail": {"c-count": [1]}}, {"detail": {"d-count": [3]}}]}, True),
        ({"source": ["aws.ec2"], "$or": [{"detail": {"c-count": [1]}}, {"detail": {"d-count": [4]}}]}, False),
        ({"detail": {"$or": [{"c-count": [{"numeric": [">", 4]}]}, {"state": ["running"]}]}}, True),
        ({"source": ["aws.s3"], "$or": [{"detail": {"c-count": [5]}}, {"detail": {"d-count": [3]}}]}, False),
    ],
)
def test_content_filters(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, DOC_EVENT) is expected


def test_arrays_of_objects_match_element_by_element() -> None:
    event = {"detail": {"items": [{"kind": "a", "size": 1}, {"kind": "b", "size": 2}]}}
    assert matches({"detail": {"items": {"kind": ["b"], "size": [2]}}}, event)
    # Both fields must come from the same element.
    assert not matches({"detail": {"items": {"kind": ["a"], "size": [2]}}}, event)


def test_nested_arrays_are_crushed_out() -> None:
    event = {"detail": {"matrix": [["a", "b"], ["c"]], "groups": [[{"name": "x"}], [{"name": "y"}]]}}
    assert matches({"detail": {"matrix": ["c"]}}, event)
    assert matches({"detail": {"groups": {"name": ["y"]}}}, event)
    assert not matches({"detail": {"groups": {"name": ["z"]}}}, event)
    assert matches({"detail": {"empty": [{"exists": False}]}}, {"detail": {"empty": []}})


def test_wildcard_escapes_and_adjacent_stars() -> None:
    assert matches({"f": [{"wildcard": r"a\**"}]}, {"f": "a*bc"})
    assert matches({"f": [{"wildcard": r"a\\*"}]}, {"f": "a\\bc"})
    with pytest.raises(ValueError, match="wildcard"):
        matches({"f": [{"wildcard": r"a\\**"}]}, {"f": "a"})


def test_types_are_not_confused() -> None:
    assert not matches({"flag": [1]}, {"flag": True})
    assert not matches({"flag": [True]}, {"flag": 1})
    assert matches({"n": [1]}, {"n": 1.0})
    assert not matches({"n": [{"numeric": [">", 0]}]}, {"n": True})


def test_wildcard_escapes() -> None:
    assert matches({"f": [{"wildcard": r"a\*b"}]}, {"f": "a*b"})
    assert not matches({"f": [{"wildcard": r"a\*b"}]}, {"f": "axxb"})
    assert matches({"f": [{"wildcard": "a.b*"}]}, {"f": "a.bc"})
    assert not matches({"f": [{"wildcard": "a.b*"}]}, {"f": "axbc"})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({"detail": {"state": [{"regex": "term.*"}]}}, "unknown content filter 'regex'"),
        ({"detail": {"state": "terminated"}}, "must be a list"),
        ({"detail": {"state": []}}, "empty list"),
        ({}, "non-empty"),
        ({"n": [{"numeric": [">>", 1]}]}, "invalid argument for 'numeric'"),
        ({"n": [{"numeric": [">", "1"]}]}, "invalid argument for 'numeric'"),
        ({"n": [{"exists": "yes"}]}, "invalid argument for 'exists'"),
        ({"n": [{"prefix": 1}]}, "invalid argument for 'prefix'"),
        ({"n": [{"anything-but": {"numeric": [">", 1]}}]}, "invalid argument for 'anything-but'"),
        ({"n": [{"cidr": "10.0.0.0/33"}]}, "invalid argument for 'cidr'"),
        ({"n": [{"prefix": "a", "suffix": "b"}]}, "neither a value nor a content filter"),
        ({"$or": [{"a": ["b"]}]}, "at least two"),
        ({"n": [{"wildcard": "a**b"}]}, "invalid argument for 'wildcard'"),
        ({"n": [{"wildcard": r"a\b"}]}, "invalid argument for 'wildcard'"),
        ({"n": [{"anything-but": {"wildcard": ["ok*", "bad**"]}}]}, "invalid argument for 'anything-but'"),
        ({"n": [{"anything-but": ["a", 1]}]}, "invalid argument for 'anything-but'"),
        ({"n": [{"numeric": ["<", 6e9]}]}, "invalid argument for 'numeric'"),
    ],
)
def test_invalid_patterns_raise_a_clear_error(pattern: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        matches(pattern, DOC_EVENT)


# ---------------------------------------------------------------------------------- matching: properties
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
keys = st.text(alphabet="abcdefgh-", min_size=1, max_size=4).filter(lambda k: k != "$or")
json_values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
events = st.dictionaries(keys, json_values, min_size=1, max_size=5)


def pattern_from_leaves(event: dict[str, Any], pick: st.DataObject) -> dict[str, Any]:
    """A pattern that requires one of the event's own values at each leaf it keeps."""
    pattern: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, dict):
            nested = pattern_from_leaves(value, pick)
            if nested:
                pattern[key] = nested
        elif isinstance(value, list):
            if value:
                pattern[key] = [pick.draw(st.sampled_from(value))]
        else:
            pattern[key] = [value]
    return pattern


@given(event=events, pick=st.data())
def test_an_event_matches_a_pattern_built_from_its_own_values(event: dict[str, Any], pick: st.DataObject) -> None:
    pattern = pattern_from_leaves(event, pick)
    assume(pattern)
    assert matches(pattern, event)


@given(event=events, pick=st.data(), extra=keys, wanted=st.text(min_size=1, max_size=8))
def test_a_required_field_the_event_lacks_prevents_a_match(
    event: dict[str, Any], pick: st.DataObject, extra: str, wanted: str
) -> None:
    pattern = pattern_from_leaves(event, pick)
    assume(pattern and extra not in event)
    assert not matches({**pattern, extra: [wanted]}, event)


@given(event=events, key=keys)
def test_exists_true_and_false_are_complements(event: dict[str, Any], key: str) -> None:
    assert matches({key: [{"exists": True}]}, event) != matches({key: [{"exists": False}]}, event)


@given(event=events, key=keys, present=st.text(max_size=3) | st.integers(-3, 3), data=st.data())
def test_anything_but_is_the_complement_of_equality_on_present_scalars(
    event: dict[str, Any], key: str, present: str | int, data: st.DataObject
) -> None:
    event = {**event, key: present}
    value = data.draw(st.just(present) | st.text(max_size=3) | st.integers(-3, 3))
    assert matches({key: [value]}, event) != matches({key: [{"anything-but": value}]}, event)


# ---------------------------------------------------------------------------------- the events AWS sends
@pytest.mark.parametrize("state", ["terminated", "stopping", "running"])
def test_the_ec2_state_change_event_has_exactly_the_samples_shape(state: str) -> None:
    sample = json.loads((EVENTS / f"ec2-state-change-{state}.json").read_text())
    built = ec2_state_change_event(
        sample["detail"]["instance-id"], state, region=sample["region"], account=sample["account"]
    )
    assert list(built) == list(sample)
    assert shape(built) == shape(sample)
    assert {k: v for k, v in built.items() if k not in {"id", "time"}} == {
        k: v for k, v in sample.items() if k not in {"id", "time"}
    }
    assert uuid.UUID(built["id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", built["time"])
    assert matches(EC2_PATTERN, built) is (state != "running")


def test_event_times_are_utc_whole_seconds() -> None:
    moment = datetime(2026, 11, 27, 7, 30, 15, 987654, tzinfo=timezone(timedelta(hours=2)))
    event = ec2_state_change_event("i-1", "stopped", region=REGION, account=ACCOUNT, time=moment)
    assert event["time"] == "2026-11-27T05:30:15Z"
    assert scheduled_event("arn", region=REGION, account=ACCOUNT, time=datetime(2026, 1, 2, 3, 4, 5))["time"] == (
        "2026-01-02T03:04:05Z"
    )
    assert datetime.strptime(
        ec2_state_change_event("i-1", "running", region=REGION, account=ACCOUNT)["time"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=UTC) - datetime.now(UTC) < timedelta(seconds=5)


def test_an_unknown_ec2_state_is_refused() -> None:
    with pytest.raises(ValueError, match="no instance state 'dead'"):
        ec2_state_change_event("i-1", "dead", region=REGION, account=ACCOUNT)


def test_the_scheduled_event_has_exactly_the_samples_shape() -> None:
    sample = json.loads((EVENTS / "scheduled-event.json").read_text())
    built = scheduled_event(sample["resources"][0], region=sample["region"], account=sample["account"])
    assert list(built) == list(sample)
    assert shape(built) == shape(sample)
    assert built["detail"] == {}
    assert {k: v for k, v in built.items() if k not in {"id", "time"}} == {
        k: v for k, v in sample.items() if k not in {"id", "time"}
    }
    assert sample["resources"] == [rule_arn(sample["resources"][0].rsplit("/", 1)[1], region=REGION, account=ACCOUNT)]


# ---------------------------------------------------------------------------------- the bus
REPAIR_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:repair"
AUDIT_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit"


def bus_rules() -> list[Rule]:
    return [
        Rule("RepairOnStateChange", EC2_PATTERN, None, (REPAIR_ARN,)),
        Rule("AuditEverythingEc2", {"source": ["aws.ec2"]}, None, (AUDIT_ARN,)),
        Rule("Nightly", None, "rate(1 day)", (AUDIT_ARN,)),
    ]


def test_the_bus_delivers_to_every_matching_rules_targets() -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    bus = EventBus(bus_rules(), lambda arn, event: received.append((arn, event)))
    assert bus.put(EC2_EVENT) == [REPAIR_ARN, AUDIT_ARN]
    running = ec2_state_change_event("i-1", "running", region=REGION, account=ACCOUNT)
    assert bus.put(running) == [AUDIT_ARN]
    assert bus.put({"source": "aws.events", "detail-type": "Scheduled Event"}) == []
    assert [arn for arn, _ in received] == [REPAIR_ARN, AUDIT_ARN, AUDIT_ARN]
    assert received[0][1] == EC2_EVENT
    assert received[0][1] is not EC2_EVENT
    assert received[0][1] is not received[1][1]
    assert [(d.rule, d.target_arn, d.attempts, d.error) for d in bus.deliveries] == [
        ("RepairOnStateChange", REPAIR_ARN, 1, None),
        ("AuditEverythingEc2", AUDIT_ARN, 1, None),
        ("AuditEverythingEc2", AUDIT_ARN, 1, None),
    ]


def test_the_bus_delivers_duplicates_as_given() -> None:
    received: list[str] = []
    bus = EventBus(bus_rules()[:1], lambda arn, event: received.append(event["id"]))
    bus.put(EC2_EVENT)
    bus.put(EC2_EVENT)
    assert received == [EC2_EVENT["id"], EC2_EVENT["id"]]


def test_the_bus_can_duplicate_every_delivery() -> None:
    received: list[str] = []
    bus = EventBus(bus_rules()[:1], lambda arn, event: received.append(event["id"]), duplicates=2)
    assert bus.put(EC2_EVENT) == [REPAIR_ARN]
    assert received == [EC2_EVENT["id"]] * 3
    assert len(bus.deliveries) == 3


def test_the_bus_retries_a_failing_target_then_records_the_failure() -> None:
    calls: list[str] = []

    def flaky(arn: str, event: dict[str, Any]) -> None:
        calls.append(arn)
        if arn == REPAIR_ARN and len(calls) < 2:
            raise ConnectionError("throttled")
        if arn == AUDIT_ARN:
            raise RuntimeError("broken target")

    bus = EventBus(bus_rules(), flaky, attempts=3, retry_delay=0.001)
    assert bus.put(EC2_EVENT) == [REPAIR_ARN]
    assert calls == [REPAIR_ARN, REPAIR_ARN, AUDIT_ARN, AUDIT_ARN, AUDIT_ARN]
    assert [(d.target_arn, d.attempts, d.error) for d in bus.deliveries] == [
        (REPAIR_ARN, 2, None),
        (AUDIT_ARN, 3, "RuntimeError: broken target"),
    ]


def test_the_bus_refuses_a_rule_with_an_invalid_pattern() -> None:
    with pytest.raises(ValueError, match=r"rule Bad: .*unknown content filter 'glob'"):
        EventBus([Rule("Bad", {"source": [{"glob": "aws.*"}]}, None, ())], lambda arn, event: None)


def test_a_schedule_rule_fires_straight_to_its_targets() -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    rules = bus_rules()
    bus = EventBus(rules, lambda arn, event: received.append((arn, event)))
    event = scheduled_event(rule_arn("Nightly", region=REGION, account=ACCOUNT), region=REGION, account=ACCOUNT)
    assert bus.fire(rules[2], event) == [AUDIT_ARN]
    assert received == [(AUDIT_ARN, event)]


# ---------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60.0),
        ("rate(5 minutes)", 300.0),
        ("rate(1 hour)", 3600.0),
        ("rate(12 hours)", 43200.0),
        ("rate(1 day)", 86400.0),
        ("rate(7 days)", 604800.0),
    ],
)
def test_rate_expressions(expression: str, seconds: float) -> None:
    assert parse_schedule(expression) == seconds


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * ? *)", "supports only rate()"),
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 minute)", "rate(N minutes)"),
        ("rate(0 minutes)", "N > 1"),
        ("rate(5 seconds)", "is not a rate("),
        ("every 5 minutes", "is not a rate("),
    ],
)
def test_bad_schedule_expressions(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_schedule(expression)


def test_the_scheduler_fires_a_rate_rule_about_as_often_as_the_speedup_says() -> None:
    fired: list[str] = []
    twice = threading.Event()

    def fire(rule: Rule) -> None:
        fired.append(rule.logical_id)
        if len(fired) >= 2:
            twice.set()

    rules = [
        Rule("EveryMinute", None, "rate(1 minute)", ("arn",)),
        Rule("Daily", None, "rate(1 day)", ("arn",)),
        Rule("NotASchedule", {"source": ["x"]}, None, ("arn",)),
    ]
    # 1 minute becomes 0.1 s; a day becomes 144 s, so it never fires here.
    scheduler = Scheduler(rules, fire, speedup=600)
    assert scheduler.intervals == {"EveryMinute": 0.1, "Daily": 144.0}
    started = time.monotonic()
    scheduler.start()
    assert twice.wait(10)
    time.sleep(0.3)
    scheduler.stop(timeout=5)
    elapsed = time.monotonic() - started
    assert set(fired) == {"EveryMinute"}
    assert 2 <= len(fired) <= elapsed / 0.1 + 1
    count = len(fired)
    time.sleep(0.3)
    assert len(fired) == count, "no firing after stop()"


def test_a_failing_firing_does_not_stop_the_scheduler() -> None:
    calls = threading.Semaphore(0)

    def fire(rule: Rule) -> None:
        calls.release()
        raise RuntimeError("target down")

    scheduler = Scheduler([Rule("Tick", None, "rate(1 minute)", ())], fire, speedup=1200)
    scheduler.start()
    try:
        assert calls.acquire(timeout=10)
        assert calls.acquire(timeout=10)
    finally:
        scheduler.stop()


def test_a_scheduler_without_schedules_stops_promptly() -> None:
    scheduler = Scheduler([], lambda rule: None)
    scheduler.start()
    scheduler.stop(timeout=5)
    with pytest.raises(ValueError, match="speedup"):
        Scheduler([], lambda rule: None, speedup=0)
    with pytest.raises(ValueError, match="supports only rate"):
        Scheduler([Rule("Cron", None, "cron(0 * * * ? *)", ())], lambda rule: None)
