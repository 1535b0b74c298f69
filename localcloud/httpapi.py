"""API Gateway HTTP API, locally: a server on 127.0.0.1 that routes requests to the template's routes,
checks their SigV4 signature (every route uses AWS_IAM), and calls the function with a payload
format 2.0 event, mapping its response back the way API Gateway does.

Signatures are verified for real: the server recomputes the SigV4 signature of the request it
received with botocore, from the request's own `X-Amz-Date` and the headers its `Authorization`
names, with the local credentials, and compares.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from localcloud.template import Route

log = logging.getLogger(__name__)

Invoke = Callable[[str, dict[str, Any]], tuple[Any, str | None]]

SERVICE = "execute-api"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_CLOCK_SKEW = timedelta(minutes=5)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Bodies of these types reach the function as text; any other body arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")
_TEXT_SUFFIXES = ("+json", "+xml")
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret"
    " Access Key and signing method. Consult the service documentation for details."
)
# Hop-by-hop headers end at API Gateway; the function never sees them.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_UNKNOWN_CREDENTIALS = "The security token included in the request is invalid."


class HttpError(Exception):
    """Answered to the client as `{"message": ...}`, as API Gateway answers its own errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------- routes
@dataclass(frozen=True)
class _CompiledRoute:
    route: Route
    key: str
    segments: tuple[str, ...]

    @classmethod
    def of(cls, route: Route) -> _CompiledRoute:
        if route.path == "$default":
            return cls(route, "$default", ())
        segments = tuple(route.path.split("/")[1:])
        if any(s.endswith("+}") for s in segments[:-1]):
            raise ValueError(f"{route.method} {route.path}: a greedy path variable must be the last segment")
        return cls(route, f"{route.method.upper()} {route.path}", segments)

    @property
    def specificity(self) -> tuple[bool, bool, tuple[int, ...], bool]:
        """Higher wins: not $default, no greedy variable, literal segments before variables, a method before ANY."""
        if not self.segments:
            return (False, False, (), False)
        ranks = tuple(0 if s.endswith("+}") else 1 if s.startswith("{") else 2 for s in self.segments)
        return (True, 0 not in ranks, ranks, self.route.method.upper() != "ANY")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route takes the request, else None."""
        if not self.segments:
            return {}
        if self.route.method.upper() not in {"ANY", method}:
            return None
        requested = path.split("/")[1:]
        parameters: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = "/".join(requested[index:])
                if not rest:
                    return None
                parameters[segment[1:-2]] = unquote(rest)
                return parameters
            if index >= len(requested):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if not requested[index]:
                    return None
                parameters[segment[1:-1]] = unquote(requested[index])
            elif unquote(requested[index]) != segment:
                return None
        return parameters if len(requested) == len(self.segments) else None


def _select(routes: list[_CompiledRoute], method: str, path: str) -> tuple[_CompiledRoute, dict[str, str]]:
    candidates = [(r, p) for r in routes if (p := r.match(method, path)) is not None]
    if not candidates:
        raise HttpError(404, "Not Found")
    return max(candidates, key=lambda candidate: candidate[0].specificity)


# ---------------------------------------------------------------------------------- SigV4
def sign_request(
    method: str,
    url: str,
    body: bytes | str | None,
    headers: dict[str, str],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    session_token: str | None = None,
) -> dict[str, str]:
    """`headers` plus the SigV4 headers (`Authorization`, `X-Amz-Date`, ...) for an execute-api request."""
    request = AWSRequest(method=method.upper(), url=url, data=body or b"", headers=headers)
    SigV4Auth(Credentials(access_key, secret_key, session_token), SERVICE, region).add_auth(request)
    return dict(request.headers.items())


class _Verifier(SigV4Auth):
    """botocore's signer, told which headers the client signed instead of choosing them itself."""

    def __init__(self, credentials: Credentials, region: str, signed: HTTPHeaders) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed


@dataclass(frozen=True)
class Caller:
    """Who signed the request: what API Gateway puts in `requestContext.authorizer.iam`."""

    access_key: str
    account_id: str
    user_id: str
    user_arn: str

    def authorizer(self) -> dict[str, Any]:
        return {
            "iam": {
                "accessKey": self.access_key,
                "accountId": self.account_id,
                "callerId": self.user_id,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": self.user_arn,
                "userId": self.user_id,
            }
        }


