"""What template.yaml grants and guarantees, checked on the parsed template.

The IAM checks evaluate the policies (Allow/Deny, Resource/NotResource, StringEquals conditions)
for concrete requests, so they test who can do what, not how the YAML happens to be written.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from swarmwarden import aws
from swarmwarden.adapters.operations import OperationKind
from swarmwarden.adapters.store import ClusterStatus, ClusterStore
from swarmwarden.api import routes
from swarmwarden.domain.model import MAX_WORKERS_CEILING, ClusterSpec, Host, Poll
from swarmwarden.errors import SwarmwardenError
from swarmwarden.settings import Settings
from swarmwarden.steps.custom_resource import spec_from_properties

from functions.api import app as api_app
from functions.cluster_state import app as cluster_state_app
from functions.custom_resource import app as custom_resource_app
from functions.hosts import app as hosts_app
from functions.network import app as network_app
from functions.scale import app as scale_app
from functions.swarm import app as swarm_app
from localcloud.events import parse_schedule
from tests.unit.ec2_world import register_with_ecs, ssm_agents
from tests.unit.reconcile_world import clear_caches as clear_reconcile_caches
from tests.unit.reconcile_world import exercise_reconcile
from tests.unit.repair_world import clear_caches, exercise_repair

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER = "demo"
OTHER = "other"
AMI = "ami-0123456789abcdef0"

FUNCTIONS = {
    "NetworkFunction": "network",
    "HostsFunction": "hosts",
    "SwarmFunction": "swarm",
    "ClusterStateFunction": "cluster_state",
    "CustomResourceFunction": "custom_resource",
    "RepairTriggerFunction": "repair_trigger",
    "RepairFunction": "repair",
    "ReconcileFunction": "reconcile",
    "ApiFunction": "api",
    "ScaleFunction": "scale",
}
STATE_MACHINES = {
    "ProvisionStateMachine": "statemachines/provision.asl.json",
    "TeardownStateMachine": "statemachines/teardown.asl.json",
    "RepairStateMachine": "statemachines/repair.asl.json",
    "ScaleStateMachine": "statemachines/scale.asl.json",
}

# The ssm statements of the AWS managed policies attached to the instance roles (AWS managed policy
# reference, AmazonSSMManagedInstanceCore v2). They matter because they grant ssm:GetParameter(s)
# on "*"; AmazonEC2ContainerServiceforEC2Role grants no ssm action.
SSM_MANAGED_INSTANCE_CORE = {
    "Effect": "Allow",
    "Action": [
        "ssm:DescribeAssociation",
        "ssm:GetDeployablePatchSnapshotForInstance",
        "ssm:GetDocument",
        "ssm:DescribeDocument",
        "ssm:GetManifest",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:ListAssociations",
        "ssm:ListInstanceAssociations",
        "ssm:PutInventory",
        "ssm:PutComplianceItems",
        "ssm:PutConfigurePackageResult",
        "ssm:UpdateAssociationStatus",
        "ssm:UpdateInstanceAssociationStatus",
        "ssm:UpdateInstanceInformation",
    ],
    "Resource": "*",
}
MANAGED_INSTANCE_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role": [],
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore": [SSM_MANAGED_INSTANCE_CORE],
}


# ------------------------------------------------------------------ loading and rendering


@cache
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(ROOT / "template.yaml"))
    return loaded


def resources() -> dict[str, Any]:
    return template()["Resources"]  # type: ignore[no-any-return]


def props(logical_id: str) -> dict[str, Any]:
    return resources()[logical_id]["Properties"]  # type: ignore[no-any-return]


def parameter_values(**overrides: str) -> dict[str, str]:
    """Parameter values as CloudFormation resolves them: defaults, strings, the AMI parameter resolved."""
    values = {name: str(p.get("Default", "")) for name, p in template()["Parameters"].items()}
    values.update(ClusterName=CLUSTER, AmiId=AMI)
    values.update(overrides)
    return values


NO_VALUE = object()


def arn_of(logical_id: str) -> str:
    return f"arn:aws:test:{REGION}:{ACCOUNT}:{logical_id}"


def render(node: Any, params: dict[str, str] | None = None) -> Any:
    """Resolves Ref, Fn::Sub, Fn::GetAtt, Fn::If and Fn::Equals/Not for one parameter set."""
    params = parameter_values() if params is None else params
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}

    def ref(name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in params:
            return params[name]
        assert name in resources(), f"Ref to unknown {name}"
        return name  # a resource's Ref: its logical id stands in for the physical id

    def sub(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and name.split(".")[0] in resources():
                return arn_of(name.split(".")[0])
            return str(ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def condition(name: str) -> bool:
        return bool(walk(template()["Conditions"][name]))

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return ref(arg)
                if key == "Fn::Sub":
                    if isinstance(arg, list):  # SAM's policy templates use the two-argument form
                        text, variables = arg
                        for name, variable in variables.items():
                            text = text.replace("${" + name + "}", str(walk(variable)))
                        return sub(text)
                    return sub(arg)
                if key == "Fn::GetAtt":
                    logical = arg[0] if isinstance(arg, list) else arg.split(".")[0]
                    assert logical in resources(), f"GetAtt of unknown {logical}"
                    return arn_of(logical)
                if key == "Fn::If":
                    return walk(arg[1] if condition(arg[0]) else arg[2])
                if key == "Fn::Equals":
                    return walk(arg[0]) == walk(arg[1])
                if key == "Fn::Not":
                    return not walk(arg[0])
            out = {k: walk(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (walk(v) for v in value) if v is not NO_VALUE]
        return value

    return walk(node)


def param_arn(path: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}"


def ec2_arn(kind: str, ident: str = "x-0123") -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{ident}"


# ------------------------------------------------------------------ a small IAM evaluator


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, *, case: bool) -> bool:
    if case:
        return any(fnmatch.fnmatchcase(value, p) for p in _as_list(patterns))
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in _as_list(patterns))


def _conditions_hold(conditions: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                return False
            if operator == "StringEquals":
                if actual not in [str(e) for e in _as_list(expected)]:
                    return False
            elif operator == "StringLike":
                if not _matches(expected, actual, case=True):
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def _applies(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if not _matches(statement["Action"], action, case=False):
        return False
    if "Resource" in statement:
        in_scope = _matches(statement["Resource"], resource, case=True)
    else:
        in_scope = not _matches(statement["NotResource"], resource, case=True)
    return in_scope and _conditions_hold(statement.get("Condition", {}), context)


def allowed(statements: list[dict[str, Any]], action: str, resource: str, **context: str) -> bool:
    """IAM's identity-policy logic: an explicit Deny wins, else any Allow, else implicit deny."""
    relevant = [s for s in statements if _applies(s, action, resource, context)]
    return any(s["Effect"] == "Allow" for s in relevant) and not any(s["Effect"] == "Deny" for s in relevant)


