"""The swarm steps: what they send to the hosts, and that no join token is ever in it."""

import json
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swarmwarden.adapters.runcommand import RunCommand
from swarmwarden.commands import UnsafeCommandError, render, script_body
from swarmwarden.domain.model import ClusterSpec, Host, LaunchResult, Role, SwarmRef
from swarmwarden.errors import SwarmNotAsPlanned
from swarmwarden.steps import swarm

from tests.unit.fakes import FakeSsm, json_line

SPEC = ClusterSpec(cluster_name="demo", managers=3, workers=1, ami_id="ami-0123456789abcdef0")
HOSTS = LaunchResult(
    seed=Host(instance_id="i-m0", role=Role.MANAGER, slot="manager-0", az="us-east-1a", private_ip="10.42.0.10"),
    managers=(
        Host(instance_id="i-m1", role=Role.MANAGER, slot="manager-1", az="us-east-1b", private_ip="10.42.32.10"),
        Host(instance_id="i-m2", role=Role.MANAGER, slot="manager-2", az="us-east-1c", private_ip="10.42.64.10"),
    ),
    workers=(Host(instance_id="i-w0", role=Role.WORKER, slot="worker-0", az="us-east-1a", private_ip="10.42.0.11"),),
    instance_ids=("i-m0", "i-m1", "i-m2", "i-w0"),
    launched_instance_ids=("i-m0", "i-m1", "i-m2", "i-w0"),
)
ALL = [HOSTS.seed, *HOSTS.managers, *HOSTS.workers]


class FakeTokens:
    def delete(self) -> list[str]:
        return ["/swarmwarden/demo/tokens/manager", "/swarmwarden/demo/tokens/worker"]


def _node(host: Host, **changes) -> dict:
    return {
        "id": f"node-{host.instance_id}",
        "hostname": host.instance_id,
        "addr": host.private_ip,
        "role": host.role.value,
        "status": "ready",
        "availability": "active",
        "leader": host is HOSTS.seed,
        "reachability": "reachable" if host.role is Role.MANAGER else "",
    } | changes


def _hosts_answer(nodes: list[dict]):
    """Simulated hosts: what each of our scripts prints on success."""

    def answer(instance_id: str, script: str, text: str) -> tuple[str, int]:
        match script:
            case "init":
                return json_line(swarm_id="swarm-1", manager_addr="10.42.0.10", node_id="node-i-m0", created=True), 0
            case "join":
                role = "manager" if "SW_ROLE=manager" in text else "worker"
                return json_line(node_id=f"node-{instance_id}", role=role, joined=True), 0
            case "status":
                return json_line(swarm_id="swarm-1", nodes=nodes), 0
        raise AssertionError(f"unexpected script {script}")

    return answer


def _adapters(ssm: FakeSsm) -> swarm.Adapters:
    return swarm.Adapters(
        runner=RunCommand(ssm, poll_seconds=0, sleep=lambda _: None),
        tokens=FakeTokens(),  # type: ignore[arg-type]
        region="us-east-1",
        token_prefix="/swarmwarden/demo/tokens",
        command_timeout_seconds=120,
    )


def _provision(ssm: FakeSsm) -> None:
    adapters = _adapters(ssm)
    ref = swarm.init(swarm.Init(action="init", spec=SPEC, seed=HOSTS.seed), adapters)
    for host in [*HOSTS.managers, *HOSTS.workers]:
        swarm.join(
            swarm.Join(
                action="join",
                spec=SPEC,
                host=host,
                swarm=SwarmRef(swarm_id=ref.swarm_id, manager_addr=ref.manager_addr),
            ),
            adapters,
        )
    swarm.verify(swarm.Verify(action="verify", spec=SPEC, hosts=HOSTS), adapters)