def _parse_authorization(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    fields: dict[str, str] = {}
    if scheme == "AWS4-HMAC-SHA256":
        for item in rest.split(","):
            name, _, field = item.strip().partition("=")
            fields[name] = field
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if missing:
        raise HttpError(403, " ".join(f"Authorization header requires '{name}' parameter." for name in missing))
    return fields


# ---------------------------------------------------------------------------------- the server
@dataclass(frozen=True)
class Exchange:
    """One request the API answered, for the secrets scan and the bench."""

    request_id: str
    route_key: str | None
    status: int
    body: bytes


class HttpApiServer:
    """The template's HTTP API on 127.0.0.1; `invoke(function_arn, event) -> (result, error_type|None)`."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Invoke,
        *,
        region: str,
        account: str,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = "testing",
        secret_key: str = "testing",  # noqa: S107 - the local cloud's well-known fake credentials
        session_token: str | None = None,
        user_name: str = "local",
        api_id: str | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the local API listens on loopback only, not {host}")
        self.routes = [_CompiledRoute.of(route) for route in routes]
        self.region = region
        self.account = account
        self.api_id = api_id or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
        self.exchanges: list[Exchange] = []
        self.invoke = invoke
        self._credentials = Credentials(access_key, secret_key, session_token)
        user_id = "AIDA" + hashlib.sha256(access_key.encode()).hexdigest()[:17].upper()
        self._caller = Caller(access_key, account, user_id, f"arn:aws:iam::{account}:user/{user_name}")
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        server = ThreadingHTTPServer(self._address, _Handler)
        server.api = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll keeps stop() quick: shutdown() waits for the serving loop to look.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="localcloud-httpapi", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the HTTP API is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    # ------------------------------------------------------------------ authentication
    def authenticate(self, method: str, target: str, headers: Message[str, str], body: bytes) -> Caller:
        """The caller whose valid SigV4 signature the request carries, or an HttpError as API Gateway's."""
        authorization = headers.get("Authorization")
        if authorization is None:
            raise HttpError(403, "Forbidden")
        fields = _parse_authorization(authorization)
        access_key, _, scope = fields["Credential"].partition("/")
        date, region, service, terminator = ([*scope.split("/"), "", "", "", ""])[:4]
        token = headers.get("X-Amz-Security-Token")
        if access_key != self._credentials.access_key or token != self._credentials.token:
            raise HttpError(403, _UNKNOWN_CREDENTIALS)
        amz_date = headers.get("X-Amz-Date")
        if amz_date is None:
            raise HttpError(403, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        signed_at = self._check_date(amz_date, date)
        if region != self.region:
            raise HttpError(403, "Credential should be scoped to a valid region.")
        if service != SERVICE:
            raise HttpError(403, f"Credential should be scoped to correct service: '{SERVICE}'.")
        if terminator != "aws4_request":
            raise HttpError(
                403, f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
            )
        names = fields["SignedHeaders"].split(";")
        if "host" not in names:
            raise HttpError(403, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        self._check_skew(amz_date, signed_at)

        signed = HTTPHeaders()
        for name in names:
            for value in headers.get_all(name, []):
                signed[name] = value
        # The path and query exactly as received: the client signed them as it sent them.
        request = AWSRequest(method=method, url=f"http://{headers.get('Host', 'localhost')}{target}", data=body)
        request.context["timestamp"] = amz_date
        verifier = _Verifier(self._credentials, self.region, signed)
        canonical = verifier.canonical_request(request)
        string_to_sign = verifier.string_to_sign(request, canonical)
        expected = verifier.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise HttpError(
                403,
                f"{_SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{string_to_sign}'\n",
            )
        return self._caller

    @staticmethod
    def _check_date(amz_date: str, scope_date: str) -> datetime:
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise HttpError(
                403,
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            ) from None
        if scope_date != amz_date[:8]:
            raise HttpError(
                403,
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP:"
                f" '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        return signed_at

    @staticmethod
    def _check_skew(amz_date: str, signed_at: datetime) -> None:
        now = datetime.now(UTC)
        stamp = "%Y%m%dT%H%M%SZ"
        if signed_at < now - MAX_CLOCK_SKEW:
            raise HttpError(
                403,
                f"Signature expired: {amz_date} is now earlier than {(now - MAX_CLOCK_SKEW).strftime(stamp)}"
                f" ({now.strftime(stamp)} - 5 min.)",
            )
        if signed_at > now + MAX_CLOCK_SKEW:
            raise HttpError(
                403,
                f"Signature not yet current: {amz_date} is still later than {(now + MAX_CLOCK_SKEW).strftime(stamp)}"
                f" ({now.strftime(stamp)} + 5 min.)",
            )

    # ------------------------------------------------------------------ the event and the response
    def event(
        self,
        route: _CompiledRoute,
        path_parameters: dict[str, str],
        request: _Handler,
        body: bytes,
        caller: Caller,
        request_id: str,
    ) -> dict[str, Any]:
        """The payload format 2.0 event API Gateway would send the route's function."""
        raw_path, _, raw_query = request.path.partition("?")
        now = datetime.now(UTC)
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers.items():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "cookie":
                cookies += [c.strip() for c in value.split(";") if c.strip()]
            else:
                headers[name.lower()] = f"{headers[name.lower()]},{value}" if name.lower() in headers else value
        source_ip = request.client_address[0]
        headers["x-amzn-trace-id"] = f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}"
        headers["x-forwarded-for"] = source_ip
        headers["x-forwarded-port"] = str(self.port)
        headers["x-forwarded-proto"] = "http"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if raw_query:
            query: dict[str, str] = {}
            for name, value in parse_qsl(raw_query, keep_blank_values=True):
                query[name] = f"{query[name]},{value}" if name in query else value
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": self.account,
            "apiId": self.api_id,
            "authorizer": caller.authorizer(),
            "domainName": f"{self.api_id}.{SERVICE}.{self.region}.amazonaws.com",
            "domainPrefix": self.api_id,
            "http": {
                "method": request.command,
                "path": raw_path,
                "protocol": request.request_version,
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000",
            "timeEpoch": int(now.timestamp() * 1000),
        }
        encoded = False
        if body:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            text = content_type.startswith(_TEXT_TYPES) or content_type.endswith(_TEXT_SUFFIXES)
            try:
                event["body"] = body.decode() if text else base64.b64encode(body).decode()
                encoded = not text
            except UnicodeDecodeError:
                event["body"], encoded = base64.b64encode(body).decode(), True
        if path_parameters:
            event["pathParameters"] = path_parameters
        event["isBase64Encoded"] = encoded
        return event


def map_response(result: Any, error_type: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body API Gateway answers for a payload format 2.0 function result."""
    if error_type is not None:
        raise HttpError(500, "Internal Server Error")
    if not (isinstance(result, dict) and "statusCode" in result):
        # Any other JSON is the body of a 200.
        return 200, [("Content-Type", "application/json")], json.dumps(result).encode()
    status, headers, cookies, body = (result.get(k) for k in ("statusCode", "headers", "cookies", "body"))
    if (
        isinstance(status, bool)
        or not isinstance(status, int)
        or not 100 <= status <= 599
        or not isinstance(headers or {}, dict)
        or not isinstance(cookies or [], list)
        or not isinstance(body, str | None)
    ):
        log.warning("malformed payload format 2.0 response: %.200r", result)
        raise HttpError(500, "Internal Server Error")
    # API Gateway ignores multiValueHeaders in format 2.0; cookies become Set-Cookie headers.
    pairs = [(str(name), str(value)) for name, value in (headers or {}).items()]
    pairs += [("Set-Cookie", str(cookie)) for cookie in cookies or []]
    if any(c in text for pair in pairs for text in pair for c in "\r\n"):
        log.warning("response header with a line break: %.200r", pairs)
        raise HttpError(500, "Internal Server Error")
    if not any(name.lower() == "content-type" for name, _ in pairs):
        pairs.append(("Content-Type", "text/plain; charset=utf-8"))
    try:
        payload = (
            base64.b64decode(body or "", validate=True) if result.get("isBase64Encoded") else (body or "").encode()
        )
    except binascii.Error:
        log.warning("response claims isBase64Encoded but its body is not base64")
        raise HttpError(500, "Internal Server Error") from None
    return status, pairs, payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that stops sending mid-request releases its thread after this many seconds.
    timeout = 60

    def _serve(self) -> None:
        api: HttpApiServer = self.server.api  # type: ignore[attr-defined]
        # API Gateway's request ids look like this: 11 random bytes, base64.
        request_id = base64.b64encode(secrets.token_bytes(11)).decode()
        route_key: str | None = None
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                raise HttpError(400, "Bad Request") from None
            raw_path = self.path.partition("?")[0]
            route, path_parameters = _select(api.routes, self.command, raw_path)
            route_key = route.key
            caller = api.authenticate(self.command, self.path, self.headers, body)
            event = api.event(route, path_parameters, self, body, caller, request_id)
            try:
                result, error_type = api.invoke(route.route.function_arn, event)
            except Exception:
                log.exception("invoking %s for %s failed", route.route.function_arn, route.key)
                raise HttpError(500, "Internal Server Error") from None
            status, headers, payload = map_response(result, error_type)
        except HttpError as error:
            status, headers = error.status, [("Content-Type", "application/json")]
            payload = json.dumps({"message": error.message}, separators=(",", ":")).encode()
        api.record(Exchange(request_id, route_key, status, payload))
        # API Gateway sends no Server header, so not send_response().
        self.log_request(status)
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for name, value in headers:
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("apigw-requestid", request_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                length = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise HttpError(413, "Request Entity Too Large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413, "Request Entity Too Large")
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