def inline_statements(policies: list[Any]) -> list[dict[str, Any]]:
    """The statements of a SAM Policies list's inline documents (policy templates are skipped)."""
    statements: list[dict[str, Any]] = []
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(policy["Statement"])
    return statements


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    return inline_statements(render(props(logical_id)["Policies"]))


def role_statements(logical_id: str) -> list[dict[str, Any]]:
    role = render(props(logical_id))
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for managed in role["ManagedPolicyArns"]:
        statements.extend(MANAGED_INSTANCE_POLICIES[managed])
    return statements


def request_tag(cluster: str = CLUSTER) -> dict[str, str]:
    return {"aws:RequestTag/swarmwarden:cluster": cluster}


def resource_tag(cluster: str = CLUSTER) -> dict[str, str]:
    return {"ec2:ResourceTag/swarmwarden:cluster": cluster}


# ------------------------------------------------------------------ parameters and rules


def test_manager_count_allows_exactly_odd_quorum_sizes() -> None:
    manager_count = template()["Parameters"]["ManagerCount"]
    assert sorted(int(v) for v in manager_count["AllowedValues"]) == [1, 3, 5, 7]
    assert int(manager_count["Default"]) in {1, 3, 5, 7}


def test_ami_comes_from_the_public_ecs_al2023_parameter() -> None:
    ami = template()["Parameters"]["AmiId"]
    assert ami["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert ami["Default"] == "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


def test_instance_type_defaults_to_t3_small_on_the_x86_ami() -> None:
    parameters = template()["Parameters"]
    assert parameters["InstanceType"]["Default"] == "t3.small"
    assert "/arm64/" not in parameters["AmiId"]["Default"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("demo", True),
        ("a1", True),
        ("swarm-01", True),
        ("a" * 29, True),
        ("a" * 30, False),
        ("Demo", False),
        ("1demo", False),
        ("demo-", False),
        ("d", False),
        ("de_mo", False),
    ],
)
def test_cluster_name_pattern_agrees_with_the_model(name: str, valid: bool) -> None:
    pattern = template()["Parameters"]["ClusterName"]["AllowedPattern"]
    assert pattern == ClusterSpec.model_fields["cluster_name"].metadata[0].pattern
    assert bool(re.fullmatch(pattern, name)) is valid


@pytest.mark.parametrize(
    ("cidr", "valid"),
    [
        ("10.42.0.0/16", True),
        ("192.168.0.0/24", True),
        ("10.0.0.0/8", False),
        ("10.0.0.0/25", False),
        ("10.0.0/16", False),
    ],
)
def test_vpc_cidr_pattern_accepts_16_to_24(cidr: str, valid: bool) -> None:
    pattern = template()["Parameters"]["VpcCidr"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, cidr)) is valid


def test_default_address_pool_lies_outside_the_default_vpc() -> None:
    parameters = template()["Parameters"]
    vpc = ipaddress.IPv4Network(parameters["VpcCidr"]["Default"])
    pool = ipaddress.IPv4Network(parameters["SwarmAddressPool"]["Default"])
    assert vpc == ipaddress.IPv4Network("10.42.0.0/16")
    assert pool == ipaddress.IPv4Network("172.20.0.0/16")
    assert not pool.overlaps(vpc)


def test_poll_defaults_match_the_model() -> None:
    parameters = template()["Parameters"]
    assert int(parameters["PollIntervalSeconds"]["Default"]) == Poll().interval_seconds == 5
    assert int(parameters["PollMaxAttempts"]["Default"]) == Poll().max_attempts == 120


def _rules_pass(params: dict[str, str]) -> bool:
    """Evaluates the template's Rules section the way CloudFormation does before any change."""

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            ((key, arg),) = node.items()
            match key:
                case "Ref":
                    return params[arg]
                case "Fn::Equals":
                    return str(value(arg[0])) == str(value(arg[1]))
                case "Fn::Contains":
                    return str(value(arg[1])) in [str(v) for v in value(arg[0])]
                case "Fn::Not":
                    return not value(arg[0])
                case "Fn::And":
                    return all(value(a) for a in arg)
                case "Fn::Or":
                    return any(value(a) for a in arg)
            raise AssertionError(f"unexpected rule function {key}")
        if isinstance(node, list):
            return [value(v) for v in node]
        return node

    for rule in template().get("Rules", {}).values():
        if "RuleCondition" in rule and not value(rule["RuleCondition"]):
            continue
        if not all(value(a["Assert"]) for a in rule["Assertions"]):
            return False
    return True


def test_rules_refuse_more_workers_than_max_workers() -> None:
    parameters = template()["Parameters"]
    worker_count, max_workers = parameters["WorkerCount"], parameters["MaxWorkers"]
    assert int(worker_count["MinValue"]) == 0
    assert int(worker_count["MaxValue"]) == MAX_WORKERS_CEILING
    maxima = [int(v) for v in max_workers["AllowedValues"]]
    assert max(maxima) <= MAX_WORKERS_CEILING
    assert int(max_workers["Default"]) in maxima
    for maximum in maxima:
        for workers in range(int(worker_count["MinValue"]), int(worker_count["MaxValue"]) + 1):
            params = parameter_values(MaxWorkers=str(maximum), WorkerCount=str(workers))
            assert _rules_pass(params) is (workers <= maximum), (workers, maximum)


def test_default_parameters_pass_the_rules() -> None:
    assert _rules_pass(parameter_values())


# ------------------------------------------------------------------ the custom resource


def cluster_properties(**overrides: str) -> dict[str, str]:
    """SwarmCluster's properties as CloudFormation delivers them: every value a string."""
    rendered = render(props("SwarmCluster"), parameter_values(**overrides))
    return {k: v if isinstance(v, str) else str(v) for k, v in rendered.items()}


