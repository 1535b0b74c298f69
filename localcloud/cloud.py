"""The local cloud: the deployed system on one machine.

moto serves the AWS APIs (one server, on the hosts' bridge, so in-process clients and the hosts'
AWS CLI see the same state), moto's ASL engine runs the template's state machines, the real
handlers answer Lambda invokes, and every EC2 instance is a real host with its own dockerd.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.core.config import default_user_config
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from localcloud.emulation import Emulation, ecs_cluster_from_user_data, set_state
from localcloud.events import EventBus, Scheduler, ec2_state_change_event
from localcloud.hosts import STATE_ROOT, Host, HostError, HostNetwork, cleanup_all
from localcloud.httpapi import HttpApiServer
from localcloud.image import build_rootfs, load_image
from localcloud.lambdas import FAULTS_VARIABLE, LambdaRuntime, faults_from
from localcloud.metering import LOCAL_CLOUD_APP_ID
from localcloud.runscript import AwsEndpoint, ScriptResult, run_script
from localcloud.template import ACCOUNT, Rule, Template

REPO = Path(__file__).resolve().parents[1]
# Short waits for the local cloud; the template's defaults stay realistic for AWS.
# No registry is reachable from the hosts: services use the locally imported image as it is.
LOCAL_PARAMETERS = {"PollIntervalSeconds": "1", "PollMaxAttempts": "180", "ResolveImage": "never"}
AMI_PARAMETER_TYPE = "AWS::SSM::Parameter::Value"
_log = logging.getLogger(__name__)


class CloudError(RuntimeError):
    """The local cloud could not do what was asked; the message says what and why."""


@dataclass(frozen=True)
class CloudConfig:
    prefix: str = "swl"
    state_root: Path = STATE_ROOT
    region: str = "us-east-1"
    stack_name: str = "swarmwarden"
    template_path: Path = REPO / "template.yaml"
    parameters: Mapping[str, str] = field(default_factory=dict)
    faults: str = field(default_factory=lambda: os.environ.get(FAULTS_VARIABLE, ""))
    # How much faster than real time schedules fire (rate(5 minutes) every 5 s at 60).
    schedule_speedup: float = 60.0
    run_schedules: bool = False


class ResponseInbox:
    """The CloudFormation side of a custom resource: a local URL that collects the PUT responses."""

    def __init__(self) -> None:
        self._bodies: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with inbox._arrived:
                    inbox._bodies[self.path.split("?")[0].strip("/")] = body
                    inbox._arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{key}?X-Amz-Signature=local"

    def wait(self, key: str, timeout: float) -> dict[str, Any]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: key in self._bodies, timeout=timeout):
                raise CloudError(f"no response to request {key} within {timeout:.0f} s")
            return self._bodies[key]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class NodeView:
    instance_id: str
    ip: str
    az: str
    role: str
    slot: str
    state: str
    swarm: str = ""


def _stringify(value: Any) -> Any:
    """CloudFormation hands custom resources every scalar as a string."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


