"""Turns a host script and its parameters into the command text that SSM Run Command executes.

Parameters travel as shell-quoted `SW_*` exports in front of the script body, so the
text is exactly what AWS records in the command history. A join token is never a
parameter: scripts fetch tokens from Parameter Store on the host.
"""

import re
import shlex
from functools import cache
from importlib import resources

_PARAMETER_NAME = re.compile(r"^SW_[A-Z][A-Z0-9_]*$")
_SCRIPT_NAME = re.compile(r"^[a-z][a-z-]*$")
TOKEN_MARKER = "SWMTKN-"  # noqa: S105 - the prefix we scan for, not a secret


class UnsafeCommandError(ValueError):
    """A command would have carried something it must never carry."""


@cache
def script_body(name: str) -> str:
    """The text of `scripts/<name>.sh`, shipped inside the layer."""
    return resources.files("swarmwarden").joinpath("scripts", f"{name}.sh").read_text(encoding="utf-8")


@cache
def script_library() -> str:
    """What every script shares (strict mode, JSON results, cleanup, token helpers): `scripts/lib/common.sh`."""
    return resources.files("swarmwarden").joinpath("scripts", "lib", "common.sh").read_text(encoding="utf-8")


def render(name: str, parameters: dict[str, str]) -> str:
    """The full command text: the parameter exports, the shared library, then the script itself."""
    lines = []
    for key, value in sorted(parameters.items()):
        if not _PARAMETER_NAME.match(key):
            raise UnsafeCommandError(f"parameter name {key!r} must look like SW_NAME")
        if TOKEN_MARKER in value:
            raise UnsafeCommandError(f"parameter {key} carries a join token")
        lines.append(f"export {key}={shlex.quote(value)}")
    if not _SCRIPT_NAME.match(name):
        raise UnsafeCommandError(f"script name {name!r} must look like name-of-script")
    return "\n".join([*lines, f"SCRIPT='{name}'", script_library(), script_body(name)])