def test_cluster_properties_are_the_spec_fields() -> None:
    names = set(props("SwarmCluster")) - {"ServiceToken", "ServiceTimeout"}
    assert names <= set(ClusterSpec.model_fields)
    required = {n for n, f in ClusterSpec.model_fields.items() if f.is_required()}
    assert required <= names


def test_default_parameters_make_a_valid_spec() -> None:
    spec = spec_from_properties(cluster_properties())
    assert spec.cluster_name == CLUSTER
    assert (spec.managers, spec.workers, spec.max_workers) == (3, 2, 20)
    assert spec.ami_id == AMI
    assert spec.key_name is None
    assert str(spec.vpc_cidr) == "10.42.0.0/16"
    assert str(spec.address_pool) == "172.20.0.0/16"


def test_key_name_is_passed_only_when_given() -> None:
    assert "key_name" not in cluster_properties()
    assert cluster_properties(KeyName="ops")["key_name"] == "ops"
    assert spec_from_properties(cluster_properties(KeyName="ops")).key_name == "ops"


def test_custom_resource_waits_at_most_what_cloudformation_allows() -> None:
    cluster = props("SwarmCluster")
    assert resources()["SwarmCluster"]["Type"] == "Custom::SwarmCluster"
    assert cluster["ServiceToken"] == {"Fn::GetAtt": ["CustomResourceFunction", "Arn"]}
    assert isinstance(cluster["ServiceTimeout"], int)
    assert 1 <= cluster["ServiceTimeout"] <= 3600


def test_custom_resource_is_created_after_and_deleted_before_what_teardown_needs() -> None:
    depends = set(_as_list(resources()["SwarmCluster"]["DependsOn"]))
    assert {"ProvisionStateMachine", "TeardownStateMachine", "ClusterTable"} <= depends


# ------------------------------------------------------------------ functions


