"""MTTR: a node of a 3-manager, 2-worker swarm dies; how long until the swarm is whole again.

Both arms run a service of 5 replicas (one per node once balanced) and, per kill, time from the kill
until the replacement is a Ready node, the dead node is gone from `docker node ls`, and the service
runs 5 replicas on 5 distinct nodes. Kills alternate worker, manager (the leader), and the arms
alternate (W F, F W, ...) so drift on a noisy machine hits both.

- **workflow** (prefix `swbr`): one local cloud, provisioned once; each kill terminates the instance
  (`LocalCloud.kill`), which sends the EC2 events AWS would; the repair trigger starts the repair
  workflow, which removes the dead node, launches and joins a replacement, rotates the tokens and
  rebalances. The repair's own milestones (execution history) split each MTTR.
- **floor** (prefix `swbq`): the same 5 hosts formed into a swarm with plain docker (as the provision
  benchmark's floor does); each kill is `Host.kill()`, then at once, with no detection and no
  workflow: demote (a manager) and `docker node rm --force` the dead node on a live manager, start a
  new host (dockerd + image import, as an instance boots), `docker swarm join` it with the role's
  token, and `docker service update --force` the service (the workflow's rebalance).

Run as root: `python -m bench --only repair [--quick]`.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    Options,
    Report,
    commit,
    machine,
    median,
    new_figure,
    now_iso,
    ratio,
    save_figure,
    seconds,
    wait_for,
    write_json,
)
from bench.provision import ADDR_POOL, ADDR_POOL_MASK, FLOOR_CIDRS, WORKFLOW_VPCS, _join, free_cidr
from localcloud.cloud import LOCAL_PARAMETERS, CloudConfig, LocalCloud
from localcloud.hosts import Host, HostNetwork, cleanup_all, leftovers, prefix_lock
from localcloud.image import IMAGE, build_rootfs, load_image
from localcloud.timeline import DETECTED, MILESTONES, milestones

NAME = "repair"
MANAGERS, WORKERS = 3, 2
SERVICE, REPLICAS = "bench", MANAGERS + WORKERS
WORKFLOW_PREFIX, FLOOR_PREFIX = "swbr", "swbq"
UP_TIMEOUT = 300.0
MTTR_TIMEOUT = 240.0
POLL = 0.25


def _node_view(host: Host) -> tuple[dict[str, str], set[str]] | None:
    """(hostname -> status of each node, nodes running a task of the service) as `host` sees the swarm.
    Hostnames, not addresses: a manager's Status.Addr can read 0.0.0.0."""
    nodes = host.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=False, timeout=10)
    tasks = host.docker(
        "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}", SERVICE,
        check=False, timeout=10,
    )  # fmt: skip
    if nodes.returncode != 0 or tasks.returncode != 0:
        return None
    rows = [line.split() for line in nodes.stdout.splitlines()]
    # A node that is still joining can list without a hostname yet: it is not whole.
    if any(len(row) != 2 for row in rows if row):
        return None
    states = {row[0]: row[1] for row in rows if row}
    running = {line.split()[0] for line in tasks.stdout.splitlines() if " Running " in f" {line} "}
    return states, running


def _seen(hosts: list[Host]) -> str:
    """The first answering host's view, for a timeout's message: which nodes in which state, where tasks run."""
    for host in hosts:
        view = _node_view(host)
        if view is not None:
            states, running = view
            return f"nodes {states}, tasks running on {sorted(running)}"
    return "no host answered"


def _until_whole(hosts: Callable[[], list[Host]], dead: str, new: Callable[[], str | None]) -> None:
    try:
        wait_for("whole again", lambda: _whole(hosts(), dead, new), MTTR_TIMEOUT, POLL)
    except TimeoutError as error:
        raise TimeoutError(f"{error}; {_seen(hosts())}") from None


def _whole(hosts: list[Host], dead: str, new: Callable[[], str | None]) -> bool:
    """The replacement is Ready, the dead node is gone, and the service runs on REPLICAS distinct nodes
    (`dead` and `new` are hostnames)."""
    name = new()
    if name is None:
        return False
    for host in hosts:
        view = _node_view(host)
        if view is None:
            continue
        states, running = view
        return (
            states.get(name) == "Ready"
            and dead not in states
            and len(states) == REPLICAS
            and all(s == "Ready" for s in states.values())
            and len(running) == REPLICAS
        )
    return False


