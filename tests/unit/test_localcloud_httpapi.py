"""The local HTTP API: real HTTP requests on 127.0.0.1, events shaped as API Gateway's payload format 2.0,
SigV4 verified for real, and responses mapped back as API Gateway maps them."""

import base64
import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest

from localcloud.httpapi import HttpApiServer, sign_request
from localcloud.template import Route

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION, ACCOUNT = "us-east-1", "123456789012"
API_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:swarmwarden-api"
ROUTES = [
    Route("GET", "/cluster", API_ARN),
    Route("PUT", "/cluster/capacity", API_ARN),
    Route("GET", "/operations/{id}", API_ARN),
    Route("GET", "/services", API_ARN),
    Route("POST", "/services", API_ARN),
    Route("GET", "/services/{name}", API_ARN),
    Route("DELETE", "/services/{name}", API_ARN),
    Route("GET", "/files/{proxy+}", API_ARN),
]


@dataclass
class FakeFunction:
    """Stands in for LambdaRuntime.invoke: records each event and answers what the test says."""

    result: Any = field(default_factory=lambda: {"statusCode": 200, "body": "{}"})
    error_type: str | None = None
    raises: Exception | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def __call__(self, function_arn: str, event: dict[str, Any]) -> tuple[Any, str | None]:
        self.targets.append(function_arn)
        self.events.append(json.loads(json.dumps(event)))
        if self.raises is not None:
            raise self.raises
        return self.result, self.error_type


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    *,
    sign: bool = True,
    access_key: str = "testing",
    secret_key: str = "testing",  # noqa: S107 - the local cloud's fake credentials
    region: str = REGION,
) -> Reply:
    """One request over a fresh connection; signed with the local credentials unless told otherwise."""
    headers = dict(headers or {})
    if sign:
        headers = sign_request(
            method, url + path, body, headers, access_key=access_key, secret_key=secret_key, region=region
        )
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


@pytest.fixture
def function() -> FakeFunction:
    return FakeFunction()


