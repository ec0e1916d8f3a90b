"""Server-wide request checks that no route should have to repeat, and the last line of defence.

`RequestGuard` (outermost after the body-size limit) is the one door every request passes through.
Before any route runs it refuses:
- a header that must be single (`Content-Type`, `Host`, `Origin`, ...) sent twice: the guard and
  FastAPI could otherwise read different ones (400);
- without an API key: a `Host` that is not this machine (DNS rebinding; on 0.0.0.0 too: the machine's
  own names and addresses, or `--allowed-hosts`), a cross-site `Origin`, and a `/v1` request a browser
  marks cross-site (`Sec-Fetch-Site`: an `<img>` on a foreign page could otherwise learn which image
  files exist) - the same rule as Jupyter's and Ollama's;
- a body that is not JSON (`application/json`, `application/*+json`, or no type) or a multipart form
  (415), or that is compressed;
- JSON anywhere in a body - the body itself, or a JSON list in a multipart field - that is not UTF-8,
  nested deeper than `MAX_JSON_DEPTH`, holds integers longer than `MAX_INT_DIGITS`, NaN/Infinity or
  numbers beyond a float, or strings with lone surrogates (which no file system, tokenizer or encoder
  accepts): `parse_json` is the one decoder with these limits, and `image_inputs` decodes with it too;
- more list items or more work than the server allows (`server.limits`, 413).
It reads a body once, checks it, and hands the same bytes on under one canonical `Content-Type`
(`application/json`, or `multipart/form-data; boundary=...`), so FastAPI's own parsing and the vision
routes' `parse_body` see only what passed, read the way the guard read it.

`LastResort` turns any exception that still escapes a route into a JSON 500 that says
`Connection: close`, so a client on a keep-alive connection reconnects instead of failing its next
request on a socket the server is about to drop.
"""

from __future__ import annotations

import email.message
import email.utils
import json
import logging
import math
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zeroshot.errors import UserError
from zeroshot.server import limits
from zeroshot.server.settings import ServerSettings

log = logging.getLogger("zeroshot.server")

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 100
MAX_FORM_FIELDS = 200  # text fields of one multipart form (each list item may be a field of its own)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# Headers a request may carry once: with two, the guard and FastAPI could each read a different one.
SINGLE_HEADERS = (b"content-type", b"content-length", b"content-encoding", b"host", b"origin",
                  b"authorization", b"sec-fetch-site")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BadRequest(Exception):
    """A request refused by the guard, with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotJSON(BadRequest):
    """Text that is not JSON at all (as opposed to JSON over one of the limits)."""


def parse_json(body: bytes | str) -> Any:
    """The one JSON decoder of the server: the value of `body`, or `BadRequest` (400) unless every route
    can take it apart safely (UTF-8, depth, integer digits, finite numbers, no lone surrogates)."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(400, f"the request body is not UTF-8 (byte {exc.start})") from None
    else:
        text = body
    # Depth is counted before parsing: json.loads itself recurses and would overflow the stack.
    _check_depth(text)
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except BadRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise NotJSON(400, f"the request body is not valid JSON: {exc}") from None
    _check_strings(data)
    return data


