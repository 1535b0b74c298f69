"""Run Command: send, poll through InvocationDoesNotExist, and turn results into values or errors."""

import itertools

import boto3
import pytest
from swarmwarden.adapters.runcommand import RunCommand, SecretInOutput
from swarmwarden.errors import ScriptFailed, TransientError

from tests.unit.fakes import FakeSsm, json_line


def _runner(ssm, **kwargs) -> RunCommand:
    return RunCommand(ssm, poll_seconds=0, sleep=lambda _: None, **kwargs)


def test_result_is_the_last_json_line_after_the_invocation_appears() -> None:
    ssm = FakeSsm(lambda *_: (json_line(node_id="n1", joined=True), 0), pending_polls=2)
    assert _runner(ssm).run("i-1", "status", {"SW_CLUSTER": "demo"}, 60) == {"node_id": "n1", "joined": True}
    (request,) = ssm.sent
    assert request["DocumentName"] == "AWS-RunShellScript"
    assert request["InstanceIds"] == ["i-1"]
    assert request["Parameters"]["executionTimeout"] == ["60"]
    assert request["Parameters"]["commands"][0].startswith("export SW_CLUSTER=demo\n")


def test_a_failed_script_raises_its_own_error_message() -> None:
    ssm = FakeSsm(lambda *_: (json_line(error="this node is part of another swarm"), 1))
    with pytest.raises(ScriptFailed, match="join on i-1 failed: this node is part of another swarm"):
        _runner(ssm).run("i-1", "join", {}, 60)


def test_output_that_is_not_json_is_a_script_failure() -> None:
    ssm = FakeSsm(lambda *_: ("docker: command not found", 127))
    with pytest.raises(ScriptFailed, match="status on i-1"):
        _runner(ssm).run("i-1", "status", {}, 60)


def test_a_token_in_the_output_is_discarded_not_returned() -> None:
    leaked = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25
    ssm = FakeSsm(lambda *_: (json_line(token=leaked), 0))
    with pytest.raises(SecretInOutput) as caught:
        _runner(ssm).run("i-1", "init", {}, 60)
    assert "SWMTKN-" not in str(caught.value)


def test_a_command_still_running_at_the_deadline_is_transient() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10
        return now[0]

    ssm = FakeSsm(lambda *_: (json_line(ok=True), 0), pending_polls=10_000)
    with pytest.raises(TransientError, match="status on i-1 still InProgress"):
        RunCommand(ssm, poll_seconds=0, clock=clock, sleep=lambda _: None).run("i-1", "status", {}, 30)


def test_results_are_polled_early_then_less_often_up_to_the_cap() -> None:
    pauses: list[float] = []
    ssm = FakeSsm(lambda *_: (json_line(ok=True), 0), pending_polls=12)
    RunCommand(ssm, poll_seconds=2.0, sleep=pauses.append).run("i-1", "status", {}, 60)
    assert len(pauses) == 13, "one InvocationDoesNotExist, then 12 InProgress answers"
    assert pauses[0] == 0.25, "a short script is noticed within a quarter second"
    # Each pause half as long again as the one before (doubling noticed a 1-2 s script up to 2 s late)...
    assert all(b == pytest.approx(min(a * 1.5, 2.0)) for a, b in itertools.pairwise(pauses))
    # ...growing, until the cap bounds the calls a long script costs.
    assert pauses == sorted(pauses)
    assert pauses[-1] == 2.0


def test_against_moto_the_command_is_recorded_with_our_text_and_no_token(mocked_aws) -> None:
    ec2 = boto3.client("ec2")
    image = boto3.client("ssm").get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    )
    instance = ec2.run_instances(ImageId=image["Parameter"]["Value"], MinCount=1, MaxCount=1)["Instances"][0]
    ssm = boto3.client("ssm")
    # moto runs nothing and reports empty output: exactly the "printed nothing" failure.
    with pytest.raises(ScriptFailed, match="printed nothing"):
        _runner(ssm).run(instance["InstanceId"], "status", {"SW_CLUSTER": "demo"}, 60)
    (command,) = ssm.list_commands()["Commands"]
    text = "\n".join(command["Parameters"]["commands"])
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert "export SW_CLUSTER=demo" in text
    assert "SWMTKN-" not in text