@pytest.fixture
def api(function: FakeFunction) -> Iterator[HttpApiServer]:
    server = HttpApiServer(ROUTES, function, region=REGION, account=ACCOUNT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what API Gateway fixes about an event, leaving out the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


# ---------------------------------------------------------------------------------- the event
def test_a_put_becomes_the_event_api_gateway_sends(api: HttpApiServer, function: FakeFunction) -> None:
    sample = json.loads((EVENTS / "http-api-v2-put-capacity.json").read_text())
    reply = call(
        api.url,
        "PUT",
        "/cluster/capacity",
        sample["body"],
        {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "swarmwarden-cli/0.1.0",
            "Idempotency-Key": sample["headers"]["idempotency-key"],
        },
    )
    assert reply.status == 200, reply.body
    (event,) = function.events
    assert function.targets == [API_ARN]
    assert shape(event) == shape(sample)
    assert list(event) == list(sample)
    assert list(event["requestContext"]) == list(sample["requestContext"])

    assert event["version"] == "2.0"
    assert event["routeKey"] == "PUT /cluster/capacity"
    assert event["rawPath"] == "/cluster/capacity"
    assert event["rawQueryString"] == ""
    assert event["body"] == '{"managers": 3, "workers": 5}'
    assert event["isBase64Encoded"] is False
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    host = urlsplit(api.url).netloc
    assert headers["host"] == host
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == "29"
    assert headers["idempotency-key"] == sample["headers"]["idempotency-key"]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"])
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", headers["x-amzn-trace-id"])
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(api.port)
    assert headers["x-forwarded-proto"] == "http"

    context = event["requestContext"]
    assert context["accountId"] == ACCOUNT
    assert re.fullmatch(r"[a-z0-9]{10}", context["apiId"])
    assert context["apiId"] == api.api_id
    assert context["domainName"] == f"{api.api_id}.execute-api.{REGION}.amazonaws.com"
    assert context["domainPrefix"] == api.api_id
    assert context["http"] == {
        "method": "PUT",
        "path": "/cluster/capacity",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "swarmwarden-cli/0.1.0",
    }
    assert re.fullmatch(r"[A-Za-z0-9+/]{15}=", context["requestId"])
    assert reply.headers["apigw-requestid"] == context["requestId"]
    assert context["routeKey"] == "PUT /cluster/capacity"
    assert context["stage"] == "$default"
    at = datetime.strptime(context["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(at.timestamp() * 1000 - context["timeEpoch"]) < 1000
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    iam = context["authorizer"]["iam"]
    assert iam == {
        "accessKey": "testing",
        "accountId": ACCOUNT,
        "callerId": iam["userId"],
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{ACCOUNT}:user/local",
        "userId": iam["userId"],
    }
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", iam["userId"])


def test_a_get_without_body_has_no_body_field(api: HttpApiServer, function: FakeFunction) -> None:
    sample = json.loads((EVENTS / "http-api-v2-get-cluster.json").read_text())
    reply = call(
        api.url, "GET", "/cluster", None, {"Accept": "application/json", "User-Agent": "swarmwarden-cli/0.1.0"}
    )
    assert reply.status == 200
    (event,) = function.events
    assert shape(event) == shape(sample)
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event
    assert "cookies" not in event
    assert event["isBase64Encoded"] is False


def test_queries_headers_and_cookies_are_folded_as_api_gateway_folds_them(
    api: HttpApiServer, function: FakeFunction
) -> None:
    connection = http.client.HTTPConnection(urlsplit(api.url).netloc, timeout=10)
    path = "/services?tag=a&tag=b&empty=&flag&name=web%20app"
    connection.putrequest("GET", path)
    for name, value in [
        ("X-Multi", "one"),
        ("x-multi", "two"),
        ("Cookie", "session=abc; theme=dark"),
        ("Cookie", "lang=en"),
    ]:
        connection.putheader(name, value)
    signed = sign_request("GET", api.url + path, None, {}, access_key="testing", secret_key="testing", region=REGION)
    for name, value in signed.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    (event,) = function.events
    assert event["rawQueryString"] == "tag=a&tag=b&empty=&flag&name=web%20app"
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": "", "flag": "", "name": "web app"}
    assert event["headers"]["x-multi"] == "one,two"
    assert event["cookies"] == ["session=abc", "theme=dark", "lang=en"]
    assert "cookie" not in event["headers"]
    assert "connection" not in event["headers"]


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/json", b'{"a": 1}', False),
        ("text/plain; charset=utf-8", "héllo".encode(), False),
        ("application/problem+json", b"{}", False),
        ("application/octet-stream", b"\x00\x01\xff", True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),
        ("text/plain", b"\xff\xfe not utf-8", True),
    ],
)
def test_non_text_bodies_arrive_base64_encoded(
    api: HttpApiServer, function: FakeFunction, content_type: str, body: bytes, encoded: bool
) -> None:
    assert call(api.url, "POST", "/services", body, {"Content-Type": content_type}).status == 200
    (event,) = function.events
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == body


def test_a_chunked_body_is_read_whole(api: HttpApiServer, function: FakeFunction) -> None:
    body = b'{"name": "web", "image": "local/busybox"}'
    url = api.url + "/services"
    headers = sign_request(
        "POST",
        url,
        body,
        {"Content-Type": "application/json"},
        access_key="testing",
        secret_key="testing",
        region=REGION,
    )
    connection = http.client.HTTPConnection(urlsplit(api.url).netloc, timeout=10)
    connection.request("POST", "/services", body=iter([body[:10], body[10:]]), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    assert function.events[0]["body"] == body.decode()


# ---------------------------------------------------------------------------------- routes
@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/operations/op-42", "GET /operations/{id}", {"id": "op-42"}),
        ("GET", "/services/my%20svc", "GET /services/{name}", {"name": "my svc"}),
        ("DELETE", "/services/web", "DELETE /services/{name}", {"name": "web"}),
        ("GET", "/files/a/b/c.txt", "GET /files/{proxy+}", {"proxy": "a/b/c.txt"}),
        ("GET", "/services", "GET /services", None),
    ],
)
def test_path_parameters(
    api: HttpApiServer, function: FakeFunction, method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    assert call(api.url, method, path).status == 200
    (event,) = function.events
    assert event["routeKey"] == route_key
    assert event["requestContext"]["routeKey"] == route_key
    assert event["rawPath"] == path
    assert event.get("pathParameters") == parameters


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/cluster"),
        ("GET", "/operations"),
        ("GET", "/operations/a/b"),
        ("GET", "/files"),
        ("GET", "/files/"),
        ("GET", "/"),
    ],
)
def test_no_route_is_a_404_before_any_auth(api: HttpApiServer, function: FakeFunction, method: str, path: str) -> None:
    for sign in (True, False):
        reply = call(api.url, method, path, sign=sign)
        assert reply.status == 404
        assert reply.body == b'{"message":"Not Found"}'
        assert reply.headers["Content-Type"] == "application/json"
    assert function.events == []