# ---------------------------------------------------------------------------------------- workflow arm
class WorkflowArm:
    def __init__(self) -> None:
        vpc = free_cidr(WORKFLOW_VPCS)
        self.cloud = LocalCloud(
            CloudConfig(
                prefix=WORKFLOW_PREFIX,
                parameters={"ManagerCount": str(MANAGERS), "WorkerCount": str(WORKERS), "VpcCidr": str(vpc)},
            )
        )

    def start(self) -> None:
        self.cloud.start()
        self.cloud.up(timeout=UP_TIMEOUT)
        self._leader().docker(
            "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
            "--replicas", str(REPLICAS), "--update-parallelism", str(REPLICAS), IMAGE, "sleep", "1000000",
        )  # fmt: skip
        wait_for("the service to run", lambda: _whole(self._hosts(), "", lambda: self._hosts()[0].hostname), 120)

    def _hosts(self) -> list[Host]:
        return [h for iid, h in self.cloud.hosts.items() if self.cloud.agents.get(iid)]

    def _views(self) -> dict[str, Any]:
        return {v.instance_id: v for v in self.cloud.nodes() if v.state == "running"}

    def _leader(self) -> Host:
        leader = next(v for v in self.cloud.nodes() if v.swarm.endswith("/leader"))
        return self.cloud.hosts[leader.instance_id]

    def kill(self, role: str) -> dict[str, Any]:
        views = self._views()
        if role == "manager":
            victim = next(v for v in views.values() if v.swarm.endswith("/leader"))
        else:
            victim = next(v for v in views.values() if v.role == role)
        before = set(views)

        def new_host() -> str | None:
            added = [iid for iid in self._views() if iid not in before and iid in self.cloud.hosts]
            return self.cloud.hosts[added[0]].hostname if added else None

        dead = self.cloud.hosts[victim.instance_id].hostname
        killed = time.time()
        self.cloud.kill(victim.instance_id)
        _until_whole(self._hosts, dead, new_host)
        whole = time.time()
        sample: dict[str, Any] = {"role": role, "victim": victim.instance_id, "mttr_s": round(whole - killed, 4)}
        execution = next(e for e in self.cloud.executions() if e["name"].endswith(victim.instance_id))
        marks = milestones(self.cloud, execution["executionArn"])
        sample["milestones_s"] = {name: round(t - killed, 4) for name, t in sorted(marks.items(), key=lambda m: m[1])}
        wait_for(
            "the repair to finish",
            lambda: (
                self.cloud.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["status"]
                != "RUNNING"
            ),
            60,
        )
        return sample

    def close(self) -> None:
        self.cloud.close()


# ---------------------------------------------------------------------------------------- floor arm
class FloorArm:
    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.network = HostNetwork(FLOOR_PREFIX, free_cidr(FLOOR_CIDRS))
        self.addresses = itertools.count(10)
        self.managers: list[Host] = []
        self.workers: list[Host] = []

    def _new_host(self) -> Host:
        n = next(self.addresses)
        ip = self.network.cidr[n]
        host = Host(self.network, f"q{n}", ip, f"ip-{str(ip).replace('.', '-')}")
        host.start()
        load_image(host, self.rootfs)
        return host

    def start(self) -> None:
        cleanup_all(FLOOR_PREFIX)
        self.network.ensure()
        with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
            hosts = list(pool.map(lambda _: self._new_host(), range(REPLICAS)))
        self.managers, self.workers = hosts[:MANAGERS], hosts[MANAGERS:]
        seed = self.managers[0]
        ip = str(seed.ip)
        seed.docker(
            "swarm", "init", "--advertise-addr", ip, "--listen-addr", f"{ip}:2377",
            "--default-addr-pool", ADDR_POOL, "--default-addr-pool-mask-length", ADDR_POOL_MASK,
        )  # fmt: skip
        for host in self.managers[1:]:
            _join(host, self._token("manager"), seed)
        for host in self.workers:
            _join(host, self._token("worker"), seed)
        seed.docker(
            "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
            "--replicas", str(REPLICAS), "--update-parallelism", str(REPLICAS), IMAGE, "sleep", "1000000",
        )  # fmt: skip
        wait_for("the service to run", lambda: _whole(self.managers, "", lambda: seed.hostname), 120)

    def _token(self, role: str) -> str:
        return self.managers[0].docker("swarm", "join-token", "-q", role).stdout.strip()

    def _leader(self) -> Host:
        for host in self.managers:
            if (
                host.docker(
                    "node", "inspect", "self", "--format", "{{.ManagerStatus.Leader}}", check=False
                ).stdout.strip()
                == "true"
            ):
                return host
        raise RuntimeError("no leader among the floor's managers")

    def kill(self, role: str) -> dict[str, Any]:
        victim = self._leader() if role == "manager" else self.workers[0]
        group = self.managers if role == "manager" else self.workers
        dead_id = victim.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        killed = time.time()
        victim.kill()
        group.remove(victim)
        via = self.managers[0]
        if role == "manager":
            wait_for(
                "the demotion", lambda: via.docker("node", "demote", dead_id, check=False).returncode == 0, 60, POLL
            )
        wait_for(
            "the removal", lambda: via.docker("node", "rm", "--force", dead_id, check=False).returncode == 0, 60, POLL
        )
        host = self._new_host()
        _join(host, self._token(role), via)
        group.append(host)
        # As the workflow does: spread the service once the new node counts as Ready (else the update
        # can place every task elsewhere, and nothing spreads it later).
        wait_for(
            "the new node Ready", lambda: (_node_view(via) or ({}, set()))[0].get(host.hostname) == "Ready", 60, POLL
        )
        via.docker("service", "update", "--force", "--detach", SERVICE)
        _until_whole(lambda: self.managers, victim.hostname, lambda: host.hostname)
        victim.destroy()
        return {"role": role, "mttr_s": round(time.time() - killed, 4)}

    def close(self) -> None:
        cleanup_all(FLOOR_PREFIX)