def test_provision_commands_never_carry_a_token_and_name_the_token_parameters() -> None:
    ssm = FakeSsm(_hosts_answer([_node(h) for h in ALL]))
    _provision(ssm)
    texts = ["\n".join(r["Parameters"]["commands"]) for r in ssm.sent]
    assert [r["Comment"] for r in ssm.sent] == [
        "swarmwarden init",
        "swarmwarden join",
        "swarmwarden join",
        "swarmwarden join",
        "swarmwarden status",
    ]
    assert all("SWMTKN-" not in text for text in texts)
    # The hosts fetch the token themselves, from the parameter the command names.
    assert all("export SW_TOKEN_PREFIX=/swarmwarden/demo/tokens" in text for text in texts)
    join_texts = texts[1:4]
    assert "export SW_ROLE=manager" in join_texts[0]
    assert "export SW_ROLE=worker" in join_texts[2]
    assert all(
        "export SW_SWARM_ID=swarm-1" in text and "export SW_MANAGER_ADDR=10.42.0.10" in text for text in join_texts
    )
    init_text = texts[0]
    assert "export SW_ADDR_POOL=172.20.0.0/16" in init_text
    assert "export SW_ADVERTISE_ADDR=10.42.0.10" in init_text


def test_verify_names_the_host_that_did_not_join() -> None:
    nodes = [_node(h) for h in ALL if h.instance_id != "i-w0"]
    with pytest.raises(SwarmNotAsPlanned, match="i-w0"):
        _provision(FakeSsm(_hosts_answer(nodes)))


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=40))
def test_render_refuses_any_parameter_value_that_carries_a_token(suffix: str) -> None:
    with pytest.raises(UnsafeCommandError, match="SW_X carries a join token"):
        render("status", {"SW_X": "SWMTKN-1-" + suffix})


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60).filter(lambda v: "SWMTKN-" not in v and "\x00" not in v))
def test_render_quotes_values_so_the_shell_reads_them_back_exactly(value: str) -> None:
    exports = render("status", {"SW_VALUE": value}).removesuffix(script_body("status"))
    shown = subprocess.run(["/bin/sh", "-c", exports + 'printf %s "$SW_VALUE"'], capture_output=True, check=True)
    assert shown.stdout.decode("utf-8", "surrogateescape") == value


def test_the_swarm_handler_result_is_plain_json() -> None:
    ssm = FakeSsm(_hosts_answer([]))
    result = swarm.run(
        swarm.REQUEST.validate_python(
            {"action": "init", "spec": SPEC.model_dump(mode="json"), "seed": HOSTS.seed.model_dump()}
        ),
        _adapters(ssm),
    )
    assert json.loads(json.dumps(result.model_dump(mode="json")))["swarm_id"] == "swarm-1"


@pytest.mark.parametrize(
    ("request_body", "script", "printed", "expected", "exports"),
    [
        ({"action": "drain", "node": "ip-10-42-0-11"}, "drain", {"node": "ip-10-42-0-11", "availability": "drain"},
         {"node": "ip-10-42-0-11", "availability": "drain"}, ["export SW_NODE=ip-10-42-0-11"]),
        ({"action": "remove_node", "node": "abc", "force": True}, "remove-dead-node",
         {"removed": True, "node": "abc", "was_manager": True},
         {"node": "abc", "removed": True, "was_manager": True}, ["export SW_NODE=abc", "export SW_FORCE=1"]),
        ({"action": "remove_node", "node": "gone"}, "remove-dead-node", {"removed": False, "node": "gone"},
         {"node": "gone", "removed": False, "was_manager": False}, ["export SW_FORCE=0"]),
        ({"action": "rotate_tokens"}, "rotate-tokens", {"rotated": ["worker", "manager"]},
         {"rotated": ["worker", "manager"]}, ["export SW_TOKEN_PREFIX=/swarmwarden/demo/tokens"]),
        ({"action": "rebalance", "max_updates": 3}, "rebalance", {"updated": ["web"], "skipped": []},
         {"updated": ["web"], "skipped": []}, ["export SW_MAX_UPDATES=3"]),
    ],
)  # fmt: skip
def test_manager_actions_run_their_script_on_the_named_manager(
    request_body, script, printed, expected, exports
) -> None:
    seen: list[tuple[str, str, str]] = []

    def answer(instance_id: str, name: str, text: str) -> tuple[str, int]:
        seen.append((instance_id, name, text))
        return json_line(**printed), 0

    event = request_body | {"spec": SPEC.model_dump(mode="json"), "manager": HOSTS.managers[0].model_dump()}
    result = swarm.run(swarm.REQUEST.validate_python(event), _adapters(FakeSsm(answer)))
    assert result.model_dump(mode="json") == expected
    ((instance_id, name, text),) = seen
    assert (instance_id, name) == ("i-m1", script)
    assert all(line in text for line in exports)