class LocalCloud:
    def __init__(self, config: CloudConfig | None = None) -> None:
        self.config = config or CloudConfig()
        overrides = {**LOCAL_PARAMETERS, **self.config.parameters}
        # First pass, to learn the VPC range the hosts' bridge must carry; SSM parameters resolve later.
        draft = Template.load(self.config.template_path, region=self.config.region, overrides=overrides)
        self.network = HostNetwork(
            self.config.prefix,
            ipaddress.IPv4Network(draft.parameters.get("VpcCidr", "10.42.0.0/16")),
            self.config.state_root,
        )
        self._overrides = overrides
        self.template = draft
        self.state_dir = self.network.state_dir
        self.hosts: dict[str, Host] = {}
        self.agents: dict[str, bool] = {}
        self.events: list[dict[str, Any]] = []
        self.physical_ids: dict[str, str] = {}
        self._stack = ExitStack()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._lock = threading.Lock()
        self._rootfs: Path | None = None
        self.api: HttpApiServer | None = None
        self.api_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalCloud:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        cleanup_all(self.config.prefix, self.config.state_root)
        self.network.ensure()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        moto_api_backend.reset()
        sfn_config = default_user_config["stepfunctions"]
        executing = sfn_config["execute_state_machine"]
        sfn_config["execute_state_machine"] = True
        self._stack.callback(sfn_config.__setitem__, "execute_state_machine", executing)
        self._stack.callback(moto_api_backend.reset)

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=str(self.network.gateway_ip), port=0, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        self.endpoint = AwsEndpoint(url=f"http://{host}:{port}", region=self.config.region)

        self.aws_environment = {
            "AWS_ENDPOINT_URL": self.endpoint.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_REGION": self.config.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
        self.template = Template.load(
            self.config.template_path,
            region=self.config.region,
            stack_name=self.config.stack_name,
            overrides=self._overrides,
            resolve_ssm=self._resolve_public_parameter,
        )
        functions = self.template.functions()
        self.runtime = LambdaRuntime(functions, faults=faults_from(self.config.faults))
        self._stack.enter_context(self.runtime.installed(self.aws_environment))
        self._reset_library_caches()
        self._route_lambda_logs()

        self.emulation = Emulation(self)
        self._stack.enter_context(self.emulation.installed())
        self._create_resources()

        self.bus = EventBus(self.template.rules(), self._deliver)
        if self.config.run_schedules:
            scheduler = Scheduler(self.template.rules(), self._fire_schedule, speedup=self.config.schedule_speedup)
            scheduler.start()
            self._stack.callback(scheduler.stop)
        routes = self.template.routes()
        if routes:
            self.api = HttpApiServer(routes, self.runtime.invoke, region=self.config.region, account=ACCOUNT)
            self.api.start()
            self._stack.callback(self.api.stop)
            self.api_url = self.api.url
        self.inbox = ResponseInbox()
        self._stack.callback(self.inbox.close)
        self._rootfs = build_rootfs(self.state_dir / "busybox-rootfs.tar")

    def close(self) -> None:
        """Stops everything and removes every trace: hosts, bridge, rules, moto state."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._stack.close()
        finally:
            self.hosts.clear()
            cleanup_all(self.config.prefix, self.config.state_root)

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self, service: str) -> Any:
        """A client for the local cloud's own calls (it stands in for AWS): the meter leaves them out."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            config=Config(user_agent_extra=f"app/{LOCAL_CLOUD_APP_ID}"),
            endpoint_url=self.endpoint.url,
            region_name=self.config.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        )

    def _resolve_public_parameter(self, name: str) -> str:
        return str(self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])

    @staticmethod
    def _reset_library_caches() -> None:
        """A new cloud is a cold start: no cache in the layer (clients, settings, the API's adapters) may
        still point at an earlier cloud of this process. The functions' own modules are loaded per cloud."""
        for name, module in list(sys.modules.items()):
            if name == "swarmwarden" or name.startswith("swarmwarden."):
                for value in list(vars(module).values()):
                    if getattr(value, "__module__", None) == name and callable(getattr(value, "cache_clear", None)):
                        value.cache_clear()

    def _route_lambda_logs(self) -> None:
        """The functions' Powertools logs go to a file, like CloudWatch Logs, not to the terminal."""
        from swarmwarden.observability import logger

        log = (self.state_dir / "lambda.log").open("a", encoding="utf-8")
        self._stack.callback(log.close)
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            previous = handler.setStream(log)
            self._stack.callback(handler.setStream, previous)

    def _create_resources(self) -> None:
        """What CloudFormation would have created before the custom resource runs."""
        template = self.template
        dynamodb, iam, sfn = self.client("dynamodb"), self.client("iam"), self.client("stepfunctions")
        for logical_id, resource in template.of_type("AWS::DynamoDB::Table").items():
            properties = template.resolve(resource["Properties"])
            dynamodb.create_table(
                TableName=template.physical_name(logical_id),
                KeySchema=properties["KeySchema"],
                AttributeDefinitions=properties["AttributeDefinitions"],
                BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
                **(
                    {"GlobalSecondaryIndexes": properties["GlobalSecondaryIndexes"]}
                    if "GlobalSecondaryIndexes" in properties
                    else {}
                ),
            )
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        )
        for logical_id in template.of_type("AWS::IAM::Role"):
            iam.create_role(RoleName=template.physical_name(logical_id), AssumeRolePolicyDocument=trust)
        for logical_id, resource in template.of_type("AWS::IAM::InstanceProfile").items():
            name = template.physical_name(logical_id)
            iam.create_instance_profile(InstanceProfileName=name)
            for role in template.resolve(resource["Properties"].get("Roles", [])):
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        for logical_id in template.of_type("AWS::SQS::Queue"):
            self.client("sqs").create_queue(QueueName=template.physical_name(logical_id))
        for logical_id in template.of_type("AWS::SNS::Topic"):
            self.client("sns").create_topic(Name=template.physical_name(logical_id))
        for machine in template.state_machines():
            sfn.create_state_machine(
                name=machine.name,
                definition=machine.definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{machine.name}",
                type="STANDARD",
            )

    # ------------------------------------------------------------------ instances as hosts (Machines)
    def boot(self, instance: Any) -> None:
        ip = ipaddress.IPv4Address(instance.private_ip)
        host = Host(self.network, name=instance.id[-7:], ip=ip, hostname=f"ip-{str(ip).replace('.', '-')}")
        with self._lock:
            self.hosts[instance.id] = host
        self._emit_state(instance.id, "pending")
        try:
            host.start()
            assert self._rootfs is not None
            load_image(host, self._rootfs)
        except (HostError, ValueError) as error:
            _log.error("instance %s failed to boot: %s", instance.id, error)
            host.destroy()
            set_state(instance, "terminated")
            self._emit_state(instance.id, "terminated")
            return
        set_state(instance, "running")
        with self._lock:
            self.agents[instance.id] = True
        self._emit_state(instance.id, "running")
        self._register_with_ecs(instance)

    def _register_with_ecs(self, instance: Any) -> None:
        """The ECS agent joins the cluster named in the user data; it retries until the cluster exists."""
        cluster = ecs_cluster_from_user_data(instance.user_data)
        if cluster is None:
            return
        from moto.ecs.models import ecs_backends

        backend = ecs_backends[ACCOUNT][self.config.region]
        deadline = time.monotonic() + 120
        while cluster not in backend.clusters:
            if time.monotonic() > deadline or not self.agents.get(instance.id):
                return
            time.sleep(1)
        backend.register_container_instance(cluster, instance.id)

    def shut_down(self, instance: Any, *, terminate: bool) -> None:
        self._emit_state(instance.id, "shutting-down" if terminate else "stopping")
        with self._lock:
            host = self.hosts.pop(instance.id, None) if terminate else self.hosts.get(instance.id)
            self.agents[instance.id] = False
        if host is not None:
            host.destroy() if terminate else host.stop()
        if terminate:
            self._deregister_from_ecs(instance.id)
        set_state(instance, "terminated" if terminate else "stopped")
        self._emit_state(instance.id, "terminated" if terminate else "stopped")

    def _deregister_from_ecs(self, instance_id: str) -> None:
        from moto.ecs.models import ecs_backends

        backend = ecs_backends[ACCOUNT][self.config.region]
        for cluster, instances in list(backend.container_instances.items()):
            for container_id, container in list(instances.items()):
                if container.ec2_instance_id == instance_id:
                    backend.deregister_container_instance(cluster, container_id, force=True)

    def run(self, instance_id: str, text: str, timeout: float) -> ScriptResult | None:
        host = self.hosts.get(instance_id)
        if host is None:
            return None
        return run_script(host, text, self.endpoint, timeout=timeout)

    def agent_online(self, instance_id: str) -> bool | None:
        return self.agents.get(instance_id)

    # ------------------------------------------------------------------ events
    def _emit_state(self, instance_id: str, state: str) -> None:
        self.emit(ec2_state_change_event(instance_id, state, region=self.config.region, account=ACCOUNT))

    def emit(self, event: dict[str, Any]) -> list[str]:
        with self._lock:
            self.events.append(event)
        bus = getattr(self, "bus", None)
        return bus.put(event) if bus is not None else []

    def _deliver(self, target_arn: str, event: dict[str, Any]) -> None:
        """EventBridge invokes a Lambda target asynchronously and starts a state machine target."""
        if ":lambda:" in target_arn:
            self._pool.submit(self.runtime.invoke, target_arn, event)
        elif ":states:" in target_arn:
            self.client("stepfunctions").start_execution(stateMachineArn=target_arn, input=json.dumps(event))
        else:
            _log.warning("no local delivery for target %s", target_arn)

    def _fire_schedule(self, rule: Rule) -> None:
        from localcloud.events import scheduled_event

        rule_arn = f"arn:aws:events:{self.config.region}:{ACCOUNT}:rule/{rule.logical_id}"
        event = scheduled_event(rule_arn, region=self.config.region, account=ACCOUNT)
        for target in rule.target_arns:
            self._deliver(target, event)

    # ------------------------------------------------------------------ the stack's custom resources
    def _custom_resources(self) -> dict[str, dict[str, Any]]:
        return {
            lid: r
            for lid, r in self.template.resources.items()
            if str(r.get("Type", "")).startswith("Custom::") or r.get("Type") == "AWS::CloudFormation::CustomResource"
        }

    def _send_custom_resource_request(self, request_type: str, timeout: float) -> None:
        for logical_id, resource in self._custom_resources().items():
            properties = _stringify(self.template.resolve(resource.get("Properties", {})))
            request_id = str(uuid.uuid4())
            request = {
                "RequestType": request_type,
                "ServiceToken": properties["ServiceToken"],
                "ResponseURL": self.inbox.url(request_id),
                "StackId": f"arn:aws:cloudformation:{self.config.region}:{ACCOUNT}:stack/{self.config.stack_name}/{uuid.uuid4()}",
                "RequestId": request_id,
                "ResourceType": resource["Type"],
                "LogicalResourceId": logical_id,
                "ResourceProperties": properties,
            }
            if logical_id in self.physical_ids:
                request["PhysicalResourceId"] = self.physical_ids[logical_id]
            # CloudFormation invokes the function asynchronously and waits for the PUT.
            self._pool.submit(self.runtime.invoke, properties["ServiceToken"], request)
            body = self.inbox.wait(request_id, timeout)
            if body.get("Status") != "SUCCESS":
                raise CloudError(f"{request_type} of {logical_id} failed: {body.get('Reason', 'no reason given')}")
            self.physical_ids[logical_id] = str(body["PhysicalResourceId"])
            self.template.attributes[logical_id] = {k: str(v) for k, v in body.get("Data", {}).items()}

    def up(self, timeout: float = 1800) -> dict[str, str]:
        """Creates the stack's custom resources, as `sam deploy` would, and returns the stack outputs."""
        self._send_custom_resource_request("Create", timeout)
        return self.outputs()

    def down(self, timeout: float = 1800) -> None:
        """Deletes the custom resources, as `sam delete` would: teardown runs through its workflow."""
        self._send_custom_resource_request("Delete", timeout)

    def outputs(self) -> dict[str, str]:
        raw = self._outputs_section()
        return {name: str(self.template.resolve(output["Value"])) for name, output in raw.items()}

    def _outputs_section(self) -> dict[str, Any]:
        from cfnlint.decode import cfn_yaml

        return dict(cfn_yaml.load(str(self.config.template_path)).get("Outputs", {}))

    # ------------------------------------------------------------------ operator views and failures
    def instance(self, node: str) -> Any:
        """An instance by id, private IP, hostname or Name tag."""
        for view in self.nodes(with_swarm=False):
            host = self.hosts.get(view.instance_id)
            names = {view.instance_id, view.ip, host.hostname if host else ""}
            if node in names or node == view.slot:
                return self._moto_instance(view.instance_id)
        raise CloudError(f"no instance {node!r}")

    def _moto_instance(self, instance_id: str) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[ACCOUNT][self.config.region].get_instance(instance_id)

    def kill(self, node: str, mode: str = "terminate") -> str:
        """A hard failure of a node. `terminate`: AWS terminates the dead instance; `stop`: it stops it;
        `daemon`: only dockerd and its containers die, the instance keeps running and no EC2 event fires."""
        instance = self.instance(node)
        host = self.hosts.get(instance.id)
        if host is None:
            raise CloudError(f"{instance.id} has no running host")
        if mode == "daemon":
            host.kill_daemon() if hasattr(host, "kill_daemon") else host.kill()
            return str(instance.id)
        if mode not in {"terminate", "stop"}:
            raise CloudError(f"kill mode {mode!r}: use terminate, stop or daemon")
        host.kill()
        set_state(instance, "shutting-down" if mode == "terminate" else "stopping")
        self._pool.submit(self.shut_down, instance, terminate=mode == "terminate")
        return str(instance.id)

    def nodes(self, *, with_swarm: bool = True) -> list[NodeView]:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][self.config.region]
        views = []
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                tags = {t["key"]: t["value"] for t in backend.describe_tags(filters={"resource-id": [instance.id]})}
                views.append(
                    NodeView(
                        instance_id=instance.id,
                        ip=str(instance.private_ip),
                        az=str(instance.placement.zone),
                        role=tags.get("swarmwarden:role", ""),
                        slot=tags.get("swarmwarden:slot", ""),
                        state=instance._state.name,
                    )
                )
        views.sort(key=lambda v: (v.state != "running", v.slot, v.instance_id))
        return self._with_swarm_status(views) if with_swarm else views

    def _with_swarm_status(self, views: list[NodeView]) -> list[NodeView]:
        status = self.swarm_nodes()
        return [
            NodeView(**{**view.__dict__, "swarm": status.get(view.ip, "")}) if view.state == "running" else view
            for view in views
        ]

    def swarm_nodes(self) -> dict[str, str]:
        """Each node's address -> 'role/status[/leader]', as a live manager sees the swarm."""
        import docker

        for instance_id, host in list(self.hosts.items()):
            if not self.agents.get(instance_id):
                continue
            client = None
            try:
                client = docker.DockerClient(base_url=host.docker_host, timeout=5)
                nodes = client.nodes.list()
            except (docker.errors.DockerException, OSError):
                # A worker refuses (APIError); a dead or hung daemon does not answer at all: ask the next host.
                continue
            finally:
                if client is not None:
                    client.close()
            found = {}
            for node in nodes:
                attrs = node.attrs
                manager = attrs.get("ManagerStatus") or {}
                label = f"{attrs['Spec']['Role']}/{attrs['Status']['State']}" + (
                    "/leader" if manager.get("Leader") else ""
                )
                found[attrs["Status"].get("Addr", "")] = label
            return found
        return {}

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        found = []
        for machine in self.template.state_machines():
            for execution in sfn.list_executions(stateMachineArn=machine.arn)["executions"]:
                found.append({"machine": machine.name, **execution})
        return found

    def current_state(self, execution_arn: str) -> str:
        """The state the execution entered last (moto ignores reverseOrder, so read every page)."""
        sfn = self.client("stepfunctions")
        entered, token = "", None
        for _page in range(100):
            page = sfn.get_execution_history(executionArn=execution_arn, **({"nextToken": token} if token else {}))
            for event in page["events"]:
                if event["type"].endswith("StateEntered"):
                    entered = str(event["stateEnteredEventDetails"]["name"])
            token = page.get("nextToken")
            if not token:
                break
        return entered


@contextmanager
def running_cloud(config: CloudConfig | None = None) -> Iterator[LocalCloud]:
    cloud = LocalCloud(config).start()
    try:
        yield cloud
    finally:
        cloud.close()