def check_json_text(body: bytes) -> None:
    """Raise `BadRequest` (400) unless `body` is JSON every route can take apart safely."""
    parse_json(body)


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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf: a number no option can mean
        raise BadRequest(400, f"the request body holds the number {text[:40]}, beyond a float's range")
    return value


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
    """ASGI middleware: the header, host/origin, body and cost rules described in the module docstring."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.host_names = served_host_names(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers = single_headers(scope.get("headers") or [])
            self._check_host_and_origin(headers, scope.get("path", ""))
            max_bytes = self.settings.max_upload_bytes
            _check_declared_length(headers, max_bytes)
            if scope.get("method") in _BODY_METHODS or _declares_body(headers):
                body, receive = await _buffer(receive, max_bytes)
                if body:
                    scope = await self._check_body(scope, headers, body)
        except BadRequest as exc:
            await send_error(send, exc.status, str(exc))
            return
        await self.app(scope, receive, send)

    async def _check_body(self, scope: Scope, headers: dict[bytes, bytes], body: bytes) -> Scope:
        """Decode and check `body`; the scope to pass on, with its one canonical `Content-Type`."""
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            raise BadRequest(415, f"Content-Encoding {encoding.decode('latin-1')!r} is not accepted: send "
                                  "the body uncompressed")
        kind, canonical = body_kind(headers.get(b"content-type"))
        if canonical is not None:
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or []
                                          if k.lower() != b"content-type"] + [(b"content-type", canonical)]}
        if kind == "json":
            data = parse_json(body)
        elif kind == "multipart":
            data = await _form_data(scope, body, self.settings)
        else:
            raise BadRequest(415, f"unsupported content type {headers[b'content-type'].decode('latin-1')!r}: "
                                  "send application/json or multipart/form-data")
        try:
            limits.check_request(self.settings, scope.get("path", ""), data)
        except UserError as exc:
            raise BadRequest(exc.status_code, str(exc)) from None
        return scope

    def _check_host_and_origin(self, headers: dict[bytes, bytes], path: str) -> None:
        settings = self.settings
        if settings.api_key is not None:
            return  # every /v1 request must carry the key: a foreign page cannot
        allowed_origins = set(settings.allowed_origins)
        if "*" in allowed_origins:
            return  # the operator opened it to every page
        host_header = headers.get(b"host", b"").decode("latin-1")
        if "*" not in settings.allowed_hosts and _hostname(host_header) not in self.host_names:
            raise BadRequest(403, f"Host {host_header!r} is not this server: without an API key only its "
                                  "own names are accepted (start it with --api-key, or --allowed-hosts)")
        origin = headers.get(b"origin")
        if origin is not None:
            origin_text = origin.decode("latin-1")
            if urlsplit(origin_text).netloc == host_header or origin_text.rstrip("/") in allowed_origins:
                return
            raise BadRequest(403, f"cross-origin request from {origin_text!r} refused: without an API key "
                                  "only this server's own page may call it (see --allowed-origins)")
        # No Origin (a plain GET such as an <img>): the browser still says where it came from. Refused
        # whether or not the file exists, so a foreign page learns nothing from the answer.
        site = headers.get(b"sec-fetch-site", b"").lower()
        if path.startswith("/v1/") and site in (b"cross-site", b"same-site"):
            raise BadRequest(403, "cross-site request refused: without an API key only this server's own "
                                  "page may call /v1 (see --allowed-origins)")


def single_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; `BadRequest` (400) if one of `SINGLE_HEADERS` repeats."""
    headers: dict[bytes, bytes] = {}
    for key, value in raw:
        name = key.lower()
        if name in headers and name in SINGLE_HEADERS:
            raise BadRequest(400, f"the request has more than one {name.decode('latin-1').title()} header; "
                                  "send it once")
        headers[name] = value
    return headers


def body_kind(content_type: bytes | None) -> tuple[str, bytes | None]:
    """("json" | "multipart" | "other", the canonical header value to pass on, or None to keep it).

    Read the way FastAPI reads it (`email.message`: any `application/json` or `application/*+json`,
    parameters and case aside, is JSON), then written back as one plain value, so that FastAPI, the
    vision routes and this guard all agree on what a body is. A body without a type is read as JSON,
    as FastAPI and `parse_body` read it.
    """
    if content_type is None or not content_type.strip():
        return "json", None
    message = email.message.Message()
    try:
        message["content-type"] = content_type.decode("latin-1")
        maintype, subtype = message.get_content_maintype(), message.get_content_subtype()
        boundary = message.get_param("boundary") if message.get_content_type() == "multipart/form-data" \
            else None
    except Exception:  # noqa: BLE001 - a header the email parser cannot take apart is not one we serve
        return "other", None
    if maintype == "application" and (subtype == "json" or subtype.endswith("+json")):
        return "json", b"application/json"
    if boundary is not None:
        boundary = email.utils.collapse_rfc2231_value(boundary)
        if not boundary or len(boundary) > 70 or not _BOUNDARY.fullmatch(boundary):
            raise BadRequest(400, "the multipart boundary is empty, too long or holds characters RFC 2046 "
                                  "does not allow")
        return "multipart", f'multipart/form-data; boundary="{boundary}"'.encode("latin-1")
    if message.get_content_type() == "multipart/form-data":
        raise BadRequest(400, "a multipart/form-data body needs a boundary parameter")
    return "other", None


_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]+")


