"""`swarmwarden local ...`: the local cloud from a terminal.

One process owns a cloud (moto, the Lambda runtime and the hosts' parents all live in it): the
foreground `local up`, the background `local serve` that `local up --detach` starts, or `local demo`.
It serves a small control API on 127.0.0.1 (`GET /status`, `POST /kill`, `POST /down`), whose port
and token it writes to `<state_dir>/control.json`, so `status`, `kill` and `down` can reach it.

The cloud's state dir is wiped when a cloud starts and when it closes (`cleanup_all`), so what must
outlive it, the background process's log, sits beside it: `<state_root>/<prefix>-serve.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from localcloud import apiclient, timeline
from localcloud.hosts import STATE_ROOT, Host, HostError, cleanup_all, leftovers, prefix_lock
from localcloud.image import IMAGE

if TYPE_CHECKING:
    from localcloud.cloud import CloudConfig, LocalCloud

DEFAULT_PREFIX = "swl"
CONTROL_FILE = "control.json"
PID_FILE = "local.pid"
# Started/finished workflows and the hosts' states change within a second locally.
POLL_SECONDS = 0.5
# How long a background cloud may take to answer once its process exists, and to exit after down.
DAEMON_EXIT_SECONDS = 60.0
# Every error ends as one such line on stderr; the parent of a background cloud reports the last one.
ERROR_PREFIX = "swarmwarden: "
# Powertools warns on every invocation that records no metric; the local cloud has nothing to add.
_NO_METRICS_WARNING = "No application metrics to publish"


class CliError(Exception):
    """Reported as one line on stderr, with a non-zero exit."""


# ---------------------------------------------------------------------------------- the owning process
class Session:
    """The cloud this process owns, and the control API other `swarmwarden local` commands talk to."""

    def __init__(self, config: CloudConfig) -> None:
        from localcloud.cloud import LocalCloud  # moto and boto3: only the owner pays for their import

        self.cloud: LocalCloud = LocalCloud(config)
        self.phase = "starting"
        self.error = ""
        self.stop = threading.Event()
        # One mutating operation (up, kill, down) at a time, as the real API allows.
        self._operation = threading.Lock()
        self._token = secrets.token_urlsafe(24)
        self._server: ThreadingHTTPServer | None = None
        self._metrics: TextIO | None = None
        self._log_handler: logging.Handler | None = None

    @property
    def state_dir(self) -> Path:
        return self.cloud.state_dir

    def start(self) -> None:
        self.cloud.start()
        self._quiet_terminal()
        self._serve_control()

    def _quiet_terminal(self) -> None:
        """Powertools prints EMF metrics to stdout and libraries log warnings: both go to files."""
        warnings.filterwarnings("ignore", message=_NO_METRICS_WARNING)
        self._metrics = (self.state_dir / "metrics.log").open("a", encoding="utf-8")
        sys.stdout = self._metrics
        self._log_handler = logging.FileHandler(self.state_dir / "cloud.log", encoding="utf-8")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self._log_handler)

    def _serve_control(self) -> None:
        session = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self._authorized():
                    if self.path == "/status":
                        self._answer(200, session.status())
                    else:
                        self._answer(404, {"error": f"no route GET {self.path}"})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}") if 0 <= length <= 65536 else None
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    self._answer(400, {"error": "the body must be a JSON object of at most 64 KiB"})
                elif self.path == "/kill":
                    self._answer(*session.kill(str(body.get("node", "")), str(body.get("mode", "terminate"))))
                elif self.path == "/down":
                    code, answer = session.down(float(body.get("timeout", 900)))
                    self._answer(code, answer)
                    # Only now may the owner close the cloud and exit: the caller has its answer.
                    session.stop.set()
                else:
                    self._answer(404, {"error": f"no route POST {self.path}"})

            def _authorized(self) -> bool:
                if secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {session._token}"):
                    return True
                self._answer(401, {"error": "missing or wrong token (see control.json)"})
                return False

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        control = {
            "pid": os.getpid(),
            "port": self._server.server_address[1],
            "token": self._token,
            "prefix": self.cloud.config.prefix,
        }
        # The token keeps other local users off the API: the file is root's alone.
        path = self.state_dir / CONTROL_FILE
        path.touch(mode=0o600)
        path.write_text(json.dumps(control))
        (self.state_dir / PID_FILE).write_text(f"{os.getpid()}\n")

    def provision(self, timeout: float) -> None:
        with self._operation:
            self.phase = "provisioning"
            try:
                self.cloud.up(timeout=timeout)
            except Exception as error:
                self.phase, self.error = "failed", str(error)
                raise
            self.phase = "up"

    def kill(self, node: str, mode: str) -> tuple[int, dict[str, Any]]:
        if self.phase != "up":
            return 409, {"error": f"the cloud is {self.phase}, not up"}
        with self._operation:
            try:
                return 200, {"instance_id": self.cloud.kill(node, mode), "mode": mode}
            except Exception as error:
                return 400, {"error": str(error)}

    def down(self, timeout: float) -> tuple[int, dict[str, Any]]:
        with self._operation:
            if self.phase not in {"up", "failed"}:
                return 409, {"error": f"the cloud is {self.phase}"}
            self.phase = "tearing-down"
            started = time.monotonic()
            try:
                self.cloud.down(timeout=timeout)
            except Exception as error:
                self.phase, self.error = "failed", str(error)
                return 500, {"error": str(error)}
            self.phase = "down"
            return 200, {"seconds": round(time.monotonic() - started, 1)}

    def status(self) -> dict[str, Any]:
        return {
            "prefix": self.cloud.config.prefix,
            "pid": os.getpid(),
            "phase": self.phase,
            "error": self.error,
            "api_url": self.cloud.api_url,
            "state_dir": str(self.state_dir),
            "workflows": _retrying(self._workflows),
            "nodes": _retrying(self._nodes),
        }

    def _workflows(self) -> list[dict[str, str]]:
        return [
            {
                "machine": execution["machine"],
                "name": execution["name"],
                "status": execution["status"],
                "step": self.cloud.current_state(execution["executionArn"]),
            }
            for execution in sorted(self.cloud.executions(), key=lambda e: e["startDate"])
        ]

    def _nodes(self) -> list[dict[str, str]]:
        return [
            {**dataclasses.asdict(view), "hostname": f"ip-{view.ip.replace('.', '-')}"} for view in self.cloud.nodes()
        ]

    def close(self) -> None:
        """Stops the control API and removes every trace of the cloud (also its control files)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._metrics is not None:
            sys.stdout = sys.__stdout__
            self._metrics.close()
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
        self.cloud.close()


