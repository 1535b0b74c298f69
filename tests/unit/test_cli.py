"""The CLI's pure parts: arguments, the demo's blame, the reason a background cloud gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.cli import Step, _blame, _last_error, _parser, _summary, main


def test_defaults_and_choices() -> None:
    args = _parser().parse_args(["local", "up"])
    assert (args.prefix, args.managers, args.workers, args.detach, args.fault) == ("swl", 3, 2, False, [])
    args = _parser().parse_args(["local", "kill", "worker-0", "--mode", "stop", "--prefix", "swcli"])
    assert (args.node, args.mode, args.prefix) == ("worker-0", "stop", "swcli")


@pytest.mark.parametrize(
    "argv",
    [
        ["local", "up", "--prefix", "../etc"],
        ["local", "up", "--prefix", "Swl"],
        ["local", "up", "--prefix", "toolongx"],
        ["local", "up", "--managers", "2"],
        ["local", "up", "--workers", "-1"],
        ["local", "kill", "worker-0", "--mode", "daemon"],
        ["local"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 2


def test_an_error_between_steps_gets_a_step_of_its_own() -> None:
    steps = [Step("up", ok=True)]
    _blame(steps, "interrupted")
    assert [(s.name, s.ok, s.detail) for s in steps] == [("up", True, ""), ("between steps", False, "interrupted")]
    steps = [Step("up", ok=True), Step("converged")]
    _blame(steps, "3/4 running")
    assert [(s.name, s.ok, s.detail) for s in steps][-1] == ("converged", False, "3/4 running")


def test_the_reason_is_the_last_error_line(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("starting\nswarmwarden: first\ncleaned up\nswarmwarden: Create of SwarmCluster failed: X\n")
    assert _last_error(log) == "Create of SwarmCluster failed: X"
    log.write_text("starting\nTraceback: something else\n")
    assert _last_error(log) == "Traceback: something else"
    assert "no output" in _last_error(tmp_path / "missing.log")


def test_summary_line() -> None:
    status = {
        "phase": "provisioning",
        "workflows": [{"machine": "swarmwarden-provision", "status": "RUNNING", "step": "JoinWorker"}],
        "nodes": [{"slot": "manager-0", "instance_id": "i-1", "state": "running", "swarm": "manager/ready/leader"}],
    }
    assert _summary(status) == (
        "provisioning: swarmwarden-provision RUNNING JoinWorker; hosts: manager-0:running:manager/ready/leader"
    )


def test_not_root_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["local", "status"]) == 1
    assert (
        capsys.readouterr().err
        == "swarmwarden: the local cloud needs root (namespaces, bridges, dockerd): run as root\n"
    )
