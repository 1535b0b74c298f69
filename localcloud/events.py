"""EventBridge, locally: event patterns, the events AWS sends us, a bus that routes them to the
template's rule targets, and a clock for `rate()` schedules.

Delivery is synchronous: `EventBus.put` returns once every matching target has been called (or has
failed its bounded retries). EventBridge delivers at least once, so the bus never drops a duplicate
it is given, and `duplicates=N` makes it send each event N extra times to exercise the targets'
idempotency.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localcloud.template import Rule

log = logging.getLogger(__name__)

EC2_STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
# Numeric filters take bounds within this range (Event Ruler's limit).
NUMERIC_LIMIT = 5.0e9
_FILTERS = frozenset(
    {"prefix", "suffix", "anything-but", "exists", "numeric", "equals-ignore-case", "wildcard", "cidr"}
)
_NUMERIC_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


# ---------------------------------------------------------------------------------- patterns
def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether EventBridge would route `event` to a rule with `pattern`; an invalid pattern raises ValueError."""
    validate_pattern(pattern)
    return _match_object(pattern, event)


def validate_pattern(pattern: Mapping[str, Any]) -> None:
    """Raises ValueError naming the first thing EventBridge would reject in `pattern`."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise ValueError(f"event pattern must be a non-empty object, not {pattern!r}")
    _validate_object(pattern, "")


def _validate_object(pattern: Mapping[str, Any], path: str) -> None:
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(p, Mapping) for p in value):
                raise ValueError(f"{where}: $or takes a list of at least two patterns")
            for option in value:
                validate_pattern(option)
        elif isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{where}: an empty object matches nothing")
            _validate_object(value, where)
        elif isinstance(value, list):
            if not value:
                raise ValueError(f"{where}: an empty list matches nothing")
            for allowed in value:
                _validate_allowed(allowed, where)
        else:
            raise ValueError(f"{where}: a leaf must be a list of allowed values, not {value!r}")


def _validate_allowed(allowed: Any, where: str) -> None:
    if allowed is None or isinstance(allowed, str | int | float | bool):
        return
    if not isinstance(allowed, Mapping) or len(allowed) != 1:
        raise ValueError(f"{where}: {allowed!r} is neither a value nor a content filter")
    ((name, argument),) = allowed.items()
    if name not in _FILTERS:
        raise ValueError(f"{where}: unknown content filter {name!r} (known: {', '.join(sorted(_FILTERS))})")
    if not _valid_argument(name, argument):
        raise ValueError(f"{where}: invalid argument for {name!r}: {argument!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid_argument(name: str, argument: Any) -> bool:
    if name in {"prefix", "suffix"}:
        return isinstance(argument, str) or (
            isinstance(argument, Mapping)
            and list(argument) == ["equals-ignore-case"]
            and isinstance(argument["equals-ignore-case"], str)
        )
    if name == "equals-ignore-case":
        return isinstance(argument, str)
    if name == "wildcard":
        return _valid_wildcard(argument)
    if name == "exists":
        return isinstance(argument, bool)
    if name == "cidr":
        try:
            ipaddress.ip_network(argument, strict=False)
        except (TypeError, ValueError):
            return False
        return True
    if name == "numeric":
        return (
            isinstance(argument, list)
            and len(argument) in {2, 4}
            and all(op in _NUMERIC_OPERATORS for op in argument[0::2])
            and all(_is_number(bound) and -NUMERIC_LIMIT <= bound <= NUMERIC_LIMIT for bound in argument[1::2])
        )
    # anything-but: a value, a list of all strings or all numbers, or one nested string filter.
    if isinstance(argument, str) or _is_number(argument):
        return True
    if isinstance(argument, list):
        return bool(argument) and (all(isinstance(v, str) for v in argument) or all(_is_number(v) for v in argument))
    if isinstance(argument, Mapping) and len(argument) == 1:
        ((inner, value),) = argument.items()
        values = value if isinstance(value, list) and value else [value]
        if inner in {"prefix", "suffix"}:
            return isinstance(value, str)
        if inner == "equals-ignore-case":
            return all(isinstance(v, str) for v in values)
        if inner == "wildcard":
            return all(_valid_wildcard(v) for v in values)
    return False


def _valid_wildcard(argument: Any) -> bool:
    # A backslash may escape only `*` or another backslash, and unescaped stars may not be adjacent.
    if not isinstance(argument, str) or re.fullmatch(r"(?:[^\\]|\\[*\\])*", argument) is None:
        return False
    return "**" not in re.sub(r"\\[*\\]", "_", argument)


def _match_object(pattern: Mapping[str, Any], value: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_match_object(option, value) for option in expected):
                return False
            continue
        # Arrays, nested or not, are crushed out: a field matches if any element does.
        values = _flatten(value[key]) if isinstance(value, Mapping) and key in value else []
        if isinstance(expected, Mapping):
            # Fields of one object match together, so both must come from the same array element.
            candidates = [v for v in values if isinstance(v, Mapping)]
            if not any(_match_object(expected, c) for c in candidates or [{}]):
                return False
        # Only leaves count: an object (or an empty array) under the key is, for EventBridge, no value.
        elif not _match_leaf(expected, [v for v in values if not isinstance(v, Mapping)]):
            return False
    return True


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    return [leaf for item in value for leaf in _flatten(item)]


def _match_leaf(allowed: list[Any], leaves: list[Any]) -> bool:
    for rule in allowed:
        if isinstance(rule, Mapping) and "exists" in rule:
            if rule["exists"] == bool(leaves):
                return True
        elif any(_match_value(rule, leaf) for leaf in leaves):
            return True
    return False


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        return type(expected) is type(actual) and expected == actual
    if _is_number(expected) and _is_number(actual):
        return bool(expected == actual)
    return isinstance(expected, str) and isinstance(actual, str) and expected == actual


def _wildcard(pattern: str) -> re.Pattern[str]:
    # `*` is any run of characters; `\*` and `\\` are a literal star and backslash.
    parts = re.split(r"(\\\\|\\\*|\*)", pattern)
    translated = {"\\\\": re.escape("\\"), "\\*": re.escape("*"), "*": ".*"}
    return re.compile("".join(translated.get(p, re.escape(p)) for p in parts), re.DOTALL)


def _match_value(rule: Any, value: Any) -> bool:
    if not isinstance(rule, Mapping):
        return _equal(rule, value)
    ((name, argument),) = rule.items()
    text = value if isinstance(value, str) else None
    if name in {"prefix", "suffix"}:
        if text is None:
            return False
        folded = isinstance(argument, Mapping)
        affix = argument["equals-ignore-case"].lower() if folded else argument
        subject = text.lower() if folded else text
        return subject.startswith(affix) if name == "prefix" else subject.endswith(affix)
    if name == "equals-ignore-case":
        return text is not None and text.lower() == argument.lower()
    if name == "wildcard":
        return text is not None and _wildcard(argument).fullmatch(text) is not None
    if name == "cidr":
        try:
            return text is not None and ipaddress.ip_address(text) in ipaddress.ip_network(argument, strict=False)
        except ValueError:
            return False
    if name == "numeric":
        return _is_number(value) and all(
            _NUMERIC_OPERATORS[op](value, bound) for op, bound in zip(argument[0::2], argument[1::2], strict=True)
        )
    return _anything_but(argument, value)


def _anything_but(argument: Any, value: Any) -> bool:
    if isinstance(argument, list):
        return not any(_equal(excluded, value) for excluded in argument)
    if not isinstance(argument, Mapping):
        return not _equal(argument, value)
    ((inner, excluded),) = argument.items()
    choices = excluded if isinstance(excluded, list) else [excluded]
    return not any(_match_value({inner: choice}, value) for choice in choices)


# ---------------------------------------------------------------------------------- events AWS sends
def _timestamp(moment: datetime | None) -> str:
    # EventBridge's `time`: ISO 8601 in UTC, whole seconds, with a Z.
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ec2_state_change_event(
    instance_id: str, state: str, *, region: str, account: str, time: datetime | None = None
) -> dict[str, Any]:
    """The "EC2 Instance State-change Notification" EC2 sends when an instance changes state."""
    if state not in EC2_STATES:
        raise ValueError(f"EC2 has no instance state {state!r} (states: {', '.join(EC2_STATES)})")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": account,
        "time": _timestamp(time),
        "region": region,
        "resources": [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": state},
    }


def rule_arn(rule_name: str, *, region: str, account: str) -> str:
    return f"arn:aws:events:{region}:{account}:rule/{rule_name}"


def scheduled_event(rule_arn: str, *, region: str, account: str, time: datetime | None = None) -> dict[str, Any]:
    """The "Scheduled Event" EventBridge sends a schedule rule's targets."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _timestamp(time),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