def _retrying[T](read: Callable[[], T], attempts: int = 5) -> T:
    """moto's backends are plain dicts: a read can race a RunInstances in another thread."""
    for _attempt in range(attempts - 1):
        try:
            return read()
        except RuntimeError:
            time.sleep(0.05)
    return read()


@contextlib.contextmanager
def _owning(prefix: str) -> Iterator[None]:
    """This process owns the prefix for as long as its cloud lives; a second owner is refused at once."""
    control = _control(prefix)
    if control is not None:
        raise CliError(f"a local cloud is already running on prefix {prefix} (pid {control.pid})")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(prefix_lock(prefix, timeout=0))
        except HostError:
            raise CliError(
                f"prefix {prefix} is in use by another process (a local cloud or a test);"
                f" see `swarmwarden local status --prefix {prefix}`"
            ) from None
        yield


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM stops a cloud the way Ctrl-C does: through teardown and cleanup."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Cleanup is bounded; letting a second Ctrl-C cut it short would leave hosts behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- the view
def _console() -> Console:
    # sys.stdout carries the functions' metrics while a cloud runs; the UI goes to the real terminal.
    # Logs and pipes get whole lines and whole tables (the parent of a background cloud reads the last line).
    terminal = sys.__stdout__ is not None and sys.__stdout__.isatty()
    return Console(file=sys.__stdout__, highlight=False, emoji=False, soft_wrap=True, width=None if terminal else 160)


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(title="nodes", title_justify="left")
    for column in ("instance", "hostname", "IP", "AZ", "role", "EC2 state", "swarm"):
        table.add_column(column)
    for node in nodes:
        table.add_row(
            node["instance_id"],
            node["hostname"],
            node["ip"],
            node["az"],
            node["role"],
            node["state"],
            node["swarm"] or "-",
        )
    return table


def _progress(status: dict[str, Any]) -> Group:
    workflows = Table(title="workflows", title_justify="left")
    for column in ("workflow", "status", "step"):
        workflows.add_column(column)
    for flow in status["workflows"]:
        workflows.add_row(flow["machine"], flow["status"], flow["step"] if flow["status"] == "RUNNING" else "-")
    return Group(workflows, nodes_table(status["nodes"]))


