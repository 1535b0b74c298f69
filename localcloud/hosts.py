"""Real Docker hosts on one machine: a network namespace, a hostname and a dockerd each.

A `HostNetwork` is a Linux bridge in the root namespace with a private CIDR. Each `Host`
gets a network namespace joined to that bridge by a veth pair, its own UTS namespace
(hostname) and its own dockerd (data-root, exec-root, socket, pidfile; dockerd starts
its own containerd under the exec-root). Hosts have no default route and no NAT: they
reach each other and the bridge's own address, nothing else.

Every process of a host (dockerd, containerd, shims, containers, commands run on it)
lives in one cgroup subtree, `swarmwarden-<prefix>/<host>`, so a hard kill finds them
all, and `cleanup_all` can find them again after the Python process that made them died.
Everything else is named after the prefix too: the bridge `<prefix>br`, the namespaces
and veths `<prefix>-<host>`, the state under `<state_root>/<prefix>`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path("/var/lib/swarmwarden-local")
NETNS_DIR = Path("/run/netns")
# containerd 1.6 puts every shim's socket here, whatever its state dir: killed shims leave them behind.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,5}$")
_HOST_NAME = re.compile(r"^[a-z0-9]{1,7}$")
_HOSTNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostError(RuntimeError):
    """A host or its network could not be made, started or cleaned up."""


def _run(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"`{shlex.join(args)}` did not finish within {timeout}s") from exc
    if check and proc.returncode != 0:
        raise HostError(f"`{shlex.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _links() -> set[str]:
    data: list[dict[str, Any]] = json.loads(_run("ip", "-j", "link", "show").stdout or "[]")
    return {str(link["ifname"]) for link in data}


def _namespaces() -> set[str]:
    return set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == path or path in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unmount_all(path: Path, keep: Path | None = None) -> None:
    for point in _mounts_under(path):
        if point != keep:
            _run("umount", "--lazy", str(point), check=False)
    left = [p for p in _mounts_under(path) if p != keep]
    if left:
        raise HostError(f"could not unmount {[str(p) for p in left]}")


def _shim_sockets(host_dir: Path) -> list[Path]:
    """The shim sockets of this host's containers that still exist (named sha256(address/ns/id))."""
    address = host_dir / "exec" / "containerd" / "containerd.sock"
    ids = {p.name for p in (host_dir / "data" / "containers").glob("*")}
    ids |= {p.name for p in (host_dir / "exec" / "containerd" / "daemon").glob("io.containerd.runtime.*/moby/*")}
    names = (hashlib.sha256(f"{address}/moby/{cid}".encode()).hexdigest() for cid in ids)
    return [SHIM_SOCKET_DIR / name for name in names if (SHIM_SOCKET_DIR / name).exists()]


def _remove_shim_sockets(host_dir: Path) -> None:
    for path in _shim_sockets(host_dir):
        path.unlink(missing_ok=True)