def test_functions_are_the_architecture_table() -> None:
    found = {k: v for k, v in resources().items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(found) == set(FUNCTIONS)
    for logical_id, folder in FUNCTIONS.items():
        assert found[logical_id]["Properties"]["CodeUri"] == f"functions/{folder}/"


def test_globals_set_runtime_tracing_layer_and_powertools() -> None:
    function = template()["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "app.lambda_handler"
    assert function["Tracing"] == "Active"
    assert function["MemorySize"] == 256
    assert function["Layers"] == [{"Ref": "SwarmwardenLayer"}]
    variables = render(function["Environment"]["Variables"])
    assert variables["POWERTOOLS_SERVICE_NAME"] == "swarmwarden"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Swarmwarden"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert variables["CLUSTER_NAME"] == CLUSTER
    assert variables["TABLE_NAME"] == "ClusterTable"
    assert variables["TOKEN_PARAMETER_PREFIX"] == f"/swarmwarden/{CLUSTER}/tokens"


def _environment(logical_id: str) -> dict[str, str]:
    variables = dict(render(template()["Globals"]["Function"]["Environment"]["Variables"]))
    variables.update(render(props(logical_id).get("Environment", {}).get("Variables", {})))
    variables["AWS_REGION"] = REGION  # set by Lambda itself
    return variables


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_gets_valid_settings(logical_id: str) -> None:
    environment = _environment(logical_id)
    aliases = {field.alias for field in Settings.model_fields.values()}
    ours = {k for k in environment if not k.startswith("POWERTOOLS_") and k != "AWS_REGION"}
    assert ours <= aliases, f"variables no setting reads: {ours - aliases}"
    Settings.model_validate(environment)  # every required setting present, every value well-formed


def test_functions_get_the_settings_they_need() -> None:
    hosts = _environment("HostsFunction")
    assert hosts["MANAGER_INSTANCE_PROFILE_ARN"] == arn_of("ManagerInstanceProfile")
    assert hosts["WORKER_INSTANCE_PROFILE_ARN"] == arn_of("WorkerInstanceProfile")
    custom = _environment("CustomResourceFunction")
    assert custom["POLL_INTERVAL_SECONDS"] == "5"
    assert custom["POLL_MAX_ATTEMPTS"] == "120"
    swarm = Settings.model_validate(_environment("SwarmFunction"))
    # The function waits for one command: its run time plus a minute for delivery, with room to spare.
    assert props("SwarmFunction")["Timeout"] >= max(300, swarm.command_timeout_seconds + 60)


def test_custom_resource_knows_the_state_machines_it_starts() -> None:
    custom = _environment("CustomResourceFunction")
    for variable, logical_id in [
        ("PROVISION_STATE_MACHINE_ARN", "ProvisionStateMachine"),
        ("TEARDOWN_STATE_MACHINE_ARN", "TeardownStateMachine"),
        ("SCALE_STATE_MACHINE_ARN", "ScaleStateMachine"),
    ]:
        name = render(props(logical_id)["Name"])
        expected = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        assert custom[variable] == expected
        assert allowed(function_statements("CustomResourceFunction"), "states:StartExecution", expected)
    assert not allowed(
        function_statements("CustomResourceFunction"),
        "states:StartExecution",
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{OTHER}-provision",
    )


def test_every_function_and_state_machine_has_its_own_scoped_role() -> None:
    for logical_id, resource in resources().items():
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            properties = resource["Properties"]
            assert "Role" not in properties, f"{logical_id} shares a role"
            assert properties.get("Policies"), f"{logical_id} has no policies"
            for statement in inline_statements(render(properties["Policies"])):
                if statement["Effect"] == "Allow" and "*" in _as_list(statement["Action"]):
                    pytest.fail(f"{logical_id} allows every action")


def test_functions_log_to_groups_the_stack_owns() -> None:
    for logical_id in FUNCTIONS:
        group = props(logical_id)["LoggingConfig"]["LogGroup"]
        assert resources()[group["Ref"]]["Type"] == "AWS::Logs::LogGroup"


# ------------------------------------------------------------------ function permissions


def test_network_function_touches_only_tagged_network() -> None:
    statements = function_statements("NetworkFunction")
    vpc = ec2_arn("vpc", "vpc-1")
    assert allowed(statements, "ec2:CreateVpc", vpc, **request_tag())
    assert not allowed(statements, "ec2:CreateVpc", vpc, **request_tag(OTHER))
    assert not allowed(statements, "ec2:CreateVpc", vpc)
    assert allowed(statements, "ec2:DeleteVpc", vpc, **resource_tag())
    assert not allowed(statements, "ec2:DeleteVpc", vpc, **resource_tag(OTHER))
    assert not allowed(statements, "ec2:DeleteVpc", vpc)
    # A subnet is created only in our VPC: its request authorizes the new subnet and the VPC.
    assert allowed(statements, "ec2:CreateSubnet", ec2_arn("subnet"), **request_tag())
    assert allowed(statements, "ec2:CreateSubnet", vpc, **request_tag(), **resource_tag())
    assert not allowed(statements, "ec2:CreateSubnet", vpc, **request_tag())
    assert not allowed(statements, "ec2:CreateSecurityGroup", vpc, **request_tag(), **resource_tag(OTHER))
    assert allowed(statements, "ec2:DeleteSecurityGroup", ec2_arn("security-group"), **resource_tag())
    assert not allowed(statements, "ec2:AuthorizeSecurityGroupIngress", ec2_arn("security-group"))
    # Tags only on creation: no one can tag someone else's VPC into the cluster and then delete it.
    create = {"ec2:CreateAction": "CreateVpc", **request_tag()}
    assert allowed(statements, "ec2:CreateTags", vpc, **create)
    assert not allowed(statements, "ec2:CreateTags", vpc, **request_tag())
    assert allowed(statements, "ec2:DescribeVpcs", "*")
    assert not allowed(statements, "ec2:TerminateInstances", ec2_arn("instance"), **resource_tag())
    own_ecs = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
    assert allowed(statements, "ecs:CreateCluster", "*", **request_tag())
    assert not allowed(statements, "ecs:CreateCluster", "*")
    assert allowed(statements, "ecs:TagResource", own_ecs, **{"ecs:CreateAction": "CreateCluster"})
    assert not allowed(statements, "ecs:TagResource", own_ecs)
    assert allowed(statements, "ecs:DeleteCluster", own_ecs)
    assert not allowed(statements, "ecs:DeleteCluster", f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{OTHER}")


def test_hosts_function_launches_and_terminates_only_tagged_instances() -> None:
    statements = function_statements("HostsFunction")
    instance, volume = ec2_arn("instance", "i-1"), ec2_arn("volume", "vol-1")
    assert allowed(statements, "ec2:RunInstances", instance, **request_tag())
    assert allowed(statements, "ec2:RunInstances", volume, **request_tag())
    assert not allowed(statements, "ec2:RunInstances", instance)
    assert not allowed(statements, "ec2:RunInstances", instance, **request_tag(OTHER))
    assert allowed(statements, "ec2:RunInstances", ec2_arn("subnet"), **resource_tag())
    assert not allowed(statements, "ec2:RunInstances", ec2_arn("subnet"), **resource_tag(OTHER))
    assert allowed(statements, "ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/ami-1")
    # The hosts adapter tags instance and volume only: an untagged primary interface must pass.
    assert allowed(statements, "ec2:RunInstances", ec2_arn("network-interface", "eni-1"))
    assert allowed(statements, "ec2:CreateTags", instance, **{"ec2:CreateAction": "RunInstances"})
    assert not allowed(statements, "ec2:CreateTags", instance)
    assert allowed(statements, "ec2:TerminateInstances", instance, **resource_tag())
    assert not allowed(statements, "ec2:TerminateInstances", instance, **resource_tag(OTHER))
    assert not allowed(statements, "ec2:TerminateInstances", instance)


def test_hosts_function_passes_only_the_instance_roles_to_ec2() -> None:
    statements = function_statements("HostsFunction")
    to_ec2 = {"iam:PassedToService": "ec2.amazonaws.com"}
    for role in ("ManagerInstanceRole", "WorkerInstanceRole"):
        assert allowed(statements, "iam:PassRole", arn_of(role), **to_ec2)
        assert not allowed(statements, "iam:PassRole", arn_of(role), **{"iam:PassedToService": "lambda.amazonaws.com"})
    assert not allowed(statements, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin", **to_ec2)


def test_swarm_function_commands_only_own_hosts_and_never_reads_tokens() -> None:
    statements = function_statements("SwarmFunction")
    shell = f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript"
    assert allowed(statements, "ssm:SendCommand", shell)
    assert not allowed(statements, "ssm:SendCommand", f"arn:aws:ssm:{REGION}::document/AWS-RunPowerShellScript")
    instance = ec2_arn("instance", "i-1")
    assert allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": CLUSTER})
    assert not allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": OTHER})
    assert not allowed(statements, "ssm:SendCommand", instance)
    for role in ("manager", "worker"):
        token = param_arn(f"/swarmwarden/{CLUSTER}/tokens/{role}")
        assert allowed(statements, "ssm:DeleteParameters", token)
        assert not allowed(statements, "ssm:GetParameter", token)
    assert not allowed(statements, "ssm:DeleteParameter", param_arn(f"/swarmwarden/{OTHER}/tokens/worker"))


def test_api_function_reaches_its_tables_the_scale_workflow_and_own_hosts_only() -> None:
    statements = function_statements("ApiFunction")
    cluster_table = arn_of("ClusterTable")
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"):
        assert allowed(statements, action, cluster_table)
    assert not allowed(statements, "dynamodb:DeleteItem", cluster_table)
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert allowed(statements, action, arn_of("IdempotencyTable"))
    assert not allowed(statements, "dynamodb:Scan", arn_of("IdempotencyTable"))
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{CLUSTER}"
    assert _environment("ApiFunction")["SCALE_STATE_MACHINE_ARN"] == f"{machine}-scale"
    assert allowed(statements, "states:StartExecution", f"{machine}-scale")
    assert not allowed(statements, "states:StartExecution", f"{machine}-provision")
    shell = f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript"
    assert allowed(statements, "ssm:SendCommand", shell)
    instance = ec2_arn("instance", "i-1")
    assert allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": CLUSTER})
    assert not allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": OTHER})
    for role in ("manager", "worker"):
        assert not allowed(statements, "ssm:GetParameter", param_arn(f"/swarmwarden/{CLUSTER}/tokens/{role}"))


def test_api_function_settings() -> None:
    settings = Settings.model_validate(_environment("ApiFunction"))
    assert settings.max_workers == 20  # MaxWorkers' default
    assert settings.resolve_image == "always"
    assert settings.idempotency_table_name == "IdempotencyTable"
    assert (settings.poll_interval_seconds, settings.poll_max_attempts) == (5, 120)
    # API Gateway's integration timeout is 30 s: the function must answer before it.
    assert props("ApiFunction")["Timeout"] < 30


def test_every_api_route_requires_aws_iam() -> None:
    api = props("SwarmApi")
    assert resources()["SwarmApi"]["Type"] == "AWS::Serverless::HttpApi"
    assert api["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    routes_in_template = set()
    for logical_id, resource in resources().items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert logical_id == "ApiFunction"
                assert event["Properties"]["ApiId"] == {"Ref": "SwarmApi"}
                assert "Auth" not in event["Properties"], "a route overrides the default authorizer"
                routes_in_template.add((event["Properties"]["Method"].lower(), event["Properties"]["Path"]))
    # As CloudFormation gets it: every route of the generated API carries the IAM authorizer.
    body = translated()["Resources"]["SwarmApi"]["Properties"]["Body"]
    deployed = {(m, p) for p, ops in body["paths"].items() for m in ops}
    assert deployed == routes_in_template
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"AWS_IAM": []}], (method, path)
    # The template's routes are exactly the code's.
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert routes_in_template == {(m, p) for p, ops in document["paths"].items() for m in ops}


def test_idempotency_table_shape() -> None:
    table = resources()["IdempotencyTable"]
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_api_url_is_an_output() -> None:
    assert "SwarmApi" in str(template()["Outputs"]["ApiUrl"]["Value"])


def test_scale_function_commands_own_hosts_reaches_its_table_and_never_reads_tokens() -> None:
    statements = function_statements("ScaleFunction")
    instance = ec2_arn("instance", "i-1")
    assert allowed(statements, "ssm:SendCommand", f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript")
    assert allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": CLUSTER})
    assert not allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": OTHER})
    assert not allowed(statements, "ec2:TerminateInstances", instance, **resource_tag())
    for role in ("manager", "worker"):
        assert not allowed(statements, "ssm:GetParameter", param_arn(f"/swarmwarden/{CLUSTER}/tokens/{role}"))
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "ClusterTable"}}} in props("ScaleFunction")["Policies"]


def test_reconcile_function_acts_on_its_own_hosts_and_starts_repairs_only() -> None:
    statements = function_statements("ReconcileFunction")
    instance = ec2_arn("instance", "i-1")
    assert allowed(statements, "ec2:TerminateInstances", instance, **resource_tag())
    assert not allowed(statements, "ec2:TerminateInstances", instance, **resource_tag(OTHER))
    assert allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": CLUSTER})
    assert not allowed(statements, "ssm:SendCommand", instance, **{"ssm:resourceTag/swarmwarden:cluster": OTHER})
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{CLUSTER}"
    assert allowed(statements, "states:StartExecution", f"{machine}-repair")
    assert allowed(statements, "states:StartExecution", f"{machine}-scale")
    assert not allowed(statements, "states:StartExecution", f"{machine}-provision")
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{CLUSTER}-repair:repair-i-1-1"
    assert allowed(statements, "states:DescribeExecution", execution)
    assert not allowed(statements, "states:DescribeExecution", execution.replace("-repair:", "-provision:"))
    for role in ("manager", "worker"):
        assert not allowed(statements, "ssm:GetParameter", param_arn(f"/swarmwarden/{CLUSTER}/tokens/{role}"))
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "ClusterTable"}}} in props("ReconcileFunction")["Policies"]