# The example from API Gateway's "Working with routes for HTTP APIs".
PRECEDENCE_ROUTES = [
    Route("GET", "/pets/dog/1", "arn:exact"),
    Route("GET", "/pets/dog/{id}", "arn:param"),
    Route("GET", "/pets/{proxy+}", "arn:pets-greedy"),
    Route("ANY", "/{proxy+}", "arn:any-greedy"),
    Route("ANY", "/pets/cat", "arn:any-cat"),
    Route("GET", "/pets/cat", "arn:get-cat"),
    Route("ANY", "$default", "arn:default"),
]


@pytest.mark.parametrize(
    ("method", "path", "target", "route_key"),
    [
        ("GET", "/pets/dog/1", "arn:exact", "GET /pets/dog/1"),
        ("GET", "/pets/dog/2", "arn:param", "GET /pets/dog/{id}"),
        ("GET", "/pets/cat/1", "arn:pets-greedy", "GET /pets/{proxy+}"),
        ("POST", "/pets/cat/1", "arn:any-greedy", "ANY /{proxy+}"),
        ("GET", "/pets/cat", "arn:get-cat", "GET /pets/cat"),
        ("PUT", "/pets/cat", "arn:any-cat", "ANY /pets/cat"),
        ("GET", "/", "arn:default", "$default"),
    ],
)
def test_the_most_specific_route_wins(method: str, path: str, target: str, route_key: str) -> None:
    function = FakeFunction()
    server = HttpApiServer(PRECEDENCE_ROUTES, function, region=REGION, account=ACCOUNT)
    server.start()
    try:
        assert call(server.url, method, path).status == 200
    finally:
        server.stop()
    assert function.targets == [target]
    assert function.events[0]["routeKey"] == route_key


def test_a_greedy_variable_must_come_last() -> None:
    with pytest.raises(ValueError, match="greedy"):
        HttpApiServer([Route("GET", "/{proxy+}/x", API_ARN)], FakeFunction(), region=REGION, account=ACCOUNT)


# ---------------------------------------------------------------------------------- auth
def test_an_unsigned_request_is_forbidden(api: HttpApiServer, function: FakeFunction) -> None:
    reply = call(api.url, "GET", "/cluster", sign=False)
    assert reply.status == 403
    assert reply.body == b'{"message":"Forbidden"}'
    assert function.events == []


def signed_then(
    api: HttpApiServer, change: str, method: str = "PUT", path: str = "/cluster/capacity"
) -> tuple[str, bytes, dict[str, str]]:
    body = b'{"managers": 3, "workers": 5}'
    headers = sign_request(
        method,
        api.url + path,
        body,
        {"Content-Type": "application/json"},
        access_key="testing",
        secret_key="testing",
        region=REGION,
    )
    if change == "body":
        body = b'{"managers": 3, "workers": 50}'
    elif change == "path":
        path = "/cluster/capacity?workers=9"
    elif change == "signed header":
        headers["Content-Type"] = "text/plain"
    elif change == "signature":
        headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    return path, body, headers


@pytest.mark.parametrize("change", ["body", "path", "signed header", "signature"])
def test_a_request_changed_after_signing_is_forbidden(api: HttpApiServer, function: FakeFunction, change: str) -> None:
    path, body, headers = signed_then(api, change)
    reply = call(api.url, "PUT", path, body, headers, sign=False)
    assert reply.status == 403
    message = reply.json()["message"]
    assert message.startswith(
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )
    assert "The Canonical String for this request should have been" in message
    assert function.events == []


def test_an_unsigned_header_may_change(api: HttpApiServer, function: FakeFunction) -> None:
    path, body, headers = signed_then(api, "nothing")
    headers["User-Agent"] = "changed in flight"
    assert call(api.url, "PUT", path, body, headers, sign=False).status == 200


def test_the_wrong_secret_is_forbidden(api: HttpApiServer, function: FakeFunction) -> None:
    reply = call(api.url, "GET", "/cluster", secret_key="not-the-secret")
    assert reply.status == 403
    assert reply.json()["message"].startswith("The request signature we calculated does not match")
    assert function.events == []


