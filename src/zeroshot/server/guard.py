"""Server-wide request checks that no route should have to repeat, and the last line of defence.

`RequestGuard` (outermost after the body-size limit) refuses, before any route runs:
- a `Host` that is not this machine, and a cross-site `Origin`, when the server has no API key (a
  DNS-rebinding page or any web page could otherwise use it; the same rule as Jupyter's and Ollama's);
- JSON that is not UTF-8, nested deeper than `MAX_JSON_DEPTH`, holds integers longer than
  `MAX_INT_DIGITS`, NaN/Infinity, or strings with lone surrogates (which no file system, tokenizer or
  encoder accepts).
It reads a JSON body once, checks it, and hands the same bytes on, so FastAPI's own parsing and the
vision routes' `parse_body` see only what passed.

`LastResort` turns any exception that still escapes a route into a JSON 500 that says
`Connection: close`, so a client on a keep-alive connection reconnects instead of failing its next
request on a socket the server is about to drop.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("zeroshot.server")

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 100
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_json_text(body: bytes) -> None:
    """Raise `BadRequest` (400) unless `body` is JSON every route can take apart safely."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the request body is not UTF-8 (byte {exc.start})") from None
    # Depth is counted before parsing: json.loads itself recurses and would overflow the stack.
    _check_depth(text)
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
    except BadRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"the request body is not valid JSON: {exc}") from None
    _check_strings(data)


def _check_depth(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be too deep: skip the scan
    brackets = _BRACKETS.sub("", _STRINGS.sub("", text))  # strings may hold brackets: drop them first
    depth = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[^\[\]{}]")


def _no_constant(name: str) -> float:
    raise BadRequest(400, f"the request body holds {name}, which is not a JSON number")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(400, f"the request body holds an integer of {len(digits)} digits; at most "
                              f"{MAX_INT_DIGITS} are accepted")
    return int(digits)


def _check_strings(data: object) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _encodable(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                _encodable(key)
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(400, f"the request holds text that is not valid Unicode (a lone surrogate "
                              f"{text[exc.start]!a} at character {exc.start})") from None


def error_message(status: int, message: str) -> bytes:
    kinds = {403: "permission_error", 413: "request_too_large"}
    kind = kinds.get(status, "invalid_request_error" if status < 500 else "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()


async def send_error(send: Send, status: int, message: str, close: bool = False) -> None:
    body = error_message(status, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: the host/origin rule and the JSON checks described in the module docstring."""

    def __init__(self, app: ASGIApp, settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        try:
            self._check_host_and_origin(headers)
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type in (b"application/json", b"") and scope.get("method") in ("POST", "PUT", "PATCH"):
                body, receive = await _buffer(receive)
                if body:
                    check_json_text(body)
        except BadRequest as exc:
            await send_error(send, exc.status, str(exc))
            return
        await self.app(scope, receive, send)

    def _check_host_and_origin(self, headers: dict[bytes, bytes]) -> None:
        settings = self.settings
        if settings.api_key is not None:
            return  # every /v1 request must carry the key: a foreign page cannot
        host_header = headers.get(b"host", b"").decode("latin-1")
        allowed_origins = set(settings.allowed_origins)
        if settings.host not in WILDCARD_HOSTS and "*" not in allowed_origins:
            names = LOOPBACK_NAMES | {settings.host} | {urlsplit(o).hostname or "" for o in allowed_origins}
            hostname = urlsplit(f"//{host_header}").hostname or ""
            if hostname not in names:
                raise BadRequest(403, f"Host {host_header!r} is not this server: without an API key only "
                                      "loopback names are accepted (start it with --api-key, or "
                                      "--allowed-origins)")
        origin = headers.get(b"origin")
        if origin is None or "*" in allowed_origins:
            return
        origin_text = origin.decode("latin-1")
        parts = urlsplit(origin_text)
        if parts.netloc == host_header or origin_text.rstrip("/") in allowed_origins:
            return
        raise BadRequest(403, f"cross-origin request from {origin_text!r} refused: without an API key only "
                              "this server's own page may call it (see --allowed-origins)")


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that plays it back (then passes on whatever comes next)."""
    chunks: list[bytes] = []
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replay = [{"type": "http.request", "body": body, "more_body": False}] if messages[-1]["type"] == \
        "http.request" else messages

    async def replaying() -> Message:
        if replay:
            return replay.pop(0)
        return await receive()

    return body, replaying


class LastResort:
    """ASGI middleware: an exception no handler took becomes a 500 with `Connection: close`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only dropping the connection can end it
            await send_error(send, 500, "internal server error (details are in the server log)", close=True)