def test_reconcile_runs_on_a_schedule_and_on_running_instances_and_repairs_as_the_trigger_does() -> None:
    events = props("ReconcileFunction")["Events"]
    assert events["Sweep"]["Type"] == "Schedule"
    assert events["Sweep"]["Properties"]["Schedule"] == {"Ref": "ReconcileSchedule"}
    assert parse_schedule(template()["Parameters"]["ReconcileSchedule"]["Default"]) == 300
    assert events["InstanceRunning"]["Properties"]["Pattern"]["detail"] == {"state": ["running"]}
    reconcile, trigger = _environment("ReconcileFunction"), _environment("RepairTriggerFunction")
    # A repair reconcile starts has the trigger's name and input, so the two never start two.
    for variable in (
        "REPAIR_STATE_MACHINE_ARN",
        "POLL_INTERVAL_SECONDS",
        "POLL_MAX_ATTEMPTS",
        "MAX_CONCURRENT_REPAIRS",
        "REPAIR_PAUSE_THRESHOLD_PERCENT",
    ):
        assert reconcile[variable] == trigger[variable], variable
    # Drift starts the scale workflow the API starts.
    assert reconcile["SCALE_STATE_MACHINE_ARN"] == _environment("ApiFunction")["SCALE_STATE_MACHINE_ARN"]
    assert Settings.model_validate(reconcile).never_joined_grace_minutes == 10
    assert props("ReconcileFunction")["Timeout"] >= 2 * (
        Settings.model_validate(reconcile).command_timeout_seconds + 60
    )


def test_cluster_state_function_reaches_only_the_cluster_table() -> None:
    policies = props("ClusterStateFunction")["Policies"]
    assert policies == [{"DynamoDBCrudPolicy": {"TableName": {"Ref": "ClusterTable"}}}]


# ------------------------------------------------------------------ state machines


def _placeholders(path: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", (ROOT / path).read_text()))


@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_state_machine_shape(logical_id: str) -> None:
    machine = props(logical_id)
    assert machine["Type"] == "STANDARD"
    assert machine["DefinitionUri"] == STATE_MACHINES[logical_id]
    json.loads((ROOT / STATE_MACHINES[logical_id]).read_text())  # valid JSON
    assert machine["Tracing"] == {"Enabled": True}
    logging = machine["Logging"]
    assert logging["IncludeExecutionData"] is False
    group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert resources()[group]["Type"] == "AWS::Logs::LogGroup"


@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_state_machine_can_invoke_every_function_it_names(logical_id: str) -> None:
    machine = props(logical_id)
    substitutions = machine["DefinitionSubstitutions"]
    assert set(substitutions) <= {f"{name}Arn" for name in FUNCTIONS}
    for key, value in substitutions.items():
        assert value == {"Fn::GetAtt": [key.removesuffix("Arn"), "Arn"]}
    used = _placeholders(STATE_MACHINES[logical_id])
    assert used <= set(substitutions), f"unresolved placeholders: {used - set(substitutions)}"
    invokable = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in machine["Policies"] if "LambdaInvokePolicy" in p
    }
    assert {name.removesuffix("Arn") for name in used} <= invokable


