"""Errors that cross into Step Functions. A Lambda error's `errorType` is the class name, so the
state machines' Retry and Catch fields match on these names: keep them stable."""


class SwarmwardenError(Exception):
    """Base for every error we raise on purpose."""


class TransientError(SwarmwardenError):
    """Worth retrying with backoff: throttling, a host still busy, a command not finished in time."""


class SwarmSettling(TransientError):
    """The managers are electing a leader, or do not know every node's state yet: seconds, so the
    workflow retries it on a short fixed interval rather than with backoff."""


class ScriptFailed(SwarmwardenError):
    """A host script exited non-zero; the message is the script's own `error` field."""


class SwarmNotAsPlanned(SwarmwardenError):
    """The swarm's nodes do not match the plan (verify step)."""


class InvalidRequest(SwarmwardenError):
    """The input names something impossible; never retried."""


class InsufficientCapacity(SwarmwardenError):
    """EC2 has no capacity for the instance type in that AZ (InsufficientInstanceCapacity); the message
    names the AZ. Repair then tries another AZ."""
