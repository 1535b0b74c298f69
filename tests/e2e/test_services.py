"""Services and scale requests through the HTTP API, signed as a user's client signs them, on a small cluster.

The tests run in file order on one cloud (1 manager, no workers): auth, status, a service's life, then a
retried scale to 1 worker.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import docker
import pytest

from localcloud import apiclient
from localcloud.cli import main
from localcloud.cloud import LocalCloud
from localcloud.image import IMAGE
from tests.e2e.conftest import start_cloud

pytestmark = pytest.mark.slow
PREFIX = "swv"
# A VPC range of its own, so that this cloud can run beside the others' (the default is 10.42.0.0/16).
PARAMETERS = {"ManagerCount": "1", "WorkerCount": "0", "MaxWorkers": "5", "VpcCidr": "10.81.0.0/16"}
SERVICE = "swv-web"
REPLICAS = 2
SETTLE_SECONDS = 90.0
SCALE_SECONDS = 300.0


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    yield from start_cloud(PREFIX, parameters=PARAMETERS)


@pytest.fixture(scope="module")
def api(cloud: LocalCloud) -> apiclient.Api:
    cloud.up(timeout=600)
    # The API waits on hosts for up to ~20 s per request (SSM Run Command), below API Gateway's 30 s.
    return apiclient.Api.local(cloud.api_url, cloud.config.region, timeout=60)


@pytest.fixture(scope="module")
def swarm(cloud: LocalCloud, api: apiclient.Api) -> Iterator[docker.DockerClient]:
    """The Docker SDK on the one manager: what the swarm itself says, not what the API says."""
    (manager,) = [cloud.hosts[v.instance_id] for v in cloud.nodes() if v.role == "manager"]
    client = docker.DockerClient(base_url=manager.docker_host, timeout=10)
    yield client
    client.close()


def _until[T](what: str, read: Callable[[], T], done: Callable[[T], bool], timeout: float = SETTLE_SECONDS) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s; last: {value!r}")
        time.sleep(1)


def test_an_unsigned_or_wrongly_signed_request_is_refused(api: apiclient.Api) -> None:
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{api.url}/cluster", timeout=10)  # noqa: S310 - the local API on loopback
    assert unsigned.value.code == 403
    assert json.loads(unsigned.value.read()) == {"message": "Forbidden"}
    wrong = apiclient.Api(api.url, api.region, api.access_key, "not-the-secret")
    with pytest.raises(apiclient.ApiError, match="signature") as raised:
        wrong.request("GET", "/cluster")
    assert (raised.value.status, raised.value.exit_code) == (403, 2)


def test_status_through_the_cli(api: apiclient.Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--api", api.url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["desired"], status["actual"]) == ({"managers": 1, "workers": 0}, {"managers": 1, "workers": 0})
    assert [(n["role"], n["swarm_state"], n["leader"]) for n in status["nodes"]] == [("manager", "ready", True)]
    assert status["operation"] is None


def test_a_service_created_through_the_api_runs_on_the_swarm_and_is_gone_once_deleted(
    api: apiclient.Api, swarm: docker.DockerClient
) -> None:
    spec = {"name": SERVICE, "image": IMAGE, "replicas": REPLICAS, "command": ["sleep", "1000000"]}
    created = api.request("POST", "/services", spec)
    assert (created["name"], created["image"], created["replicas"]) == (SERVICE, IMAGE, REPLICAS)

    def running() -> int:
        tasks = swarm.services.get(SERVICE).tasks(filters={"desired-state": "running"})
        return sum(1 for task in tasks if task["Status"]["State"] == "running")

    _until(f"{REPLICAS} running replicas of {SERVICE}", running, lambda n: n == REPLICAS)
    assert swarm.services.get(SERVICE).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == IMAGE
    shown = api.request("GET", f"/services/{SERVICE}")
    assert (shown["running"], sum(t["running"] for t in shown["tasks"])) == (REPLICAS, REPLICAS)
    assert SERVICE in [s["name"] for s in api.request("GET", "/services")["services"]]
    with pytest.raises(apiclient.ApiError) as duplicate:
        api.request("POST", "/services", spec)
    assert duplicate.value.status == 409

    api.request("DELETE", f"/services/{SERVICE}")
    _until(f"{SERVICE} gone from the swarm", lambda: swarm.services.list(filters={"name": SERVICE}), lambda s: not s)
    _until(
        f"the containers of {SERVICE} gone",
        lambda: swarm.containers.list(all=True, filters={"label": f"com.docker.swarm.service.name={SERVICE}"}),
        lambda c: not c,
    )
    with pytest.raises(apiclient.ApiError) as missing:
        api.request("GET", f"/services/{SERVICE}")
    assert missing.value.status == 404


def test_a_retried_scale_with_the_same_key_is_the_same_operation(
    cloud: LocalCloud, api: apiclient.Api, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "swv-retry-1"
    first = api.request("PUT", "/cluster/capacity", {"managers": 1, "workers": 1}, {"Idempotency-Key": key})
    assert first["operation_id"]
    # The retry, as a user retries: the CLI with the same key, following the operation until it ends.
    argv = ["scale", "--api", api.url, "--managers", "1", "--workers", "1", "--idempotency-key", key, "--json"]
    assert main([*argv, "--wait", "--timeout", str(SCALE_SECONDS), "--poll", "1"]) == 0
    final = json.loads(capsys.readouterr().out)
    assert (final["id"], final["status"]) == (first["operation_id"], "succeeded")
    # And once more after it ended: still that operation, and nothing new started.
    again = api.request("PUT", "/cluster/capacity", {"managers": 1, "workers": 1}, {"Idempotency-Key": key})
    assert again["operation_id"] == first["operation_id"]
    scales = [e for e in cloud.executions() if e["machine"].endswith("-scale")]
    assert len(scales) == 1, scales
    status = api.request("GET", "/cluster")
    assert (status["actual"], status["operation"]) == ({"managers": 1, "workers": 1}, None)
