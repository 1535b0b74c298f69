"""Projected AWS timings: the local cloud's measured orchestration plus published EC2 and SSM figures.

PROJECTIONS, not measurements: nothing here ran on AWS. Locally a host is ready (dockerd up, agents
registered) within a couple of seconds; on AWS the same wait is EC2's launch and boot and the SSM
agent's registration, which the workflows wait for with a `PollIntervalSeconds` loop. So each
projection takes a local figure from this run's provision and repair benchmarks, removes the local
host wait, and adds the AWS one:

    AWS = local workflow - local host wait + EC2 launch and boot + SSM registration + readiness poll lag

The floor on AWS pays the same launch and boot (a hand-run script must wait for the instances too),
but no SSM registration if it reaches the hosts another way (SSH), and no poll lag.

Reads docs/benchmarks/provision.json and repair.json (`READS`: `python -m bench` runs those first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Options, Report, commit, new_figure, now_iso, save_figure, seconds, write_json
from localcloud.template import Template

NAME = "projection"
READS = ("provision", "repair")
# Published figures (docs/benchmarks.md "Projected AWS timings" cites them).
EC2_API_S = 4.8  # RunInstances returns (FACTS.md: a measured cold AL2023 launch)
EC2_PENDING_TO_RUNNING_S = 17.8
EC2_BOOT_S = 3.2
SSM_REGISTRATION_S = {"best": 30.0, "typical": 120.0}  # "30 s to a few minutes" after boot
# The template's default: a ready host is noticed half of it late on average.
POLL_INTERVAL_S = float(Template.load(REPO / "template.yaml").parameters["PollIntervalSeconds"])


@dataclass(frozen=True)
class AwsHostWait:
    """From the launch call until the workflow sees the host ready, on AWS."""

    ssm_registration_s: float

    @property
    def boot_s(self) -> float:
        return EC2_API_S + EC2_PENDING_TO_RUNNING_S + EC2_BOOT_S

    @property
    def workflow_s(self) -> float:
        return self.boot_s + self.ssm_registration_s + POLL_INTERVAL_S / 2


def provision(summary: dict[str, Any], wait: AwsHostWait) -> dict[str, float]:
    """One size's provision on AWS, from the local medians (workflow phases and floor phases)."""
    local_wait = summary["workflow_phases_s"]["wait loop"]
    floor_start = summary["floor_phases_s"]["start hosts (parallel)"]
    workflow = summary["workflow_up_s"] - local_wait + wait.workflow_s
    floor = summary["floor_s"] - floor_start + wait.boot_s
    # A floor that reaches its hosts through SSM, as the workflow does, waits for the registration too.
    floor_ssm = floor + wait.ssm_registration_s
    return {
        "workflow_s": round(workflow, 1),
        "floor_ssh_s": round(floor, 1),
        "floor_ssm_s": round(floor_ssm, 1),
        "ratio_to_ssm_floor": round(workflow / floor_ssm, 2),
    }


def mttr(role_summary: dict[str, Any], wait: AwsHostWait) -> dict[str, float] | None:
    """One role's MTTR on AWS: the local median with the replacement's local boot swapped for AWS's.
    The removal runs alongside the boot and takes seconds, so the boot stays on the critical path."""
    marks = role_summary["workflow_milestones_s"]
    launched, ready = marks.get("replacement launched"), marks.get("replacement ready")
    if role_summary["workflow_mttr_s"] is None or launched is None or ready is None:
        return None
    workflow = role_summary["workflow_mttr_s"] - (ready - launched) + wait.workflow_s
    return {"workflow_s": round(workflow, 1), "local_host_wait_s": round(ready - launched, 2)}