def _summary(status: dict[str, Any]) -> str:
    """One line per change, for logs and pipes, where a live display cannot redraw."""
    flows = ", ".join(f"{f['machine']} {f['status']} {f['step']}" for f in status["workflows"]) or "no workflow yet"
    hosts = " ".join(f"{n['slot'] or n['instance_id']}:{n['state']}:{n['swarm'] or '-'}" for n in status["nodes"])
    return f"{status['phase']}: {flows}; hosts: {hosts or 'none yet'}"


class ProgressView:
    """Live tables on a terminal; otherwise a line whenever something changed."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
        self._last = ""

    def __enter__(self) -> ProgressView:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, status: dict[str, Any]) -> None:
        if self._live is not None:
            self._live.update(_progress(status))
            return
        line = _summary(status)
        if line != self._last:
            self._console.print(line, markup=False)
            self._last = line


def _api_line(api_url: str) -> str:
    return f"HTTP API: {api_url}" if api_url else "HTTP API: none (the template has no HTTP API routes yet)"


def _safely[T](read: Callable[[], T], fallback: T) -> T:
    """A progress read that fails (a host going away mid-call) must not end the run."""
    try:
        return read()
    except Exception:
        return fallback


def _watch(session: Session, work: Callable[[], None], console: Console) -> None:
    """Runs `work` in a thread and shows the cloud's progress until it ends; re-raises its error."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run, name="swarmwarden-operation", daemon=True)
    worker.start()
    last: dict[str, Any] | None = None
    with ProgressView(console) as view:
        while worker.is_alive():
            last = _safely(session.status, last)
            if last is not None:
                view.update(last)
            worker.join(POLL_SECONDS)
    if failure:
        raise failure[0]


# ---------------------------------------------------------------------------------- talking to the owner
@dataclass(frozen=True)
class Control:
    pid: int
    port: int
    token: str

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
            raise CliError(answer.get("error", f"{method} {path} failed with HTTP {error.code}")) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise CliError(f"the local cloud (pid {self.pid}) did not answer {method} {path}: {error}") from None


def _state_dir(prefix: str) -> Path:
    return STATE_ROOT / prefix


def _serve_log(prefix: str) -> Path:
    return STATE_ROOT / f"{prefix}-serve.log"