@pytest.mark.parametrize(
    ("access_key", "region", "message"),
    [
        ("AKIAUNKNOWN", REGION, "The security token included in the request is invalid."),
        ("testing", "eu-west-1", "Credential should be scoped to a valid region."),
    ],
)
def test_the_wrong_credential_scope_is_forbidden(
    api: HttpApiServer, function: FakeFunction, access_key: str, region: str, message: str
) -> None:
    reply = call(api.url, "GET", "/cluster", access_key=access_key, region=region)
    assert reply.status == 403
    assert reply.json() == {"message": message}


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Bearer abc", "Authorization header requires 'Credential' parameter."),
        (
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/execute-api/aws4_request",
            "Authorization header requires 'Signature' parameter. "
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
    ],
)
def test_a_malformed_authorization_is_forbidden(api: HttpApiServer, authorization: str, message: str) -> None:
    reply = call(api.url, "GET", "/cluster", headers={"Authorization": authorization}, sign=False)
    assert reply.status == 403
    assert reply.json()["message"].startswith(message)


def test_a_signature_for_another_service_or_without_host_is_forbidden(api: HttpApiServer) -> None:
    headers = sign_request(
        "GET", api.url + "/cluster", None, {}, access_key="testing", secret_key="testing", region=REGION
    )
    other = {**headers, "Authorization": headers["Authorization"].replace("/execute-api/", "/lambda/")}
    assert call(api.url, "GET", "/cluster", headers=other, sign=False).json() == {
        "message": "Credential should be scoped to correct service: 'execute-api'."
    }
    hostless = {**headers, "Authorization": headers["Authorization"].replace("SignedHeaders=host;", "SignedHeaders=")}
    assert (
        "'Host' or ':authority' must be a 'SignedHeader'"
        in call(api.url, "GET", "/cluster", headers=hostless, sign=False).json()["message"]
    )
    undated = {k: v for k, v in headers.items() if k != "X-Amz-Date"}
    assert (
        "'X-Amz-Date' or a 'Date' header"
        in call(api.url, "GET", "/cluster", headers=undated, sign=False).json()["message"]
    )


@pytest.mark.parametrize(("skew", "message"), [(-10, "Signature expired"), (10, "Signature not yet current")])
def test_a_signature_outside_five_minutes_is_forbidden(
    api: HttpApiServer, monkeypatch: pytest.MonkeyPatch, skew: int, message: str
) -> None:
    moment = datetime.now(UTC) + timedelta(minutes=skew)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))
    reply = call(api.url, "GET", "/cluster")
    assert reply.status == 403
    assert reply.json()["message"].startswith(f"{message}: {moment:%Y%m%dT%H%M%SZ} is ")


def test_a_session_token_must_be_the_servers(function: FakeFunction) -> None:
    server = HttpApiServer(
        ROUTES,
        function,
        region=REGION,
        account=ACCOUNT,
        access_key="AKIDLOCAL",
        secret_key="s3cret",
        session_token="tok",
    )
    server.start()
    try:
        url = server.url + "/cluster"
        for token, status in [("tok", 200), ("other", 403), (None, 403)]:
            headers = sign_request(
                "GET", url, None, {}, access_key="AKIDLOCAL", secret_key="s3cret", region=REGION, session_token=token
            )
            assert call(server.url, "GET", "/cluster", headers=headers, sign=False).status == status, token
    finally:
        server.stop()
    assert function.events[0]["requestContext"]["authorizer"]["iam"]["accessKey"] == "AKIDLOCAL"


def test_sign_request_adds_the_sigv4_headers() -> None:
    headers = sign_request(
        "put",
        "http://127.0.0.1:8080/cluster/capacity",
        '{"workers": 4}',
        {"Content-Type": "application/json"},
        access_key="testing",
        secret_key="testing",
        region=REGION,
    )
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["X-Amz-Date"])
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=testing/\d{8}/us-east-1/execute-api/aws4_request, "
        r"SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}",
        headers["Authorization"],
    )


# ---------------------------------------------------------------------------------- responses
@pytest.mark.parametrize(
    ("result", "status", "headers", "body"),
    [
        (
            {"statusCode": 202, "headers": {"Content-Type": "application/json", "X-Op": 7}, "body": '{"id": "op-1"}'},
            202,
            {"Content-Type": "application/json", "X-Op": "7"},
            b'{"id": "op-1"}',
        ),
        ({"statusCode": 204}, 204, {}, b""),
        ({"statusCode": 200, "body": "hi"}, 200, {"Content-Type": "text/plain; charset=utf-8"}, b"hi"),
        (
            {
                "statusCode": 200,
                "headers": {"content-type": "image/png"},
                "body": "iVBORw0KGgo=",
                "isBase64Encoded": True,
            },
            200,
            {"Content-Type": "image/png"},
            b"\x89PNG\r\n\x1a\n",
        ),
        ({"ok": True, "nodes": 5}, 200, {"Content-Type": "application/json"}, b'{"ok": true, "nodes": 5}'),
        ("just a string", 200, {"Content-Type": "application/json"}, b'"just a string"'),
        ([1, 2], 200, {"Content-Type": "application/json"}, b"[1, 2]"),
        (
            {"statusCode": 409, "multiValueHeaders": {"X-Ignored": ["a"]}, "body": "{}", "headers": {"A": "b"}},
            409,
            {"A": "b", "X-Ignored": None},
            b"{}",
        ),
    ],
)
def test_payload_format_2_responses(
    api: HttpApiServer,
    function: FakeFunction,
    result: Any,
    status: int,
    headers: dict[str, str | None],
    body: bytes,
) -> None:
    function.result = result
    reply = call(api.url, "GET", "/cluster")
    assert reply.status == status
    assert reply.body == body
    for name, value in headers.items():
        assert reply.headers.get(name) == value
    assert reply.headers["Content-Length"] == str(len(body))
    assert "Server" not in reply.headers