def _load(options: Options, name: str) -> dict[str, Any]:
    path = options.out_dir / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: run `python -m bench --only {name}` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def plot(options: Options, projected: dict[str, Any]) -> Path:
    figure, axes = new_figure()
    labels, best, typical = [], [], []
    for n, cases in projected["provision"].items():
        labels.append(f"provision {n} hosts")
        best.append(cases["best"]["workflow_s"])
        typical.append(cases["typical"]["workflow_s"])
    for role, cases in projected["mttr"].items():
        if cases["best"] is not None and cases["typical"] is not None:
            labels.append(f"MTTR {role}")
            best.append(cases["best"]["workflow_s"])
            typical.append(cases["typical"]["workflow_s"])
    rows = range(len(labels))
    axes.barh(
        [r + 0.2 for r in rows], typical, height=0.4, label=f"SSM registers in {SSM_REGISTRATION_S['typical']:.0f} s"
    )
    axes.barh([r - 0.2 for r in rows], best, height=0.4, label=f"SSM registers in {SSM_REGISTRATION_S['best']:.0f} s")
    axes.set_yticks(list(rows), labels)
    axes.invert_yaxis()
    axes.set_xlabel("seconds (projected, not measured)")
    axes.set_title("Projected on AWS: local orchestration + published EC2/SSM figures")
    axes.grid(axis="x", alpha=0.3)
    axes.legend()
    return save_figure(options, NAME, figure)


def run(options: Options) -> Report:
    provision_data, repair_data = _load(options, "provision"), _load(options, "repair")
    waits = {case: AwsHostWait(ssm) for case, ssm in SSM_REGISTRATION_S.items()}
    projected: dict[str, Any] = {
        "provision": {
            n: {case: provision(summary, wait) for case, wait in waits.items()}
            for n, summary in provision_data["summary"].items()
            if summary["workflow_up_s"] is not None and summary["floor_s"] is not None
        },
        "mttr": {
            role: {case: mttr(repair_data["summary"][role], wait) for case, wait in waits.items()}
            for role in ("worker", "manager")
        },
    }
    data = {
        "benchmark": NAME,
        "date": now_iso(),
        **commit(),
        "label": "PROJECTIONS for AWS, not measurements",
        "from": {"provision": provision_data.get("date"), "repair": repair_data.get("date")},
        "assumptions": {
            "ec2_api_s": EC2_API_S,
            "ec2_pending_to_running_s": EC2_PENDING_TO_RUNNING_S,
            "ec2_boot_s": EC2_BOOT_S,
            "ssm_registration_s": SSM_REGISTRATION_S,
            "poll_interval_s": POLL_INTERVAL_S,
            "not_modelled": [
                "Run Command delivery latency on AWS (each host script adds it)",
                "creating the VPC, subnets and security group on a first provision",
                "EventBridge delivery latency of the state-change event (seconds)",
            ],
        },
        "projected": projected,
    }
    path = write_json(options, NAME, data)
    plot(options, projected)
    table = [["PROJECTED on AWS", "SSM in 30 s", "SSM in 120 s", "floor by SSH", "floor by SSM (30 s)", "ratio"]]
    for n, cases in projected["provision"].items():
        best, typical = cases["best"], cases["typical"]
        table.append(
            [f"provision {n} hosts", seconds(best["workflow_s"], 0), seconds(typical["workflow_s"], 0),
             seconds(best["floor_ssh_s"], 0), seconds(best["floor_ssm_s"], 0), f"{best['ratio_to_ssm_floor']:.2f}x"]
        )  # fmt: skip
    for role, cases in projected["mttr"].items():
        best, typical = (cases[case]["workflow_s"] if cases[case] else None for case in ("best", "typical"))
        table.append(
            [f"MTTR {'leader' if role == 'manager' else role}", seconds(best, 0), seconds(typical, 0), "", "", ""]
        )
    notes = [
        f"EC2 launch + boot {AwsHostWait(0).boot_s:.1f} s (API {EC2_API_S}, pending->running {EC2_PENDING_TO_RUNNING_S}, "
        f"boot {EC2_BOOT_S}); readiness poll lag {POLL_INTERVAL_S / 2:.1f} s (PollIntervalSeconds {POLL_INTERVAL_S:.0f}).",
        "Projections from published figures plus this run's local orchestration; nothing here ran on AWS.",
    ]
    return Report(NAME, "Projected AWS timings (not measurements)", table, notes, path)
