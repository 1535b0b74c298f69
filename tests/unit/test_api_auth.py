"""Every route of the HTTP API requires AWS_IAM (SigV4): in template.yaml as written, in what the SAM
transform makes of it (the OpenAPI body API Gateway is given), and in what the local cloud serves."""

from __future__ import annotations

import json
from typing import Any

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from localcloud.template import Template
from tests.unit.test_template import ROOT, resources, template, translated

# OpenAPI's operation keys; API Gateway adds its ANY method.
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "x-amazon-apigateway-any-method")
IAM = [{"AWS_IAM": []}]


def http_api_events(source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`Function.Event` -> the Properties of every HttpApi event in an untransformed template."""
    return {
        f"{name}.{event_name}": event.get("Properties", {})
        for name, resource in source["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event_name, event in resource["Properties"].get("Events", {}).items()
        if event["Type"] == "HttpApi"
    }


def written_problems(source: dict[str, Any]) -> list[str]:
    """What in an untransformed template leaves a route without IAM auth."""
    apis = {name: r for name, r in source["Resources"].items() if r["Type"] == "AWS::Serverless::HttpApi"}
    found = [
        f"{name}: Auth {api['Properties'].get('Auth')}"
        for name, api in apis.items()
        if api["Properties"].get("Auth", {}).get("DefaultAuthorizer") != "AWS_IAM"
        or api["Properties"].get("Auth", {}).get("EnableIamAuthorizer") is not True
    ]
    for name, properties in http_api_events(source).items():
        # Without ApiId, SAM puts the route on an implicit API that has no authorizer.
        if properties.get("ApiId") not in [{"Ref": api} for api in apis]:
            found.append(f"{name}: not on one of {sorted(apis)}")
        if properties.get("Auth", {}).get("Authorizer", "AWS_IAM") != "AWS_IAM":
            found.append(f"{name}: Authorizer {properties['Auth']['Authorizer']}")
    return found


def open_routes(deployed: dict[str, Any]) -> list[str]:
    """The routes of a transformed template that API Gateway would serve without IAM auth."""
    found = []
    for name, resource in deployed["Resources"].items():
        properties = resource.get("Properties", {})
        match resource["Type"]:
            case "AWS::ApiGatewayV2::Api":
                body = properties.get("Body")
                if body is None:
                    found.append(f"{name}: no inline OpenAPI body to check")
                    continue
                scheme = body.get("components", {}).get("securitySchemes", {}).get("AWS_IAM", {})
                if scheme.get("x-amazon-apigateway-authtype") != "awsSigv4":
                    found.append(f"{name}: AWS_IAM is not the awsSigv4 scheme: {scheme}")
                for path, item in body.get("paths", {}).items():
                    for method in METHODS:
                        if method in item and item[method].get("security") != IAM:
                            found.append(f"{name}: {method} {path}: security {item[method].get('security')}")
            case "AWS::ApiGatewayV2::Route":
                if properties.get("AuthorizationType") != "AWS_IAM":
                    found.append(f"{name}: {properties.get('RouteKey')}: {properties.get('AuthorizationType')}")
            case "AWS::ApiGateway::RestApi":
                found.append(f"{name}: a REST API (only IAM-authorized HTTP APIs are allowed)")
    return found


def translated_routes(deployed: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper().replace("X-AMAZON-APIGATEWAY-ANY-METHOD", "ANY"), path)
        for resource in deployed["Resources"].values()
        if resource["Type"] == "AWS::ApiGatewayV2::Api"
        for path, item in resource["Properties"].get("Body", {}).get("paths", {}).items()
        for method in item
        if method in METHODS
    }


def test_as_written_every_route_is_on_an_http_api_that_defaults_to_aws_iam_and_none_opts_out() -> None:
    assert any(r["Type"] == "AWS::Serverless::HttpApi" for r in resources().values())
    assert http_api_events(template()), "no HttpApi event in template.yaml"
    assert written_problems(template()) == []


def test_every_deployed_route_requires_aws_iam() -> None:
    deployed = translated()
    assert translated_routes(deployed), "the transform produced no routes"
    assert open_routes(deployed) == []


def test_the_local_cloud_serves_exactly_the_deployed_routes() -> None:
    local = Template.load(ROOT / "template.yaml", region="us-east-1")
    assert {(r.method, r.path) for r in local.routes()} == translated_routes(translated())


def test_the_check_finds_a_route_that_opts_out() -> None:
    """The checks are not vacuous: a route with `Authorizer: NONE` and one on the implicit API fail both."""
    function = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "s3://bucket/code.zip",
            "Handler": "app.handler",
            "Runtime": "python3.13",
            "Events": {
                "Guarded": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api"}, "Method": "GET", "Path": "/a"}},
                "Open": {
                    "Type": "HttpApi",
                    "Properties": {
                        "ApiId": {"Ref": "Api"},
                        "Method": "GET",
                        "Path": "/b",
                        "Auth": {"Authorizer": "NONE"},
                    },
                },
                "Implicit": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/c"}},
            },
        },
    }
    api = {
        "Type": "AWS::Serverless::HttpApi",
        "Properties": {"Auth": {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}},
    }
    source = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Api": api, "Fn": function}}

    class NoManagedPolicyLookups:
        def load(self) -> dict[str, str]:
            return {}

    assert written_problems(source) == ["Fn.Open: Authorizer NONE", "Fn.Implicit: not on one of ['Api']"]
    deployed = transform(json.loads(json.dumps(source)), {}, NoManagedPolicyLookups())
    found = open_routes(deployed)
    assert any("get /b" in line for line in found), found
    assert any("get /c" in line for line in found), found
    assert not any("/a" in line for line in found), found