async def _form_data(scope: Scope, body: bytes, settings: ServerSettings) -> dict[str, list[Any]]:
    """A multipart body's text fields as lists of items, each JSON value checked by `parse_json`.

    A field's items are counted as `image_inputs.parse_body` reads them: repeated fields, a JSON list,
    or comma-separated parts (for the list fields `limits` caps).
    """
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, receive=replay)
    try:
        form = await request.form(max_files=settings.max_images_per_request * 2, max_fields=MAX_FORM_FIELDS)
    except (HTTPException, MultiPartException) as exc:
        raise BadRequest(400, f"the multipart body cannot be read: {getattr(exc, 'detail', None) or exc}") \
            from None
    try:
        capped = settings.list_caps(scope.get("path", ""))
        data: dict[str, list[Any]] = {}
        for key, value in form.multi_items():
            _encodable(key)
            if isinstance(value, UploadFile):
                continue  # files are images: `image_inputs` counts and decodes them
            items = data.setdefault(key, [])
            if value.lstrip().startswith(("[", "{")):
                try:
                    parsed = parse_json(value)
                except NotJSON:
                    parsed = value  # not JSON: the route reads it as text (and may refuse it, 422)
                if isinstance(parsed, list):
                    items.extend(parsed)
                    continue
                if not isinstance(parsed, str):
                    items.append(parsed)
                    continue
            if key in capped:
                items.extend(part for part in value.split(",") if part.strip())
            else:
                items.append(value)
        return data
    finally:
        await form.close()


def _declares_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length", b"0").strip()
    return b"transfer-encoding" in headers or (length not in (b"", b"0"))


def _hostname(host_header: str) -> str:
    try:
        return (urlsplit(f"//{host_header}").hostname or "").rstrip(".")
    except ValueError:  # "[::1" and the like: no name at all
        return ""


def served_host_names(settings: ServerSettings) -> frozenset[str]:
    """The Host names a keyless server answers: loopback, the bound address, the allowed origins' hosts,
    `--allowed-hosts`, and on a wildcard address this machine's own names and addresses."""
    names = set(LOOPBACK_NAMES) | set(settings.allowed_hosts)
    names |= {(urlsplit(origin).hostname or "") for origin in settings.allowed_origins}
    if settings.host in WILDCARD_HOSTS:
        names |= own_names()
    else:
        names.add(settings.host.strip("[]").lower())
    return frozenset(name for name in names if name)


def own_names() -> set[str]:
    """This machine's host name and the addresses it is reachable at (best effort, no DNS query out)."""
    names: set[str] = set()
    try:
        hostname = socket.gethostname()
        names |= {hostname.lower(), hostname.split(".")[0].lower()}
        for info in socket.getaddrinfo(hostname, None):
            names.add(str(info[4][0]).split("%")[0])
    except OSError:
        pass
    names |= _interface_addresses()
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:  # the address the default route leaves from: connect() on UDP sends nothing
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                names.add(sock.getsockname()[0].split("%")[0])
        except OSError:
            pass
    return {name.lower() for name in names if name}


def _interface_addresses() -> set[str]:
    """Every IPv4 address of every interface (Linux), and the IPv6 ones from /proc."""
    found: set[str] = set()
    try:
        import fcntl
        import struct

        for _, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue  # no IPv4 address on this interface
                found.add(socket.inet_ntoa(packed[20:24]))
    except (ImportError, OSError, AttributeError):
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as handle:
            for line in handle:
                raw = line.split()[0]
                found.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(raw)))
    except (OSError, ValueError, IndexError):
        pass
    return found


def too_large(max_bytes: int) -> BadRequest:
    return BadRequest(413, f"request body is larger than this server's limit of {max_bytes:,} bytes "
                           "(--max-upload-mb)")


def _check_declared_length(headers: dict[bytes, bytes], max_bytes: int) -> None:
    declared = headers.get(b"content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise BadRequest(400, "Content-Length is not a number") from None
    if length > max_bytes:
        raise too_large(max_bytes)


async def _buffer(receive: Receive, max_bytes: int) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that plays it back (then passes on whatever comes next).

    Counts the bytes as they arrive and stops at `max_bytes` (a client can lie about, or omit, the
    length), so an oversized body is refused before it is held in memory."""
    chunks: list[bytes] = []
    messages: list[Message] = []
    received = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        received += len(chunks[-1])
        if received > max_bytes:
            raise too_large(max_bytes)
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