def _alive(pid: int) -> bool:
    """Whether `pid` is still one of our cloud owners (not a process that reused the number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"localcloud" in cmdline or b"swarmwarden" in cmdline


def _control(prefix: str) -> Control | None:
    """The running owner of `prefix`, or None."""
    state_dir = _state_dir(prefix)
    try:
        pid = int((state_dir / PID_FILE).read_text())
        data = json.loads((state_dir / CONTROL_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    return Control(pid=pid, port=int(data["port"]), token=str(data["token"]))


def _require_control(prefix: str) -> Control:
    control = _control(prefix)
    if control is None:
        hint = " (leftovers exist: `swarmwarden local down` removes them)" if leftovers(prefix) else ""
        raise CliError(f"no local cloud is running on prefix {prefix}{hint}")
    return control


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _stop_process(pid: int) -> None:
    """SIGTERM (teardown and cleanup), then SIGKILL if it does not end in time; by pid only."""
    for sig, grace in ((signal.SIGTERM, DAEMON_EXIT_SECONDS), (signal.SIGKILL, 10.0)):
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_exit(pid, grace):
            return


# ---------------------------------------------------------------------------------- commands
def _config(args: argparse.Namespace) -> CloudConfig:
    from localcloud.cloud import CloudConfig
    from localcloud.lambdas import faults_from

    parameters = {"ManagerCount": str(args.managers), "WorkerCount": str(args.workers)}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--parameter {item!r}: expected KEY=VALUE")
        parameters[key] = value
    faults = ",".join(args.fault)
    try:
        faults_from(faults)
    except ValueError as error:
        raise CliError(str(error)) from None
    config = CloudConfig(prefix=args.prefix, parameters=parameters)
    # Without --fault, CloudConfig reads SWARMWARDEN_FAULTS from the environment.
    return dataclasses.replace(config, faults=faults) if args.fault else config


def _start_and_provision(session: Session, timeout: float, console: Console) -> None:
    console.print(f"starting the local cloud [bold]{session.cloud.config.prefix}[/] (moto, Lambda runtime, bridge)")
    session.start()
    console.print(f"state: {session.state_dir}; provisioning through the real workflow")
    started = time.monotonic()
    _watch(session, lambda: session.provision(timeout), console)
    console.print(f"[green]up[/] in {time.monotonic() - started:.1f} s")


def _report_up(console: Console, status: dict[str, Any]) -> None:
    console.print(nodes_table(status["nodes"]))
    console.print(_api_line(status["api_url"]), markup=False)


def _finish(session: Session, console: Console, *, tear_down: bool, timeout: float) -> bool:
    """Teardown through the workflow (if the cloud is up), then remove every trace. True if both worked."""
    ok = True
    if tear_down:
        console.print("tearing down through the real teardown workflow")
        try:
            _watch(session, lambda: _checked_down(session, timeout), console)
        except (CliError, KeyboardInterrupt) as error:
            console.print(f"[red]teardown failed:[/] {error or 'interrupted'}")
            ok = False
    with _uninterruptible():
        session.close()
        left = leftovers(session.cloud.config.prefix)
    if left:
        console.print(f"[red]left behind:[/] {left}")
        return False
    console.print("cleaned up: nothing left")
    return ok


def _checked_down(session: Session, timeout: float) -> None:
    code, answer = session.down(timeout)
    if code != 200:
        raise CliError(answer["error"])


def cmd_up(args: argparse.Namespace) -> int:
    return _up_detached(args) if args.detach else cmd_serve(args)


def cmd_serve(args: argparse.Namespace) -> int:
    """Owns the cloud in this process until Ctrl-C, SIGTERM or `local down`; `up --detach` runs it in the
    background, where its output goes to its log."""
    config = _config(args)
    console = _console()
    with _owning(config.prefix), _signals_interrupt():
        session = Session(config)
        code = 0
        try:
            _start_and_provision(session, args.timeout, console)
            _report_up(console, session.status())
            console.print(f"serving; Ctrl-C or `swarmwarden local down --prefix {config.prefix}` tears it down")
            while not session.stop.wait(POLL_SECONDS):
                pass
        except KeyboardInterrupt:
            console.print("interrupted")
            # Ctrl-C is how a served cloud ends; before it was up, it is an interrupted run.
            code = 0 if session.phase == "up" else 130
        except Exception as error:
            _finish(session, console, tear_down=False, timeout=args.timeout)
            raise CliError(str(error)) from error
        # After `local down`, the teardown has run already.
        ok = _finish(session, console, tear_down=session.phase == "up", timeout=args.timeout)
        return code if ok and session.phase != "failed" else 1


def _up_detached(args: argparse.Namespace) -> int:
    # Refuse at once what the background process would refuse: bad parameters, a prefix in use.
    Session(_config(args))
    with _owning(args.prefix):
        pass
    console = _console()
    log_path = _serve_log(args.prefix)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "localcloud.cli", "local", "serve",
        "--prefix", args.prefix, "--managers", str(args.managers), "--workers", str(args.workers),
        "--timeout", str(args.timeout),
        *(f"--fault={spec}" for spec in args.fault),
        *(f"--parameter={item}" for item in args.parameter),
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/"
        )
    console.print(f"started the local cloud {args.prefix} in the background (pid {process.pid}, log {log_path})")
    try:
        status = _await_ready(args.prefix, process, args.timeout + DAEMON_EXIT_SECONDS, console)
    except BaseException:
        _stop_process(process.pid)
        with contextlib.suppress(HostError):
            cleanup_all(args.prefix)
        raise
    _report_up(console, status)
    console.print(f"running in the background (pid {process.pid}); `swarmwarden local down --prefix {args.prefix}`")
    return 0


def _await_ready(prefix: str, process: subprocess.Popen[bytes], timeout: float, console: Console) -> dict[str, Any]:
    """Follows the background cloud until it is up; raises with its reason if it fails or stalls."""
    deadline = time.monotonic() + timeout
    with ProgressView(console) as view:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CliError(f"the local cloud failed: {_last_error(_serve_log(prefix))}")
            control = _control(prefix)
            status = _safely(functools.partial(_status_of, control), None) if control else None
            if status is not None:
                if status["phase"] == "up":
                    return dict(status)
                view.update(status)
            time.sleep(POLL_SECONDS)
    raise CliError(f"the local cloud was not up within {timeout:.0f} s (log: {_serve_log(prefix)})")


def _status_of(control: Control) -> dict[str, Any]:
    return dict(control.request("GET", "/status", timeout=10))


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    return errors[-1] if errors else (lines[-1] if lines else f"no output (see {log})")


def cmd_status(args: argparse.Namespace) -> int:
    status = _require_control(args.prefix).request("GET", "/status")
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
        return 0
    console = _console()
    console.print(f"local cloud {status['prefix']} (pid {status['pid']}): {status['phase']}")
    if status["error"]:
        console.print(f"error: {status['error']}", markup=False)
    _report_up(console, status)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    answer = _require_control(args.prefix).request("POST", "/kill", {"node": args.node, "mode": args.mode})
    _console().print(f"{args.mode}: {answer['instance_id']} ({args.node})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    console = _console()
    control = _control(args.prefix)
    problem = ""
    if control is None:
        console.print(f"no local cloud is running on prefix {args.prefix}")
    else:
        console.print(f"tearing down {args.prefix} (pid {control.pid}) through the real teardown workflow")
        try:
            answer = control.request("POST", "/down", {"timeout": args.timeout}, timeout=args.timeout + 30)
            console.print(f"teardown workflow done in {answer['seconds']} s")
        except CliError as error:
            problem = f"teardown failed: {error}"
        if not _wait_exit(control.pid, DAEMON_EXIT_SECONDS):
            console.print(f"pid {control.pid} did not exit; stopping it")
            _stop_process(control.pid)
    # Whatever the owner could not remove (it crashed, or teardown failed) goes now.
    with _owning(args.prefix):
        cleanup_all(args.prefix)
        left = leftovers(args.prefix)
    if left:
        raise CliError(f"left behind on prefix {args.prefix}: {left}")
    _serve_log(args.prefix).unlink(missing_ok=True)
    if problem:
        raise CliError(f"{problem} (everything was removed anyway)")
    console.print("nothing left")
    return 0


# ---------------------------------------------------------------------------------- the demo
@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


SERVICE = "web"
REPLICAS = 4
CONVERGE_SECONDS = 120.0


def _leader(session: Session) -> Host:
    for view in session.cloud.nodes():
        if view.swarm.endswith("/leader"):
            return session.cloud.hosts[view.instance_id]
    raise CliError("no swarm leader among the nodes")


def _check_formed(session: Session, managers: int, workers: int) -> str:
    nodes = session.cloud.nodes()
    ready = [n for n in nodes if n.state == "running" and "/ready" in n.swarm]
    roles = sorted(n.swarm.split("/")[0] for n in ready)
    if roles != ["manager"] * managers + ["worker"] * workers:
        raise CliError(f"expected {managers} managers and {workers} workers ready, got {[n.swarm for n in nodes]}")
    azs = {n.az for n in ready if n.role == "manager"}
    return f"{len(ready)} nodes ready, managers in {len(azs)} AZs"


def _deploy_service(session: Session) -> str:
    _leader(session).docker(
        "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
        "--replicas", str(REPLICAS), IMAGE, "sleep", "1000000",
    )  # fmt: skip
    return f"{SERVICE}: {REPLICAS} replicas of {IMAGE}"


def _converge(session: Session) -> str:
    """Every replica running, on as many distinct nodes as the swarm's spread allows."""
    import docker

    ready_nodes = sum(1 for n in session.cloud.nodes() if "/ready" in n.swarm)
    wanted_nodes = min(REPLICAS, ready_nodes)
    deadline = time.monotonic() + CONVERGE_SECONDS
    client = docker.DockerClient(base_url=_leader(session).docker_host, timeout=10)
    try:
        while True:
            tasks = client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
            running = [t for t in tasks if t["Status"]["State"] == "running"]
            spread = {t["NodeID"] for t in running}
            if len(running) == REPLICAS and len(spread) == wanted_nodes:
                return f"{len(running)}/{REPLICAS} running on {len(spread)} nodes"
            if time.monotonic() > deadline:
                raise CliError(
                    f"{SERVICE} did not converge within {CONVERGE_SECONDS:.0f} s:"
                    f" {len(running)}/{REPLICAS} running on {len(spread)} nodes"
                )
            time.sleep(POLL_SECONDS)
    finally:
        client.close()