# ---------------------------------------------------------------------------------- the bus
@dataclass(frozen=True)
class Delivery:
    """One event sent to one target; `error` is set when every attempt failed."""

    rule: str
    target_arn: str
    event: dict[str, Any]
    attempts: int
    error: str | None


class EventBus:
    """Routes events to the targets of the rules whose pattern matches, synchronously, in rule order.

    A target that raises is retried `attempts` times in all, with a short backoff; then the failure
    is recorded (as a dead-letter queue would keep it) and the other targets still get the event.
    """

    def __init__(
        self,
        rules: list[Rule],
        deliver: Callable[[str, dict[str, Any]], None],
        *,
        duplicates: int = 0,
        attempts: int = 3,
        retry_delay: float = 0.05,
    ) -> None:
        if duplicates < 0 or attempts < 1:
            raise ValueError("duplicates must be >= 0 and attempts >= 1")
        for rule in rules:
            if rule.pattern is not None:
                try:
                    validate_pattern(rule.pattern)
                except ValueError as error:
                    raise ValueError(f"rule {rule.logical_id}: {error}") from None
        self.rules = list(rules)
        self.deliveries: list[Delivery] = []
        self._deliver = deliver
        self._duplicates = duplicates
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._lock = threading.Lock()

    def put(self, event: Mapping[str, Any]) -> list[str]:
        """Delivers `event` to every matching rule's targets; returns the target ARNs that got it."""
        delivered: list[str] = []
        for rule in self.rules:
            if rule.pattern is not None and _match_object(rule.pattern, event):
                delivered += self.fire(rule, event)
        return delivered

    def fire(self, rule: Rule, event: Mapping[str, Any]) -> list[str]:
        """Sends `event` straight to `rule`'s targets, as a schedule rule does with its scheduled events."""
        delivered = []
        for target in rule.target_arns:
            results = [self._send(rule, target, event) for _ in range(1 + self._duplicates)]
            if any(results):
                delivered.append(target)
        return delivered

    def _send(self, rule: Rule, target: str, event: Mapping[str, Any]) -> bool:
        error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                # Each delivery is its own JSON document, as it would be on the wire.
                self._deliver(target, json.loads(json.dumps(event)))
            except Exception as failure:
                error = f"{type(failure).__name__}: {failure}"
                log.warning("delivery of %s to %s failed (attempt %d): %s", rule.logical_id, target, attempt, error)
                if attempt < self._attempts:
                    time.sleep(self._retry_delay * 2 ** (attempt - 1))
                continue
            self._record(Delivery(rule.logical_id, target, dict(event), attempt, None))
            return True
        self._record(Delivery(rule.logical_id, target, dict(event), self._attempts, error))
        return False

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