# ------------------------------------------------------------------ instance roles and tokens


def test_instance_roles_trust_ec2_and_use_the_aws_managed_policies() -> None:
    for logical_id in ("ManagerInstanceRole", "WorkerInstanceRole"):
        role = render(props(logical_id))
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
        assert set(role["ManagedPolicyArns"]) == set(MANAGED_INSTANCE_POLICIES)
    for profile, role in [
        ("ManagerInstanceProfile", "ManagerInstanceRole"),
        ("WorkerInstanceProfile", "WorkerInstanceRole"),
    ]:
        assert props(profile)["Roles"] == [{"Ref": role}]


def test_worker_reads_the_worker_token_and_nothing_else() -> None:
    statements = role_statements("WorkerInstanceRole")
    worker = param_arn(f"/swarmwarden/{CLUSTER}/tokens/worker")
    manager = param_arn(f"/swarmwarden/{CLUSTER}/tokens/manager")
    assert allowed(statements, "ssm:GetParameter", worker)
    for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"):
        assert not allowed(statements, action, manager)
        assert not allowed(statements, action, param_arn(f"/swarmwarden/{OTHER}/tokens/worker"))
        assert not allowed(statements, action, param_arn("/some/other/secret"))
    for action in ("ssm:PutParameter", "ssm:DeleteParameter"):
        assert not allowed(statements, action, worker)
        assert not allowed(statements, action, manager)


def test_manager_reads_and_writes_both_tokens_of_its_cluster_only() -> None:
    statements = role_statements("ManagerInstanceRole")
    for role in ("manager", "worker"):
        token = param_arn(f"/swarmwarden/{CLUSTER}/tokens/{role}")
        assert allowed(statements, "ssm:GetParameter", token)
        assert allowed(statements, "ssm:PutParameter", token)
        assert not allowed(statements, "ssm:GetParameter", param_arn(f"/swarmwarden/{OTHER}/tokens/{role}"))
        assert not allowed(statements, "ssm:PutParameter", param_arn(f"/swarmwarden/{OTHER}/tokens/{role}"))
    assert not allowed(statements, "ssm:GetParameter", param_arn("/some/other/secret"))


@pytest.mark.parametrize(
    ("logical_id", "actions"),
    [("ManagerInstanceRole", ["kms:Decrypt", "kms:Encrypt"]), ("WorkerInstanceRole", ["kms:Decrypt"])],
)
def test_hosts_use_kms_only_through_parameter_store(logical_id: str, actions: list[str]) -> None:
    statements = role_statements(logical_id)
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd"
    for action in actions:
        assert allowed(statements, action, key, **{"kms:ViaService": f"ssm.{REGION}.amazonaws.com"})
        assert not allowed(statements, action, key, **{"kms:ViaService": f"s3.{REGION}.amazonaws.com"})
        assert not allowed(statements, action, key)
    if "kms:Encrypt" not in actions:
        assert not allowed(statements, "kms:Encrypt", key, **{"kms:ViaService": f"ssm.{REGION}.amazonaws.com"})


# ------------------------------------------------------------------ state, layer, leftovers


def test_cluster_table_shape() -> None:
    table = resources()["ClusterTable"]
    properties = table["Properties"]
    assert table["DeletionPolicy"] == "Delete"
    assert {(k["AttributeName"], k["KeyType"]) for k in properties["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    assert {(a["AttributeName"], a["AttributeType"]) for a in properties["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
    }
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_layer_builds_for_the_functions_runtime_and_architecture() -> None:
    layer = resources()["SwarmwardenLayer"]
    architectures = template()["Globals"]["Function"]["Architectures"]
    assert layer["Properties"]["ContentUri"] == "layers/swarmwarden/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == architectures
    assert [layer["Metadata"]["BuildArchitecture"]] == architectures
    # The Makefile's target pip installs for the functions' CPU (arm64 is aarch64 to pip).
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers/swarmwarden/Makefile").read_text()
    assert "build-SwarmwardenLayer:" in makefile
    assert architectures == ["arm64"]
    assert "LAYER_ARCH ?= aarch64" in makefile
    assert (ROOT / "layers/swarmwarden/requirements.txt").is_file()
    assert (ROOT / "layers/swarmwarden/swarmwarden/__init__.py").is_file()


def test_sam_delete_leaves_nothing_behind() -> None:
    for logical_id, resource in resources().items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
        assert resource.get("UpdateReplacePolicy", "Delete") == "Delete", logical_id
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] > 0
    assert props("SwarmwardenLayer")["RetentionPolicy"] == "Delete"


def test_nothing_opens_ssh() -> None:
    # The network is built at run time (and converges its security group to the swarm ports only);
    # the template itself must not add any ingress.
    types = {resource["Type"] for resource in resources().values()}
    assert not {"AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress"} & types
    assert not re.search(r"\b22\b", (ROOT / "template.yaml").read_text().split("\nResources:", 1)[1])


def test_outputs_tell_the_user_what_to_use_next() -> None:
    outputs = template()["Outputs"]
    assert {
        "ClusterName",
        "EcsClusterName",
        "ManagerInstanceIds",
        "SwarmId",
        "ClusterTableName",
        "ProvisionStateMachineArn",
        "TeardownStateMachineArn",
    } <= set(outputs)
    assert outputs["ManagerInstanceIds"]["Value"] == {"Fn::GetAtt": ["SwarmCluster", "ManagerInstanceIds"]}
    assert outputs["SwarmId"]["Value"] == {"Fn::GetAtt": ["SwarmCluster", "SwarmId"]}
    assert outputs["EcsClusterName"]["Value"] == {"Ref": "ClusterName"}