SCALE_SECONDS = 300.0


def _scale_workers(session: Session, workers: int) -> str:
    """Scales the workers through the HTTP API, as a user would, then checks the swarm and the service."""
    api = apiclient.Api.local(session.cloud.api_url, session.cloud.config.region, timeout=60)
    accepted = api.request("PUT", "/cluster/capacity", {"managers": 3, "workers": workers})
    deadline = time.monotonic() + SCALE_SECONDS
    while (operation := api.request("GET", f"/operations/{accepted['operation_id']}"))["status"] not in (
        apiclient.FINAL_STATUSES
    ):
        if time.monotonic() > deadline:
            raise CliError(f"scale to {workers} workers still {operation['status']} after {SCALE_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)
    if operation["status"] != "succeeded":
        raise CliError(f"scale to {workers} workers failed: {operation['error']}")
    return f"{_check_formed(session, 3, workers)}; {_converge(session)}"


REPAIR_SECONDS = 300.0


def _repair_timeline(session: Session, victim: str) -> str:
    """Terminates `victim`'s instance (as a hardware failure would), waits for its repair and for the
    service, and tells when each milestone came after the kill: from the repair execution's history,
    and the service's convergence from the Docker SDK."""
    cloud = session.cloud
    name = f"repair-{victim}"
    killed = time.time()
    cloud.kill(victim)
    deadline = time.monotonic() + REPAIR_SECONDS
    while True:
        execution = next((e for e in cloud.executions() if e["name"] == name), None)
        if execution is not None and execution["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise CliError(f"{name} did not end within {REPAIR_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)
    if execution["status"] != "SUCCEEDED":
        raise CliError(f"{name} ended {execution['status']}")
    marks = timeline.milestones(cloud, execution["executionArn"])
    _converge(session)
    marks["services converged"] = time.time()
    return " -> ".join(f"{mark} +{at - killed:.1f}s" for mark, at in sorted(marks.items(), key=lambda m: m[1]))


def _kill_worker(session: Session) -> str:
    worker = next(v for v in session.cloud.nodes() if v.state == "running" and v.role == "worker")
    return _repair_timeline(session, worker.instance_id)


def _kill_leader(session: Session) -> str:
    leader = next(v for v in session.cloud.nodes() if v.swarm.endswith("/leader"))
    return _repair_timeline(session, leader.instance_id)


# The scale and repair steps (their issues) go here, each a named step run after convergence.
LATER_STEPS: tuple[tuple[str, Callable[[Session], str]], ...] = (
    ("scaled out to 4 workers", functools.partial(_scale_workers, workers=4)),
    ("scaled in to 2 workers", functools.partial(_scale_workers, workers=2)),
    ("worker killed, repaired", _kill_worker),
    ("leader killed, repaired", _kill_leader),
)


def _blame(steps: list[Step], detail: str) -> None:
    """Charge an error to the step that raised it, or to a step of its own if it came between steps."""
    if not steps or steps[-1].ok:
        steps.append(Step("between steps"))
    steps[-1].detail = detail


def _timeline(console: Console, steps: list[Step]) -> None:
    table = Table(title="timeline", title_justify="left")
    for column, justify in (("step", "left"), ("seconds", "right"), ("result", "left"), ("detail", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for step in steps:
        table.add_row(step.name, f"{step.seconds:.1f}", "[green]ok[/]" if step.ok else "[red]failed[/]", step.detail)
    console.print(table)


def cmd_demo(args: argparse.Namespace) -> int:
    managers, workers = 3, 2
    args.managers, args.workers, args.fault = managers, workers, []
    config = dataclasses.replace(_config(args), faults="")
    console = _console()
    steps: list[Step] = []

    def step(name: str, action: Callable[[], str]) -> None:
        current = Step(name)
        steps.append(current)
        started = time.monotonic()
        try:
            current.detail = action()
            current.ok = True
        finally:
            current.seconds = time.monotonic() - started

    with _owning(config.prefix), _signals_interrupt():
        session = Session(config)
        total = time.monotonic()
        try:

            def up() -> str:
                _start_and_provision(session, args.timeout, console)
                return _check_formed(session, managers, workers)

            step("up", up)
            _report_up(console, session.status())
            step("service deployed", lambda: _deploy_service(session))
            step("converged", lambda: _converge(session))
            for name, action in LATER_STEPS:
                step(name, functools.partial(action, session))
        except KeyboardInterrupt:
            _blame(steps, "interrupted")
        except Exception as error:
            _blame(steps, str(error))
        failed = next((s for s in steps if not s.ok), None)
        down = Step("down")
        steps.append(down)
        started = time.monotonic()
        down.ok = _finish(session, console, tear_down=session.phase == "up", timeout=args.timeout)
        down.seconds = time.monotonic() - started
        down.detail = "teardown workflow, nothing left" if down.ok else "see above"
        _timeline(console, steps)
        console.print(f"total {time.monotonic() - total:.1f} s")
    failed = failed or (None if down.ok else down)
    if failed is not None:
        raise CliError(f"demo failed at step '{failed.name}': {failed.detail}")
    console.print("[green]demo converged at every step[/]")
    return 0


# ---------------------------------------------------------------------------------- arguments
PARAMETER_HELP = "override a template parameter, e.g. VpcCidr=10.77.0.0/16 (repeatable)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarmwarden", description="swarmwarden developer tools")
    groups = parser.add_subparsers(dest="group", required=True)
    apiclient.add_commands(groups)
    local = groups.add_parser("local", help="the local cloud: the deployed system on this machine (root)")
    commands = local.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> Any:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument(
            "--prefix", type=_prefix, default=DEFAULT_PREFIX, help=f"names everything made (default {DEFAULT_PREFIX})"
        )
        return sub

    def cluster_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--managers", type=int, default=3, choices=(1, 3, 5, 7))
        sub.add_argument("--workers", type=_non_negative, default=2)
        sub.add_argument("--fault", action="append", default=[], metavar="SPEC",
                         help="make a handler fail: FUNCTION[.ACTION][:ERROR_TYPE]=COUNT (repeatable)")  # fmt: skip
        sub.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                         help=PARAMETER_HELP)  # fmt: skip
        sub.add_argument("--timeout", type=float, default=900, help="seconds the provision may take")

    up = command("up", cmd_up, "provision a cluster and serve it (until Ctrl-C, or in the background)")
    cluster_options(up)
    up.add_argument("--detach", action="store_true", help="return once up; the cloud keeps running in the background")
    cluster_options(command("serve", cmd_serve, "what `up --detach` runs in the background: `up`, without a terminal"))
    status = command("status", cmd_status, "the nodes and the API URL of the running cloud")
    status.add_argument("--json", action="store_true")
    kill = command("kill", cmd_kill, "fail a node: terminate or stop its instance")
    kill.add_argument("node", help="instance id, hostname, private IP or slot (e.g. worker-0)")
    kill.add_argument("--mode", choices=("terminate", "stop"), default="terminate")
    down = command("down", cmd_down, "tear down through the teardown workflow and remove every trace")
    down.add_argument("--timeout", type=float, default=900, help="seconds the teardown may take")
    demo = command(
        "demo",
        cmd_demo,
        "up 3+2, deploy a service, wait until it converges, scale the workers 2 -> 4 -> 2, kill a worker and "
        "the leader (a repair timeline each), down",
    )
    demo.add_argument("--timeout", type=float, default=900, help="seconds provision and teardown may each take")
    demo.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE", help=PARAMETER_HELP)
    return parser


def _prefix(text: str) -> str:
    # Checked before anything is named after it (the lock file, the state dir): HostNetwork's rule.
    if not re.fullmatch(r"[a-z][a-z0-9]{1,5}", text):
        raise argparse.ArgumentTypeError(f"{text!r} must be 2-6 lowercase letters or digits, starting with a letter")
    return text


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The API commands only sign HTTP requests; the local cloud itself needs root.
    if args.group == "local" and os.geteuid() != 0:
        print(f"{ERROR_PREFIX}the local cloud needs root (namespaces, bridges, dockerd): run as root", file=sys.stderr)
        return 1
    try:
        return int(args.handler(args))
    except CliError as error:
        print(f"{ERROR_PREFIX}{error}", file=sys.__stderr__)
        return 1
    except (HostError, ValueError) as error:
        # The bridge refuses a VPC range the machine already routes (another cloud, a VPN, ...).
        hint = " (e.g. --parameter VpcCidr=10.77.0.0/16)" if "overlaps route" in str(error) else ""
        print(f"{ERROR_PREFIX}{error}{hint}", file=sys.__stderr__)
        return 1
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX}interrupted", file=sys.__stderr__)
        return 130


if __name__ == "__main__":
    sys.exit(main())
