"""Reads template.yaml the way CloudFormation would for the resources the local cloud emulates.

Nothing here knows our function or state machine names: adding one to the template needs no
change in the local cloud. Intrinsic functions are resolved against parameters and local
physical names and ARNs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

ACCOUNT = "123456789012"
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something the local cloud cannot resolve; the message names it."""


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str
    definition: str


@dataclass(frozen=True)
class Rule:
    """An EventBridge rule or schedule, whether written as a SAM event or as AWS::Events::Rule."""

    logical_id: str
    pattern: dict[str, Any] | None
    schedule: str | None
    target_arns: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function_arn: str


@dataclass
class Template:
    path: Path
    region: str
    stack_name: str
    parameters: dict[str, str]
    resources: dict[str, dict[str, Any]]
    globals: dict[str, Any]
    conditions: dict[str, bool] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        region: str = "us-east-1",
        stack_name: str = "swarmwarden",
        overrides: Mapping[str, str] | None = None,
        resolve_ssm: Callable[[str], str] | None = None,
    ) -> Template:
        document = cfn_yaml.load(str(path))
        parameters: dict[str, str] = {}
        for name, declared in document.get("Parameters", {}).items():
            value = str((overrides or {}).get(name, declared.get("Default", "")))
            if declared.get("Type", "").startswith("AWS::SSM::Parameter::Value") and resolve_ssm:
                value = resolve_ssm(value)
            parameters[name] = value
        unknown = set(overrides or {}) - set(parameters)
        if unknown:
            raise TemplateError(f"unknown parameters: {', '.join(sorted(unknown))}")
        template = cls(
            path=path,
            region=region,
            stack_name=stack_name,
            parameters=parameters,
            resources=dict(document.get("Resources", {})),
            globals=dict(document.get("Globals", {})),
        )
        template.conditions = {
            name: bool(template.resolve(expression)) for name, expression in document.get("Conditions", {}).items()
        }
        return template

    @property
    def root(self) -> Path:
        return self.path.parent

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") == resource_type}

    # ------------------------------------------------------------------ names and ARNs
    def physical_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        properties = resource.get("Properties", {})
        for key in ("Name", "FunctionName", "TableName", "QueueName", "TopicName", "RoleName", "LogGroupName"):
            if key in properties:
                return str(self.resolve(properties[key]))
        return f"{self.stack_name}-{logical_id}"

    def ref(self, logical_id: str) -> str:
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id not in self.resources:
            raise TemplateError(f"!Ref {logical_id}: no such parameter or resource")
        kind = self.resources[logical_id]["Type"]
        if kind in {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"}:
            return self.arn(logical_id)
        if kind == "AWS::SQS::Queue":
            return f"http://sqs.{self.region}.localhost/{ACCOUNT}/{self.physical_name(logical_id)}"
        return self.physical_name(logical_id)

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        service = {
            "AWS::Serverless::Function": f"lambda:{self.region}:{ACCOUNT}:function:{name}",
            "AWS::Lambda::Function": f"lambda:{self.region}:{ACCOUNT}:function:{name}",
            "AWS::Serverless::StateMachine": f"states:{self.region}:{ACCOUNT}:stateMachine:{name}",
            "AWS::StepFunctions::StateMachine": f"states:{self.region}:{ACCOUNT}:stateMachine:{name}",
            "AWS::DynamoDB::Table": f"dynamodb:{self.region}:{ACCOUNT}:table/{name}",
            "AWS::IAM::Role": f"iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::InstanceProfile": f"iam::{ACCOUNT}:instance-profile/{name}",
            "AWS::Logs::LogGroup": f"logs:{self.region}:{ACCOUNT}:log-group:{name}:*",
            "AWS::SQS::Queue": f"sqs:{self.region}:{ACCOUNT}:{name}",
            "AWS::SNS::Topic": f"sns:{self.region}:{ACCOUNT}:{name}",
            "AWS::Serverless::HttpApi": f"execute-api:{self.region}:{ACCOUNT}:{name}",
        }.get(kind)
        if service is None:
            raise TemplateError(f"{logical_id}: the local cloud has no ARN for {kind}")
        return f"arn:aws:{service}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id in self.attributes:
            try:
                return self.attributes[logical_id][attribute]
            except KeyError:
                raise TemplateError(
                    f"!GetAtt {logical_id}.{attribute}: the resource returned no such attribute"
                ) from None
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute in {"Name", "QueueName", "TopicName"}:
            return self.physical_name(logical_id)
        raise TemplateError(f"!GetAtt {logical_id}.{attribute}: not known before the resource exists")

    # ------------------------------------------------------------------ intrinsic functions
    def resolve(self, value: Any) -> Any:
        """Resolves intrinsic functions; AWS::NoValue comes back as None and is dropped from containers."""
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(argument)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not None}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda name: None if name == "AWS::NoValue" else self.ref(name),
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda args: str(args[0]).join(str(v) for v in self.resolve(args[1])),
            "Fn::If": lambda args: self.resolve(args[1] if self.conditions[args[0]] else args[2]),
            "Fn::Equals": lambda args: str(self.resolve(args[0])) == str(self.resolve(args[1])),
            "Fn::Not": lambda args: not self.resolve(args[0]),
            "Fn::And": lambda args: all(self.resolve(a) for a in args),
            "Fn::Or": lambda args: any(self.resolve(a) for a in args),
            "Fn::Select": lambda args: self.resolve(args[1])[int(self.resolve(args[0]))],
            "Condition": lambda name: self.conditions[name],
        }

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        return self.get_att(logical_id, attribute)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], self.resolve(argument[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    # ------------------------------------------------------------------ what the local cloud runs
    def functions(self) -> list[Function]:
        defaults = self.globals.get("Function", {})
        found = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            properties = resource.get("Properties", {})
            environment = {
                **self.resolve(defaults.get("Environment", {}).get("Variables", {})),
                **self.resolve(properties.get("Environment", {}).get("Variables", {})),
            }
            module, _, _ = str(properties.get("Handler", defaults.get("Handler", ""))).partition(".")
            if not module:
                raise TemplateError(f"{logical_id} has no Handler")
            found.append(
                Function(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    arn=self.arn(logical_id),
                    code_dir=self.root / str(properties["CodeUri"]),
                    handler=str(properties.get("Handler", defaults.get("Handler"))),
                    timeout_seconds=int(properties.get("Timeout", defaults.get("Timeout", 3))),
                    memory_mb=int(properties.get("MemorySize", defaults.get("MemorySize", 128))),
                    environment={k: str(v) for k, v in environment.items()},
                    events=dict(properties.get("Events", {})),
                )
            )
        return found

    def state_machines(self) -> list[StateMachine]:
        found = []
        for logical_id, resource in self.of_type("AWS::Serverless::StateMachine").items():
            properties = resource.get("Properties", {})
            definition = (self.root / str(properties["DefinitionUri"])).read_text()
            substitutions = self.resolve(properties.get("DefinitionSubstitutions", {}))
            for key, value in substitutions.items():
                definition = definition.replace("${" + key + "}", str(value))
            leftover = _SUB_VARIABLE.findall(definition)
            if leftover:
                raise TemplateError(f"{logical_id}: no substitution for {', '.join(sorted(set(leftover)))}")
            json.loads(definition)
            found.append(
                StateMachine(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    arn=self.arn(logical_id),
                    definition=definition,
                )
            )
        return found

    def rules(self) -> list[Rule]:
        """EventBridge rules and schedules: SAM events on functions and state machines, and plain rules."""
        found: list[Rule] = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") not in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
                continue
            for event_id, event in resource.get("Properties", {}).get("Events", {}).items():
                properties = self.resolve(event.get("Properties", {}))
                if event.get("Type") == "EventBridgeRule":
                    found.append(
                        Rule(f"{logical_id}{event_id}", properties.get("Pattern"), None, (self.arn(logical_id),))
                    )
                elif event.get("Type") in {"Schedule", "ScheduleV2"}:
                    schedule = properties.get("Schedule") or properties.get("ScheduleExpression")
                    found.append(Rule(f"{logical_id}{event_id}", None, schedule, (self.arn(logical_id),)))
        for logical_id, resource in self.of_type("AWS::Events::Rule").items():
            properties = self.resolve(resource.get("Properties", {}))
            if properties.get("State", "ENABLED") != "ENABLED":
                continue
            targets = tuple(str(t["Arn"]) for t in properties.get("Targets", []))
            found.append(
                Rule(logical_id, properties.get("EventPattern"), properties.get("ScheduleExpression"), targets)
            )
        return found

    def routes(self) -> list[Route]:
        found = []
        for function in self.functions():
            for event in function.events.values():
                if event.get("Type") == "HttpApi":
                    properties = self.resolve(event.get("Properties", {}))
                    found.append(
                        Route(
                            str(properties.get("Method", "ANY")).upper(), str(properties.get("Path", "/")), function.arn
                        )
                    )
        return found