# ---------------------------------------------------------------------------------- schedules
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# With a large speedup, intervals shorter than this would make the scheduler spin.
MIN_INTERVAL_SECONDS = 0.05


def parse_schedule(expression: str) -> float:
    """Seconds between firings of a `rate()` schedule expression."""
    if expression.startswith("cron("):
        raise ValueError(f"{expression}: the local cloud supports only rate() schedules")
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise ValueError(f"{expression!r} is not a rate(N minute|minutes|hour|hours|day|days) expression")
    count, unit = int(match.group(1)), match.group(2)
    # EventBridge insists on the singular for 1 and the plural otherwise.
    if count == 0 or (count == 1) == unit.endswith("s"):
        raise ValueError(f"{expression}: use rate(1 {unit.rstrip('s')}) or rate(N {unit.rstrip('s')}s) with N > 1")
    return float(count * _UNIT_SECONDS[unit.rstrip("s")])


class Scheduler:
    """Fires each schedule rule every interval / speedup seconds, first one interval after `start()`.

    A firing that overruns its interval delays the next one rather than bunching them up.
    """

    def __init__(self, rules: list[Rule], fire: Callable[[Rule], None], speedup: float = 1.0) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.intervals = {
            rule.logical_id: max(MIN_INTERVAL_SECONDS, parse_schedule(rule.schedule) / speedup)
            for rule in rules
            if rule.schedule is not None
        }
        self._rules = {rule.logical_id: rule for rule in rules if rule.schedule is not None}
        self._fire = fire
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="localcloud-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("scheduler still firing after %.1fs; left as a daemon thread", timeout)

    def _run(self) -> None:
        started = time.monotonic()
        due = {name: started + interval for name, interval in self.intervals.items()}
        if not due:
            self._stopping.wait()
            return
        while True:
            name = min(due, key=due.__getitem__)
            if self._stopping.wait(max(0.0, due[name] - time.monotonic())):
                return
            try:
                self._fire(self._rules[name])
            except Exception:
                log.exception("schedule %s: firing failed", name)
            due[name] = max(due[name] + self.intervals[name], time.monotonic())