def _cgroup_mounts() -> list[tuple[Path, str, str]]:
    """(mount point, fstype, options) of every cgroup hierarchy."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, point, fstype, options, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((Path(point), fstype, options))
    return mounts


def _tracking_root() -> Path:
    """The hierarchy we track processes in: v1 `pids` if mounted, else the unified one."""
    mounts = _cgroup_mounts()
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "pids" in options.split(","):
            return point
    for point, fstype, _options in mounts:
        if fstype == "cgroup2":
            return point
    raise HostError("no cgroup hierarchy to track host processes in")


def _cgroup_pids(tree: Path) -> set[int]:
    pids: set[int] = set()
    if tree.is_dir():
        for procs in tree.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    return pids


def _pids_mentioning(directory: Path) -> set[int]:
    """Processes whose command line names a path inside `directory`: leftovers outside a cgroup."""
    # The trailing slash keeps hosts/h1 from matching hosts/h10, and prefix sw from swt.
    needle = f"{directory}/"
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline:
            pids.add(int(entry.name))
    return pids


def _kill_pids(finder: Callable[[], set[int]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while pids := finder():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise HostError(f"{what}: processes {sorted(pids)} survived SIGKILL for {timeout}s")
        time.sleep(0.05)


def _remove_cgroups(relative: str) -> None:
    """Remove `relative` and everything below it in every hierarchy (runc creates it in all)."""
    for point, _fstype, _options in _cgroup_mounts():
        top = point / relative
        if not top.is_dir():
            continue
        for directory in sorted(
            (p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                directory.rmdir()
            except OSError as exc:
                raise HostError(f"cannot remove cgroup {directory}: {exc}") from exc


def _forward_rules(comment: str) -> list[str]:
    rules = _run("iptables", "-w", "5", "-S", "FORWARD").stdout.splitlines()
    return [rule for rule in rules if f"--comment {comment}" in rule or f'--comment "{comment}"' in rule]


def bridge_name(prefix: str) -> str:
    return f"{prefix}br"


def _cgroup_name(prefix: str) -> str:
    return f"swarmwarden-{prefix}"


def _wait_links_gone(prefix: str, timeout: float = 10) -> None:
    """Deleting a namespace frees its veth asynchronously; wait so a cleanup is really done."""
    deadline = time.monotonic() + timeout
    while left := {n for n in _links() if n.startswith(f"{prefix}-") or n == bridge_name(prefix)}:
        if time.monotonic() > deadline:
            raise HostError(f"links {sorted(left)} still present {timeout}s after deletion")
        time.sleep(0.05)


@dataclass(frozen=True)
class HostNetwork:
    """The bridge all hosts of one prefix sit on. Its first address is the hosts' way to the test process."""

    prefix: str
    cidr: ipaddress.IPv4Network
    state_root: Path = STATE_ROOT

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"prefix {self.prefix!r} must be 2-6 lowercase letters or digits")
        if not self.cidr.is_private or self.cidr.prefixlen > 28:
            raise ValueError(f"cidr {self.cidr} must be a private network of at least /28")

    @property
    def bridge(self) -> str:
        return bridge_name(self.prefix)

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        return next(self.cidr.hosts())

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.prefix

    @property
    def cgroup(self) -> str:
        return _cgroup_name(self.prefix)

    @property
    def rule_comment(self) -> str:
        return _cgroup_name(self.prefix)

    def ensure(self) -> None:
        """Create the bridge (idempotent). Refuses a CIDR that something else already routes."""
        if self.bridge not in _links():
            self._refuse_overlapping_routes()
            _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "replace", f"{self.gateway_ip}/{self.cidr.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # With br_netfilter, bridged frames traverse the root FORWARD chain; a DROP policy
        # (set by a root dockerd, for one) would cut the hosts off from each other.
        policy = _run("iptables", "-w", "5", "-S", "FORWARD").stdout.splitlines()[0]
        if policy.strip() == "-P FORWARD DROP" and not _forward_rules(self.rule_comment):
            _run(
                "iptables", "-w", "5", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge,
                "-m", "comment", "--comment", self.rule_comment, "-j", "ACCEPT",
            )  # fmt: skip

    def _refuse_overlapping_routes(self) -> None:
        routes: list[dict[str, Any]] = json.loads(_run("ip", "-j", "route", "show").stdout or "[]")
        for route in routes:
            dst = route.get("dst", "")
            if dst == "default":
                continue
            if ipaddress.ip_network(dst, strict=False).overlaps(self.cidr):
                raise HostError(f"{self.cidr} overlaps route {dst} on {route.get('dev')}: pick another CIDR")

    def destroy(self) -> None:
        """Remove the bridge and our FORWARD rule. Hosts must be destroyed first (or use cleanup_all)."""
        _remove_forward_rules(self.prefix)
        if self.bridge in _links():
            _run("ip", "link", "del", self.bridge)


def _remove_forward_rules(prefix: str) -> None:
    for rule in _forward_rules(_cgroup_name(prefix)):
        _run("iptables", "-w", "5", *shlex.split(rule.replace("-A ", "-D ", 1)))