# ------------------------------------------------------------------ the deployed roles vs the calls the code makes
#
# moto enforces no IAM, so a permission the code needs but the template lacks would only show on
# AWS. These tests translate the template with SAM (policy templates expanded, as CloudFormation
# receives it), run each function's handler against moto while recording every AWS call it makes,
# and evaluate each call against that function's role: the action must be granted, and a create
# call that IAM conditions on request tags must carry them.

# What the AWS managed policies SAM attaches to function roles grant (AWS managed policy reference).
LAMBDA_MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
}


@cache
def translated() -> dict[str, Any]:
    """The template after the SAM transform, offline (code locations stubbed; they do not affect IAM)."""

    class NoManagedPolicyLookups:
        def load(self) -> dict[str, str]:
            return {}

    source = json.loads(json.dumps(template()))
    for resource in source["Resources"].values():
        properties = resource.get("Properties", {})
        match resource["Type"]:
            case "AWS::Serverless::Function":
                properties["CodeUri"] = "s3://bucket/code.zip"
            case "AWS::Serverless::LayerVersion":
                properties["ContentUri"] = "s3://bucket/layer.zip"
            case "AWS::Serverless::StateMachine":
                properties["DefinitionUri"] = {"Bucket": "bucket", "Key": "definition.json"}
    return transform(source, {}, NoManagedPolicyLookups())  # type: ignore[no-any-return]


def deployed_statements(function: str) -> list[dict[str, Any]]:
    role = render(translated()["Resources"][f"{function}Role"]["Properties"])
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for managed in role.get("ManagedPolicyArns", []):
        statements.extend(LAMBDA_MANAGED_POLICIES[managed])
    return statements


