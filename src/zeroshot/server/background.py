"""Run the real server (uvicorn) in a background thread on a free loopback port: for tests, notebooks
and benchmarks that talk to it over HTTP."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from zeroshot.errors import UserError


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port`, or `UserError` saying in one line why it cannot be.

    `zeroshot serve` binds here, before uvicorn starts, and hands uvicorn the socket: an address that
    is not this machine's or a port in use is a start-up error (exit 2), not an exit 3 among uvicorn's
    log lines, and nothing can take the port between the check and the serving.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC,
                                                             socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a host name or address"
        raise UserError(f"--host {host}: cannot be resolved ({reason})") from None
    except OverflowError:
        raise UserError(f"--port must be between 1 and 65535, not {port}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart at once
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reasons = {errno.EADDRINUSE: f"--port {port} is already in use on {host} (another server runs "
                                     "there: stop it or choose another --port)",
                   errno.EADDRNOTAVAIL: f"--host {host} is not an address of this machine",
                   errno.EACCES: f"--port {port}: permission denied (ports below 1024 need privileges)"}
        raise UserError(reasons.get(exc.errno, f"cannot listen on {host}:{port} "
                                                f"({exc.strerror or exc})")) from None
    return sock


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (`http://127.0.0.1:PORT`).

    Port 0 binds a free port chosen by the OS, so parallel runs never collide.
    """
    sock = listening_socket(host, port)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="zeroshot-serve")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