def test_cookies_become_set_cookie_headers(api: HttpApiServer, function: FakeFunction) -> None:
    function.result = {"statusCode": 200, "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": ""}
    reply = call(api.url, "GET", "/cluster")
    assert reply.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "two hundred"},
        {"statusCode": 99},
        {"statusCode": True},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["X-A", "b"]},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
        {"statusCode": 200, "headers": {"X-A": "b\r\nSet-Cookie: injected=1"}},
    ],
)
def test_a_malformed_response_is_a_500(api: HttpApiServer, function: FakeFunction, result: Any) -> None:
    function.result = result
    reply = call(api.url, "GET", "/cluster")
    assert reply.status == 500
    assert reply.body == b'{"message":"Internal Server Error"}'


def test_a_function_error_is_hidden_behind_a_500(api: HttpApiServer, function: FakeFunction) -> None:
    function.result = {"errorMessage": "token SWMTKN-1-abc leaked", "errorType": "RuntimeError", "stackTrace": []}
    function.error_type = "RuntimeError"
    reply = call(api.url, "GET", "/cluster")
    assert reply.status == 500
    assert reply.body == b'{"message":"Internal Server Error"}'
    assert reply.headers["Content-Type"] == "application/json"
    assert b"SWMTKN" not in b"".join(exchange.body for exchange in api.exchanges)


def test_an_invoke_that_raises_is_a_500(api: HttpApiServer, function: FakeFunction) -> None:
    function.raises = KeyError("no function in the template")
    reply = call(api.url, "GET", "/cluster")
    assert reply.status == 500
    assert reply.json() == {"message": "Internal Server Error"}


def test_every_exchange_is_recorded(api: HttpApiServer, function: FakeFunction) -> None:
    call(api.url, "GET", "/cluster")
    call(api.url, "GET", "/nope")
    call(api.url, "GET", "/cluster", sign=False)
    assert [(e.route_key, e.status) for e in api.exchanges] == [
        ("GET /cluster", 200),
        (None, 404),
        ("GET /cluster", 403),
    ]


def test_a_negative_content_length_is_a_400(api: HttpApiServer, function: FakeFunction) -> None:
    reply = call(api.url, "POST", "/services", headers={"Content-Length": "-5"}, sign=False)
    assert reply.status == 400
    assert reply.json() == {"message": "Bad Request"}
    assert function.events == []


def test_an_oversized_body_is_refused_unread(api: HttpApiServer, function: FakeFunction) -> None:
    reply = call(api.url, "POST", "/services", headers={"Content-Length": str(11 * 1024 * 1024)}, sign=False)
    assert reply.status == 413
    assert reply.json() == {"message": "Request Entity Too Large"}
    assert function.events == []


# ---------------------------------------------------------------------------------- the server
def test_the_server_listens_on_loopback_only(function: FakeFunction) -> None:
    with pytest.raises(ValueError, match="loopback"):
        HttpApiServer(ROUTES, function, region=REGION, account=ACCOUNT, host="0.0.0.0")  # noqa: S104 - refused, which is the point
    server = HttpApiServer(ROUTES, function, region=REGION, account=ACCOUNT)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    server.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server.port > 0
    finally:
        server.stop()
    server.stop()


def test_keep_alive_connections_serve_several_requests(api: HttpApiServer, function: FakeFunction) -> None:
    connection = http.client.HTTPConnection(urlsplit(api.url).netloc, timeout=10)
    try:
        for _ in range(3):
            headers = sign_request(
                "GET", api.url + "/cluster", None, {}, access_key="testing", secret_key="testing", region=REGION
            )
            connection.request("GET", "/cluster", headers=headers)
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()
    assert len(function.events) == 3
