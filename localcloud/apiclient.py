"""`swarmwarden status|scale|operation|services`: the HTTP API from a terminal.

Every request is SigV4-signed (service `execute-api`), as the API's AWS_IAM authorizer requires. Where
the API is, in this order:
1. `--api URL`; a loopback URL is a local cloud, signed with its well-known credentials.
2. `--stack NAME`: the stack's `ApiUrl` output, signed with the caller's AWS credentials (botocore's chain).
3. A running local cloud: the one `--prefix` names, or the only one running (its control file, so root).
4. The stack `swarmwarden`.

Exit codes: 0 done; 2 the API refused the request (any 4xx: bad input, an unknown name, a conflict, no
access), or the command line was wrong; 1 anything else (unreachable, a 5xx, an operation that failed, a
`--wait` that ran out of time).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import botocore.session

DEFAULT_STACK = "swarmwarden"
# HttpApiServer's defaults: the local cloud's fake credentials and region (CloudConfig's).
LOCAL_ACCESS_KEY = LOCAL_SECRET_KEY = "testing"  # noqa: S105 - well known, accepted on loopback only
LOCAL_REGION = "us-east-1"
EXIT_FAILED = 1
EXIT_REFUSED = 2
# OperationStatus's values (swarmwarden.adapters.operations) after which an operation changes no more.
SUCCEEDED = "succeeded"
FINAL_STATUSES = frozenset({SUCCEEDED, "failed"})
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_ERROR_PREFIX = "swarmwarden: "


class ApiError(Exception):
    """A request that did not succeed: the API's message, its field errors, and the exit code it means."""

    def __init__(
        self, message: str, *, status: int | None = None, fields: tuple[str, ...] = (), refused: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields
        self._refused = refused

    @property
    def exit_code(self) -> int:
        refused = self._refused or (self.status is not None and 400 <= self.status < 500)
        return EXIT_REFUSED if refused else EXIT_FAILED


# ---------------------------------------------------------------------------------- the transport
@dataclass(frozen=True)
class Api:
    """One HTTP API and the credentials that sign for it."""

    url: str
    region: str
    access_key: str
    secret_key: str
    session_token: str | None = None
    timeout: float = 30.0

    @classmethod
    def local(cls, url: str, region: str = LOCAL_REGION, timeout: float = 30.0) -> Api:
        """A local cloud's API, signed with the fixed credentials it accepts."""
        return cls(url, region, LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """The JSON answer of a 2xx; an ApiError with the API's message otherwise."""
        # Imported when needed, here and below: `swarmwarden --help` and `local status` stay quick.
        from localcloud.httpapi import sign_request

        url = self.url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else b""
        unsigned = {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
        signed = sign_request(
            method,
            url,
            data,
            unsigned,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            session_token=self.session_token,
        )
        request = urllib.request.Request(url, data=data or None, method=method, headers=signed)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise _api_error(method, path, error.code, error.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise ApiError(f"{method} {url}: no answer ({getattr(error, 'reason', error)})") from None
        return json.loads(payload) if payload else None


def _api_error(method: str, path: str, status: int, payload: bytes) -> ApiError:
    """The API's ErrorBody (`message`, `errors` of `{field, problem}`, `operation_id` on a 409), or API
    Gateway's own `{"message"}` (403, 404 of an unknown route, 500), or whatever text came."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = payload.decode(errors="replace").strip()
    message = f"{method} {path}: HTTP {status}"
    if not isinstance(body, dict):
        return ApiError(f"{message}: {body}" if body else message, status=status)
    if body.get("message"):
        message = f"{message}: {body['message']}"
    if body.get("operation_id"):
        message = f"{message} (operation {body['operation_id']})"
    errors = body.get("errors")
    errors = errors if isinstance(errors, list) else []
    fields = tuple(f"{e.get('field')}: {e.get('problem')}" if isinstance(e, dict) else str(e) for e in errors)
    return ApiError(message, status=status, fields=fields)


# ---------------------------------------------------------------------------------- where the API is
def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _local_api(prefix: str | None) -> str | None:
    """The API URL of the running local cloud `prefix` names, or of the only one running."""
    # Imported here: cli.py imports this module to register its commands.
    from localcloud.cli import CliError, _control, _prefix
    from localcloud.hosts import STATE_ROOT

    if prefix:
        try:
            _prefix(prefix)
        except argparse.ArgumentTypeError as error:
            raise ApiError(f"--prefix {error}", refused=True) from None
    prefixes = [prefix] if prefix else sorted(p.name for p in STATE_ROOT.glob("*") if p.is_dir())
    running = {p: control for p in prefixes if (control := _control(p)) is not None}
    if not running:
        if prefix:
            raise ApiError(f"no local cloud is running on prefix {prefix}")
        return None
    if len(running) > 1:
        raise ApiError(f"local clouds are running on prefixes {', '.join(running)}: choose one with --prefix")
    [(name, control)] = running.items()
    try:
        url = str(control.request("GET", "/status", timeout=10)["api_url"])
    except CliError as error:
        raise ApiError(str(error)) from None
    if not url:
        raise ApiError(f"the local cloud {name} serves no HTTP API (the template has no routes)")
    return url


def _stack_api(session: botocore.session.Session, stack: str, region: str) -> str:
    import botocore.exceptions

    client: Any = session.create_client("cloudformation", region_name=region)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except botocore.exceptions.ClientError as error:
        raise ApiError(f"stack {stack} in {region}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    if "ApiUrl" not in outputs:
        raise ApiError(f"stack {stack} in {region} has no ApiUrl output")
    return str(outputs["ApiUrl"])


def resolve(args: argparse.Namespace) -> Api:
    """The API the arguments name, with the credentials that sign for it (see the module's docstring)."""
    url = args.api or (None if args.stack else _local_api(args.prefix))
    if url is not None and _is_loopback(url):
        return Api.local(url, args.region or LOCAL_REGION, args.request_timeout)
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    region = args.region or _region_of(url) or session.get_config_variable("region")
    if not region:
        raise ApiError("no AWS region: pass --region or configure one (AWS_REGION, ~/.aws/config)")
    try:
        credentials = session.get_credentials()
        if url is None:
            url = _stack_api(session, args.stack or DEFAULT_STACK, region)
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except botocore.exceptions.BotoCoreError as error:
        raise ApiError(str(error)) from None
    if frozen is None:
        raise ApiError("no AWS credentials found (botocore's chain: environment, ~/.aws, SSO, instance role)")
    return Api(url, region, str(frozen.access_key), str(frozen.secret_key), frozen.token, timeout=args.request_timeout)


def _region_of(url: str | None) -> str | None:
    match = _EXECUTE_API_HOST.search(urllib.parse.urlsplit(url or "").hostname or "")
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------- the view
def _console() -> Console:
    return Console(highlight=False, emoji=False, soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _records(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _table_like(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) for item in value)
    return isinstance(value, dict) and any(isinstance(v, dict | list) for v in value.values())


def render(console: Console, answer: Any, title: str = "") -> None:
    """Readable without knowing the shape: lists of objects as tables, objects as `key: value` lines."""
    if isinstance(answer, list) and all(isinstance(item, dict) for item in answer):
        console.print(_records(title, answer) if answer else f"{title}: none")
        return
    if not isinstance(answer, dict):
        console.print(_cell(answer), markup=False)
        return
    nested: list[tuple[str, Any]] = []
    for key, value in answer.items():
        if _table_like(value):
            nested.append((key, value))
        else:
            console.print(f"{key}: {_cell(value)}", markup=False)
    for key, value in nested:
        render(console, value, key)


def cluster_view(console: Console, cluster: dict[str, Any]) -> None:
    """GET /cluster (docs/api.md): the counts, the operation in progress, then a row per node."""
    desired, actual = cluster["desired"], cluster["actual"]
    seen = f"{actual['managers']} + {actual['workers']}" if actual else "unknown (no manager answered)"
    console.print(
        f"cluster {cluster['name']}: {cluster['status']}; managers + workers wanted"
        f" {desired['managers']} + {desired['workers']}, ready {seen}",
        markup=False,
    )
    operation = cluster["operation"]
    if operation:
        console.print(f"operation {operation['id']}: {operation['kind']} {operation['status']}", markup=False)
    if cluster.get("swarm_error"):
        console.print(f"swarm: {cluster['swarm_error']}", markup=False)
    # Light borders, unbroken ids, and the availability only when it is not "active": 80 columns suffice.
    table = Table(title="nodes", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("instance", "role", "AZ", "state", "swarm", "tasks"):
        table.add_column(column, no_wrap=column == "instance")
    for node in cluster["nodes"]:
        swarm = [_cell(node["swarm_state"])] + ["leader"] * node["leader"]
        if node["availability"] not in {None, "active"}:
            swarm.append(node["availability"])
        table.add_row(
            *(_cell(node[key]) for key in ("instance_id", "role", "az", "state")), "/".join(swarm), _cell(node["tasks"])
        )
    console.print(table)


def services_view(console: Console, services: list[dict[str, Any]]) -> None:
    """GET /services (docs/api.md): a row per service, with its running tasks per node."""
    table = Table(title="services", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("name", "image", "replicas", "running", "tasks per node"):
        table.add_column(column)
    for service in services:
        spread = " ".join(f"{t['instance_id'] or t['node_id']}:{t['running']}" for t in service["tasks"])
        replicas = "global" if service["mode"] == "global" else _cell(service["replicas"])
        table.add_row(service["name"], service["image"], replicas, str(service["running"]), spread or "-")
    console.print(table)


def _print_json(answer: Any) -> None:
    sys.stdout.write(json.dumps(answer, indent=2) + "\n")


# ---------------------------------------------------------------------------------- commands
def _show(args: argparse.Namespace, answer: Any, view: Callable[[Console, Any], None]) -> int:
    if args.json:
        _print_json(answer)
    else:
        view(_console(), answer)
    return 0


def _generic(title: str) -> Callable[[Console, Any], None]:
    return lambda console, answer: render(console, answer, title)


def cmd_status(args: argparse.Namespace) -> int:
    return _show(args, resolve(args).request("GET", "/cluster"), cluster_view)


def cmd_operation(args: argparse.Namespace) -> int:
    return _show(args, resolve(args).request("GET", f"/operations/{_quote(args.id)}"), _generic("operation"))


def cmd_scale(args: argparse.Namespace) -> int:
    api = resolve(args)
    # Generated when not given, so a retry of this very request (same key) cannot start a second scale.
    key = args.idempotency_key or str(uuid.uuid4())
    answer = api.request(
        "PUT", "/cluster/capacity", {"managers": args.managers, "workers": args.workers}, {"Idempotency-Key": key}
    )
    # No operation when the cluster already has these counts.
    operation = answer.get("operation_id")
    if operation and args.wait:
        return wait_for(api, operation, args.timeout, args.poll, json_output=args.json)
    if args.json:
        _print_json(answer)
    elif operation:
        # A replayed answer (same key) carries the status the operation had when it was accepted.
        _console().print(f"operation {operation} accepted, {answer['status']} (Idempotency-Key {key})", markup=False)
    else:
        _console().print(answer["message"], markup=False)
    return 0


def _step_line(step: dict[str, Any]) -> str:
    return f"  {step['at']}  {step['name']}  {step.get('detail', '')}".rstrip()


def wait_for(
    api: Api,
    operation: str,
    timeout: float,
    poll: float,
    *,
    json_output: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Polls the operation until it ends (0 if it succeeded) or `timeout` runs out (1), printing each
    step as it changes; with `json_output`, only the final answer."""
    console = _console()
    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    if not json_output:
        console.print(f"operation {operation}: waiting up to {timeout:.0f} s", markup=False)
    while True:
        answer = api.request("GET", f"/operations/{_quote(operation)}")
        status = answer["status"]
        if not json_output:
            for step in answer["steps"]:
                line = _step_line(step)
                if line not in shown:
                    shown.add(line)
                    console.print(line, markup=False)
        if status in FINAL_STATUSES:
            if json_output:
                _print_json(answer)
            else:
                error = answer.get("error")
                console.print(f"operation {operation}: {status}" + (f": {_cell(error)}" if error else ""), markup=False)
            return 0 if status == SUCCEEDED else EXIT_FAILED
        if time.monotonic() + poll > deadline:
            raise ApiError(f"operation {operation} still {status} after {timeout:.0f} s")
        sleep(poll)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def cmd_services_list(args: argparse.Namespace) -> int:
    return _show(args, resolve(args).request("GET", "/services"), lambda c, a: services_view(c, a["services"]))


def cmd_services_show(args: argparse.Namespace) -> int:
    answer = resolve(args).request("GET", f"/services/{_quote(args.name)}")
    return _show(args, answer, lambda console, service: services_view(console, [service]))


def port_spec(text: str) -> dict[str, Any]:
    """`PUBLISHED:TARGET[/PROTOCOL]`, e.g. 8080:80 or 5353:53/udp."""
    match = re.fullmatch(r"(\d+):(\d+)(?:/(tcp|udp|sctp))?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not PUBLISHED:TARGET[/tcp|udp|sctp]")
    return {"published": int(match[1]), "target": int(match[2]), "protocol": match[3] or "tcp"}


def env_spec(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def service_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name, "image": args.image, "replicas": args.replicas}
    if args.command:
        body["command"] = args.command
    if args.port:
        body["ports"] = args.port
    if args.env:
        body["env"] = dict(args.env)
    if args.constraint:
        body["constraints"] = args.constraint
    return body


def cmd_services_create(args: argparse.Namespace) -> int:
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    return _show(args, resolve(args).request("POST", "/services", service_body(args), headers), _generic(args.name))


def cmd_services_delete(args: argparse.Namespace) -> int:
    answer = resolve(args).request("DELETE", f"/services/{_quote(args.name)}")
    if args.json:
        _print_json(answer)
    else:
        _console().print(f"deleted {args.name}", markup=False)
    return 0


# ---------------------------------------------------------------------------------- arguments
def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _reporting(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The API's message and field errors on stderr, and the exit code they mean."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ApiError as error:
            print(f"{_ERROR_PREFIX}{error}", file=sys.stderr)
            # The API's message often names the fields already; the rest follow, one a line.
            for field in error.fields:
                if field not in str(error):
                    print(f"  {field}", file=sys.stderr)
            return error.exit_code

    return run


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `status`, `scale`, `operation` and `services ...` on the `swarmwarden` parser."""
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("which API")
    target.add_argument("--api", metavar="URL", help="the API's URL; a loopback URL is a local cloud")
    target.add_argument(
        "--stack", metavar="NAME", help=f"the stack whose ApiUrl output to use (default {DEFAULT_STACK})"
    )
    target.add_argument("--prefix", help="the running local cloud to use (default: the only one running)")
    target.add_argument("--region", help="AWS region (default: the API URL's, else your AWS configuration)")
    target.add_argument("--request-timeout", type=_positive_seconds, default=30.0, metavar="SECONDS")
    common.add_argument("--json", action="store_true", help="the API's answer as JSON")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=_reporting(handler))
        return sub

    command(groups, "status", cmd_status, "the cluster: desired and actual counts, nodes, the current operation")
    scale = command(groups, "scale", cmd_scale, "start a scale operation (202 and its id); --wait follows it")
    scale.add_argument("--managers", type=int, required=True, help="1, 3, 5 or 7")
    scale.add_argument("--workers", type=int, required=True)
    scale.add_argument("--idempotency-key", metavar="KEY", help="repeat a request without starting a second scale")
    scale.add_argument("--wait", action="store_true", help="follow the operation's steps until it ends")
    scale.add_argument("--timeout", type=_positive_seconds, default=1800.0, help="seconds --wait waits (1800)")
    scale.add_argument("--poll", type=_positive_seconds, default=2.0, help=argparse.SUPPRESS)
    operation = command(groups, "operation", cmd_operation, "an operation: status, steps, error")
    operation.add_argument("id")

    services = groups.add_parser("services", help="the swarm's services", description="the swarm's services")
    actions = services.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(actions, "list", cmd_services_list, "each service with its tasks per node")
    command(actions, "show", cmd_services_show, "one service").add_argument("name")
    create = command(actions, "create", cmd_services_create, "create a service (runs on a manager)")
    create.add_argument("--name", required=True)
    create.add_argument("--image", required=True)
    create.add_argument("--replicas", type=int, default=1)
    create.add_argument("--port", type=port_spec, action="append", default=[], metavar="P:T[/PROTO]",
                        help="publish TARGET on each node's PUBLISHED port (host mode; repeatable)")  # fmt: skip
    create.add_argument("--env", type=env_spec, action="append", default=[], metavar="K=V", help="(repeatable)")
    create.add_argument("--constraint", action="append", default=[], metavar="C",
                        help="a placement constraint, e.g. node.role==worker (repeatable)")  # fmt: skip
    create.add_argument("--idempotency-key", metavar="KEY", help="repeat a request without creating twice")
    create.add_argument("command", nargs="*", help="the command and its arguments (after --)")
    command(actions, "delete", cmd_services_delete, "remove a service").add_argument("name")