def test_sam_gives_every_function_its_own_role() -> None:
    roles = {k for k, v in translated()["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert {f"{name}Role" for name in FUNCTIONS} | {f"{name}Role" for name in STATE_MACHINES} <= roles
    for name in FUNCTIONS:
        role = translated()["Resources"][name]["Properties"]["Role"]
        assert role == {"Fn::GetAtt": [f"{name}Role", "Arn"]}


def test_cluster_state_function_reaches_only_its_table() -> None:
    statements = deployed_statements("ClusterStateFunction")
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ClusterTable"
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:DeleteItem"):
        assert allowed(statements, action, table)
        assert not allowed(statements, action, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Other")
    assert not allowed(statements, "dynamodb:DeleteTable", table)


@dataclass(frozen=True)
class Call:
    function: str
    action: str  # IAM's name for the API call: signing name and operation
    params: dict[str, Any]


@contextmanager
def recording() -> Iterator[tuple[list[Call], Callable[[str], Any]]]:
    """Records the AWS calls made through the library's clients while `as_function(name)` is active."""
    calls: list[Call] = []
    current: list[str] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if current:
            calls.append(Call(current[-1], f"{model.service_model.signing_name}:{model.name}", params))

    @contextmanager
    def as_function(name: str) -> Iterator[None]:
        current.append(name)
        try:
            yield
        finally:
            current.pop()

    clients = [aws.ec2(), aws.ecs(), aws.ssm(), aws.dynamodb(), aws.stepfunctions()]
    for client in clients:
        client.meta.events.register_first("before-parameter-build", record)
    try:
        yield calls, as_function
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build", record)


@dataclass
class Context:
    function_name: str = "fn"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


EVENTS = ROOT / "events" / "steps"


def step_event(name: str, **changes: Any) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text()) | changes  # type: ignore[no-any-return]


def _request_tags(call: Call) -> set[str]:
    """The swarmwarden:cluster values a create call puts on what it creates."""
    specs = call.params.get("TagSpecifications", [])
    values = {t["Value"] for spec in specs for t in spec["Tags"] if t["Key"] == "swarmwarden:cluster"}
    values |= {t["value"] for t in call.params.get("tags", []) if t["key"] == "swarmwarden:cluster"}
    return values


def _granted_somewhere(statements: list[dict[str, Any]], action: str) -> bool:
    """Whether some Allow statement names the action (resources and conditions aside)."""
    return any(s["Effect"] == "Allow" and _matches(s["Action"], action, case=False) for s in statements)


def _needs_request_tag(statements: list[dict[str, Any]], action: str) -> bool:
    """Whether every Allow statement for the action asks for the cluster's request tag."""
    granting = [s for s in statements if s["Effect"] == "Allow" and _matches(s["Action"], action, case=False)]
    return all("aws:RequestTag/swarmwarden:cluster" in s.get("Condition", {}).get("StringEquals", {}) for s in granting)


@pytest.fixture
def deployed_environment(monkeypatch: pytest.MonkeyPatch, instance_profiles: dict[str, str]) -> None:
    """The functions' environment as the template sets it, with moto's instance profiles and a table."""
    for name, value in _environment("CustomResourceFunction").items():
        monkeypatch.setenv(name, value)
    for name, value in _environment("HostsFunction").items():
        monkeypatch.setenv(name, value)
    for name, value in _environment("RepairTriggerFunction").items():
        monkeypatch.setenv(name, value)
    for name, value in _environment("ReconcileFunction").items():
        monkeypatch.setenv(name, value)
    clear_caches()
    clear_reconcile_caches()
    monkeypatch.setenv("CLUSTER_NAME", "demo")
    monkeypatch.setenv("TOKEN_PARAMETER_PREFIX", "/swarmwarden/demo/tokens")
    monkeypatch.setenv("MANAGER_INSTANCE_PROFILE_ARN", instance_profiles["manager"])
    monkeypatch.setenv("WORKER_INSTANCE_PROFILE_ARN", instance_profiles["worker"])
    boto3.client("dynamodb").create_table(
        TableName="ClusterTable",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for name, value in _environment("ApiFunction").items():
        monkeypatch.setenv(name, value)
    boto3.client("dynamodb").create_table(
        TableName="IdempotencyTable",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for app in (swarm_app, custom_resource_app, scale_app):
        app.adapters.cache_clear()  # built from an earlier test's clients otherwise
    routes.api.cache_clear()
    routes._idempotency_store.cache_clear()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_roles_grant_every_call_the_functions_make(deployed_environment: None, ecs_ami: str) -> None:
    context = Context()
    spec = step_event("network-ensure_network")["spec"] | {"cluster_name": "demo", "ami_id": ecs_ami}
    with recording() as (calls, as_function):
        with as_function("NetworkFunction"):
            network = network_app.lambda_handler(step_event("network-ensure_network", spec=spec), context)
            network_app.lambda_handler(step_event("network-ensure_network", spec=spec), context)
            network_app.lambda_handler(step_event("network-ensure_ecs_cluster", spec=spec), context)
        with as_function("HostsFunction"):
            launch = step_event("hosts-launch", spec=spec, network=network, run_id="provision-demo-1")
            hosts = hosts_app.lambda_handler(launch, context)
        ids = hosts["instance_ids"]
        register_with_ecs(ids)
        with as_function("HostsFunction"), ssm_agents(ids, online=ids):
            hosts_app.lambda_handler(step_event("hosts-check_ready", spec=spec, instance_ids=ids), context)
        with as_function("SwarmFunction"), pytest.raises(SwarmwardenError):
            # moto runs no script, so the init "fails"; the calls made on the way are what counts.
            swarm_app.lambda_handler({"action": "init", "spec": spec, "seed": hosts["seed"]}, context)
        with as_function("SwarmFunction"):
            swarm_app.lambda_handler({"action": "delete_tokens", "spec": spec}, context)
        _api_requests(spec, hosts, context, as_function)
        exercise_repair(as_function, spec, hosts, context)
        _scale_steps(spec, network, hosts, context, as_function)
        exercise_reconcile(as_function, spec, hosts, context)
        with as_function("ClusterStateFunction"):
            cluster_state_app.lambda_handler({"action": "tearing_down", "spec": spec}, context)
            cluster_state_app.lambda_handler({"action": "torn_down", "spec": spec}, context)
        with as_function("CustomResourceFunction"):
            custom_resource_app.stored_data("demo")
            adapters = custom_resource_app.adapters()
            with pytest.raises(ClientError, match=r"StateMachineDoesNotExist"):
                adapters.workflows.start(adapters.provision_arn, "create-1", {})
        with as_function("HostsFunction"):
            hosts_app.lambda_handler(step_event("hosts-terminate_run", spec=spec, run_id="provision-demo-1"), context)
            hosts_app.lambda_handler(step_event("hosts-terminate_cluster", spec=spec), context)
            hosts_app.lambda_handler(step_event("hosts-check_terminated", spec=spec), context)
        with as_function("NetworkFunction"):
            network_app.lambda_handler(step_event("network-delete_network", spec=spec), context)
            network_app.lambda_handler(step_event("network-delete_ecs_cluster", spec=spec), context)

    assert {call.function for call in calls} == set(FUNCTIONS)
    missing = sorted(
        {(c.function, c.action) for c in calls if not _granted_somewhere(deployed_statements(c.function), c.action)}
    )
    assert not missing, f"calls the deployed roles would refuse: {missing}"
    untagged = sorted(
        {
            (c.function, c.action)
            for c in calls
            if _needs_request_tag(deployed_statements(c.function), c.action) and "demo" not in _request_tags(c)
        }
    )
    assert not untagged, f"create calls without the cluster tag that IAM requires: {untagged}"
    # The instances and their volumes carry the tag (RunTaggedInstances conditions both).
    (run,) = {c.action for c in calls if c.action == "ec2:RunInstances"}
    for call in (c for c in calls if c.action == run):
        tagged = {spec["ResourceType"] for spec in call.params["TagSpecifications"]}
        assert {"instance", "volume"} <= tagged


def _scale_steps(
    spec: dict[str, Any], network: dict[str, Any], hosts: dict[str, Any], context: Context, as_function: Any
) -> None:
    """The scale workflow's own steps, on a recorded cluster; moto runs no script, so no manager answers."""
    store = ClusterStore(aws.dynamodb(), "ClusterTable")
    store.put_cluster(ClusterSpec.model_validate(spec), ClusterStatus.READY, swarm_id="swarm-1")
    everyone = [Host.model_validate(h) for h in (hosts["seed"], *hosts["managers"], *hosts["workers"])]
    store.put_nodes("demo", everyone, [])
    worker = hosts["workers"][0]
    retirees = [{"host": worker, "node_id": "node-1"}]
    with as_function("ScaleFunction"):
        with pytest.raises(SwarmwardenError, match="no manager answered"):
            scale_app.lambda_handler({"action": "plan", "spec": spec, "network": network}, context)
        scale_app.lambda_handler({"action": "retire", "spec": spec, "retirees": retirees}, context)
        scale_app.lambda_handler({"action": "forget", "spec": spec, "retirees": retirees}, context)
    with as_function("HostsFunction"):
        terminate = {"action": "terminate_instances", "spec": spec, "instance_ids": [worker["instance_id"]]}
        assert hosts_app.lambda_handler(terminate, context)["terminated"] == [worker["instance_id"]]
    with as_function("CustomResourceFunction"):
        scale = custom_resource_app.adapters().scale
        with pytest.raises(ClientError, match=r"StateMachineDoesNotExist"):
            scale.workflows.start(scale.state_machine_arn, "update-1", {})
        scale.operations.acquire("demo", "update-1", OperationKind.SCALE, lease_seconds=60)
        scale.operations.release("demo", "update-1")


def _api_requests(spec: dict[str, Any], hosts: dict[str, Any], context: Context, as_function: Any) -> None:
    """Every route once, on a recorded ready cluster (moto runs no script: the swarm never answers)."""
    store = ClusterStore(aws.dynamodb(), "ClusterTable")
    store.put_cluster(ClusterSpec.model_validate(spec), ClusterStatus.READY)
    launched = {
        h["instance_id"]: Host.model_validate(h) for h in (hosts["seed"], *hosts["managers"], *hosts["workers"])
    }
    store.put_nodes("demo", launched.values(), [])
    answers = {}
    with as_function("ApiFunction"):
        for sample in ("get-cluster", "put-capacity", "get-operation", "list-services", "create-service",
                       "get-service", "delete-service"):  # fmt: skip
            event = json.loads((ROOT / "events" / f"http-api-v2-{sample}.json").read_text())
            answers[sample] = api_app.lambda_handler(event, context)["statusCode"]
    # Each got as far as its AWS calls: no crash, the scale reached StartExecution (no such machine here).
    assert answers == {
        "get-cluster": 200,
        "put-capacity": 503,
        "get-operation": 404,
        "list-services": 503,
        "create-service": 503,
        "get-service": 503,
        "delete-service": 503,
    }