# ---------------------------------------------------------------------------------------- the run
def summarise(workflow: list[dict[str, Any]], floor: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for role in ("worker", "manager"):
        w = [s["mttr_s"] for s in workflow if s.get("ok") and s["role"] == role]
        f = [s["mttr_s"] for s in floor if s.get("ok") and s["role"] == role]
        marks = [s["milestones_s"] for s in workflow if s.get("ok") and s["role"] == role]
        names = [DETECTED, *MILESTONES]
        summary[role] = {
            "workflow_mttr_s": median(w),
            "floor_s": median(f),
            "ratio_workflow_over_floor": ratio(median(w), median(f)),
            "workflow_milestones_s": {n: median([m[n] for m in marks if n in m]) for n in names},
            "samples": {"workflow": w, "floor": f},
        }
    summary["failures"] = {
        "workflow": sum(1 for s in workflow if not s.get("ok")),
        "floor": sum(1 for s in floor if not s.get("ok")),
    }
    return summary


def report(summary: dict[str, Any], kills: int, path: Path) -> Report:
    table = [["", "worker", "manager (leader)"]]
    w, m = summary["worker"], summary["manager"]
    table.append(
        [
            "workflow MTTR (kill -> replacement Ready, service spread)",
            seconds(w["workflow_mttr_s"]),
            seconds(m["workflow_mttr_s"]),
        ]
    )
    table.append(["floor (plain docker, no detection)", seconds(w["floor_s"]), seconds(m["floor_s"])])
    table.append(
        [
            "ratio workflow / floor",
            *(
                "-" if r["ratio_workflow_over_floor"] is None else f"{r['ratio_workflow_over_floor']:.2f}x"
                for r in (w, m)
            ),
        ]
    )
    table.append(["workflow milestones after the kill", "", ""])
    for name in w["workflow_milestones_s"]:
        table.append(
            [f"  {name}", seconds(w["workflow_milestones_s"][name]), seconds(m["workflow_milestones_s"][name])]
        )
    notes = [
        f"{kills} kill(s) per role and arm requested, alternating; medians"
        + (f"; FAILED: {summary['failures']}" if any(summary["failures"].values()) else ""),
        f"PollIntervalSeconds={LOCAL_PARAMETERS['PollIntervalSeconds']} (local cloud); the EC2 event reaches the trigger at once.",
    ]
    return Report(NAME, f"Repair MTTR, {MANAGERS} managers + {WORKERS} workers", table, notes, path)


def plot(options: Options, summary: dict[str, Any]) -> Path:
    """Each kill's MTTR per role and arm, and the workflow's median milestones."""
    figure, (left, right) = new_figure(11, 4, columns=2)
    roles = [("worker", "worker"), ("manager", "leader")]
    for offset, arm in enumerate(("workflow", "floor")):
        for x, (role, _label) in enumerate(roles):
            values = summary[role]["samples"][arm]
            left.scatter(
                [x + offset * 0.3] * len(values), values, alpha=0.6, color=f"C{offset}", label=arm if x == 0 else None
            )
    left.set_xticks([0.15, 1.15], [label for _role, label in roles])
    left.set_ylabel("seconds from the kill until whole again")
    left.set_ylim(bottom=0)
    left.grid(axis="y", alpha=0.3)
    left.legend()
    left.set_title("MTTR per kill")
    for x, (role, _label) in enumerate(roles):
        marks = sorted(((v, k) for k, v in summary[role]["workflow_milestones_s"].items() if v is not None))
        whole = summary[role]["workflow_mttr_s"]
        if whole is not None:
            right.hlines(x, 0, whole, color="lightgray", linewidth=6)
            right.plot([whole], [x], marker="o", color="black")
        for i, (value, name) in enumerate(marks):
            right.plot([value], [x], marker="|", markersize=18, color=f"C{i}")
            right.annotate(
                name, (value, x), textcoords="offset points", xytext=(2, 10 + 9 * (i % 2)), fontsize=7, rotation=25
            )
    right.set_yticks([0, 1], [label for _role, label in roles])
    right.set_xlabel("seconds after the kill (workflow medians; dot: whole again)")
    right.set_ylim(-0.5, 1.8)
    right.set_title("Where a repair's time goes")
    return save_figure(options, NAME, figure)


def _measure(arm: WorkflowArm | FloorArm, role: str, into: list[dict[str, Any]], label: str, rep: int) -> None:
    began = time.monotonic()
    try:
        sample = {"rep": rep, "ok": True, **arm.kill(role)}
    except Exception as error:
        traceback.print_exc()
        sample = {"rep": rep, "role": role, "ok": False, "error": f"{type(error).__name__}: {error}"}
    into.append(sample)
    status = f"{sample['mttr_s']:.2f} s" if sample["ok"] else f"failed: {sample['error']}"
    print(f"[repair] {label} {role} kill {rep + 1}: {status} ({time.monotonic() - began:.0f} s)", flush=True)


def run(options: Options) -> Report:
    kills = options.repetitions(5)
    workflow: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    info = {"date": now_iso(), **commit(), "machine": machine()}
    with prefix_lock(WORKFLOW_PREFIX), prefix_lock(FLOOR_PREFIX), tempfile.TemporaryDirectory() as tmp:
        rootfs = build_rootfs(Path(tmp) / "busybox-rootfs.tar")
        workflow_arm, floor_arm = WorkflowArm(), FloorArm(rootfs)
        try:
            workflow_arm.start()
            floor_arm.start()
            for rep in range(kills):
                for role in ("worker", "manager"):
                    arms: list[tuple[str, WorkflowArm | FloorArm, list[dict[str, Any]]]] = [
                        ("workflow", workflow_arm, workflow),
                        ("floor", floor_arm, floor),
                    ]
                    for label, arm, into in arms if rep % 2 == 0 else reversed(arms):
                        _measure(arm, role, into, label, rep)
        finally:
            workflow_arm.close()
            floor_arm.close()
        left = leftovers(WORKFLOW_PREFIX) + leftovers(FLOOR_PREFIX)
    summary = summarise(workflow, floor)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "managers": MANAGERS,
            "workers": WORKERS,
            "service_replicas": REPLICAS,
            "kills_per_role": kills,
            "manager_victim": "the leader",
            "order": "per repetition: worker then manager; arms alternate W F, F W, ...",
            "local_parameters": LOCAL_PARAMETERS,
            "whole_again": "the replacement is a Ready node, the dead node is gone from docker node ls, every node "
            f"is Ready, and {SERVICE} runs {REPLICAS} tasks on {REPLICAS} distinct nodes",
            "floor": "plain docker on the same kind of hosts: demote + node rm --force the dead node at once, start a "
            "host, docker swarm join, docker service update --force",
        },
        "summary": summary,
        "leftovers": left,
        "samples": {"workflow": workflow, "floor": floor},
    }
    path = write_json(options, NAME, data)
    plot(options, summary)
    result = report(summary, kills, path)
    if not any(s.get("ok") for s in workflow) or not any(s.get("ok") for s in floor):
        print(result.render())
        raise RuntimeError(f"no successful kill in an arm: {summary['failures']}")
    return result