@dataclass
class Host:
    """One emulated instance. `name` is short (it names interfaces); `hostname` is what Docker reports."""

    network: HostNetwork
    name: str
    ip: ipaddress.IPv4Address
    hostname: str
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not _HOST_NAME.match(self.name):
            raise ValueError(f"host name {self.name!r} must be 1-7 lowercase letters or digits")
        if not _HOSTNAME.match(self.hostname):
            raise ValueError(f"hostname {self.hostname!r} is not a valid hostname")
        if self.ip not in self.network.cidr or self.ip in (self.network.gateway_ip, self.network.cidr[-1]):
            raise ValueError(f"{self.ip} is not a free host address of {self.network.cidr}")

    @property
    def netns(self) -> str:
        return f"{self.network.prefix}-{self.name}"

    @property
    def veth(self) -> str:
        return f"{self.network.prefix}-{self.name}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def dir(self) -> Path:
        return self.network.state_dir / "hosts" / self.name

    @property
    def uts_path(self) -> Path:
        return self.dir / "uts"

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def cgroup(self) -> str:
        return f"{self.network.cgroup}/{self.name}"

    @property
    def process_cgroup(self) -> Path:
        """Where dockerd and commands run; containers go to the sibling `containers` (leaf rule of v2)."""
        return _tracking_root() / self.cgroup / "host"

    def nsenter(self) -> list[str]:
        """The prefix that runs a command inside this host's network and UTS namespaces."""
        return ["nsenter", f"--net={self.netns_path}", f"--uts={self.uts_path}"]

    def is_running(self) -> bool:
        return self._ping()

    def start(self, timeout: float = 60) -> None:
        """Create what is missing and start dockerd; also restarts a killed or stopped host."""
        if self._ping():
            return
        self.network.ensure()
        self._forget_runtime_state()
        for sub in ("data", "exec", "home"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._ensure_netns()
        self._ensure_uts()
        self.process_cgroup.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        dockerd = [
            *self.nsenter(),
            "dockerd",
            f"--data-root={self.dir / 'data'}",
            f"--exec-root={self.dir / 'exec'}",
            f"--pidfile={self.dir / 'docker.pid'}",
            f"--host={self.docker_host}",
            f"--cgroup-parent=/{self.cgroup}/containers",
        ]
        with self.log_path.open("ab") as log:
            # sh puts itself into the host's cgroup, then execs: nsenter execs dockerd, same pid.
            self._proc = subprocess.Popen(
                ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.process_cgroup / "cgroup.procs"), *dockerd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={"PATH": _SYSTEM_PATH},
            )
        self._wait_ready(timeout)

    def _forget_runtime_state(self) -> None:
        """What a reboot would clear after a kill: mounts and the exec-root (stale pidfiles, sockets)."""
        _unmount_all(self.dir, keep=self.uts_path)
        _remove_shim_sockets(self.dir)
        shutil.rmtree(self.dir / "exec", ignore_errors=True)

    def _ensure_netns(self) -> None:
        if self.netns not in _namespaces():
            _run("ip", "netns", "add", self.netns)
        if self.veth not in _links():
            _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
            _run("ip", "link", "set", self.veth, "master", self.network.bridge)
            prefixlen = self.network.cidr.prefixlen
            _run("ip", "-n", self.netns, "addr", "replace", f"{self.ip}/{prefixlen}", "dev", "eth0")
            _run("ip", "-n", self.netns, "link", "set", "eth0", "up")
            _run("ip", "-n", self.netns, "link", "set", "lo", "up")
        _run("ip", "link", "set", self.veth, "up")

    def _ensure_uts(self) -> None:
        if self.uts_path not in _mounts_under(self.uts_path):
            self.uts_path.touch()
            _run("unshare", f"--uts={self.uts_path}", "hostname", self.hostname)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2)
                conn.connect(str(self.socket))
                conn.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return conn.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ping():
            if self._proc is not None and self._proc.poll() is not None:
                raise HostError(f"dockerd of {self.name} exited ({self._proc.returncode}):\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise HostError(f"dockerd of {self.name} not ready after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill_daemon(self) -> None:
        """dockerd dies with everything it started (containers, running commands); the host stays up."""
        tree = _tracking_root() / self.cgroup
        _kill_pids(lambda: _cgroup_pids(tree), f"host {self.name}")
        self._reap()

    def kill(self) -> None:
        """A hard failure, like a terminated instance: the daemon dies and the host goes silent."""
        self.kill_daemon()
        if self.veth in _links():
            _run("ip", "link", "set", self.veth, "down")

    def stop(self, timeout: float = 30) -> None:
        """A clean shutdown: SIGTERM dockerd and let it stop its containers, then go silent like kill."""
        pid = self._dockerd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.kill()

    def _dockerd_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int((self.dir / "docker.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid in _pids_mentioning(self.dir) else None

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return Path(f"/proc/{pid}").exists()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait(timeout=10)
            self._proc = None

    def destroy(self) -> None:
        """Remove every trace of the host: processes, mounts, namespaces, veth, cgroups, state."""
        if self.dir.exists() or self.netns in _namespaces():
            self.kill()
        _kill_pids(lambda: _pids_mentioning(self.dir), f"host {self.name}")
        _unmount_all(self.dir)
        _remove_shim_sockets(self.dir)
        if self.veth in _links():
            _run("ip", "link", "del", self.veth)
        if self.netns in _namespaces():
            _run("ip", "netns", "del", self.netns)
        _remove_cgroups(self.cgroup)
        shutil.rmtree(self.dir, ignore_errors=True)

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this host's daemon."""
        try:
            proc = subprocess.run(
                ["docker", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={"PATH": _SYSTEM_PATH, "DOCKER_HOST": self.docker_host, "HOME": str(self.dir / "home")},
            )
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"docker {shlex.join(args)} on {self.name} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise HostError(f"docker {shlex.join(args)} on {self.name} failed: {proc.stderr.strip()}")
        return proc


@contextlib.contextmanager
def prefix_lock(prefix: str, state_root: Path = STATE_ROOT, timeout: float = 900) -> Iterator[None]:
    """Hold the prefix exclusively, so two runs on one machine queue instead of cleaning each other up."""
    state_root.mkdir(parents=True, exist_ok=True)
    with (state_root / f"{prefix}.lock").open("w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HostError(f"prefix {prefix} still in use by another process after {timeout}s") from None
                time.sleep(1)
        yield


def leftovers(prefix: str, state_root: Path = STATE_ROOT) -> list[str]:
    """Everything of this prefix that still exists; empty after a complete cleanup."""
    state_dir, cgroup = state_root / prefix, _cgroup_name(prefix)
    found = [f"netns {n}" for n in sorted(_namespaces()) if n.startswith(f"{prefix}-")]
    found += [f"link {n}" for n in sorted(_links()) if n.startswith(f"{prefix}-") or n == bridge_name(prefix)]
    pids = _cgroup_pids(_tracking_root() / cgroup) | _pids_mentioning(state_dir)
    found += [f"process {pid}" for pid in sorted(pids)]
    found += [f"mount {p}" for p in _mounts_under(state_dir)]
    found += [f"cgroup {p / cgroup}" for p, _fstype, _options in _cgroup_mounts() if (p / cgroup).exists()]
    found += [f"iptables {rule}" for rule in _forward_rules(cgroup)]
    found += [f"socket {p}" for host_dir in (state_dir / "hosts").glob("*") for p in _shim_sockets(host_dir)]
    if state_dir.exists():
        found.append(f"state {state_dir}")
    return found


def cleanup_all(prefix: str, state_root: Path = STATE_ROOT) -> None:
    """Remove every host and the network of this prefix, also what a crashed process left behind."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} must be 2-6 lowercase letters or digits")
    state_dir, cgroup = state_root / prefix, _cgroup_name(prefix)
    tree = _tracking_root() / cgroup
    _kill_pids(lambda: _cgroup_pids(tree) | _pids_mentioning(state_dir), f"prefix {prefix}")
    _unmount_all(state_dir)
    for host_dir in (state_dir / "hosts").glob("*"):
        _remove_shim_sockets(host_dir)
    for name in _links():
        if name.startswith(f"{prefix}-") or name == bridge_name(prefix):
            _run("ip", "link", "del", name, check=False)
    for name in _namespaces():
        if name.startswith(f"{prefix}-"):
            _run("ip", "netns", "del", name)
    _remove_forward_rules(prefix)
    _wait_links_gone(prefix)
    _remove_cgroups(cgroup)
    shutil.rmtree(state_dir, ignore_errors=True)
    left = leftovers(prefix, state_root)
    if left:
        raise HostError(f"cleanup of {prefix} left: {left}")
