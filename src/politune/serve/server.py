"""Run the app with uvicorn: ``start_server`` (a background thread, for tests and notebooks) and ``serve``
(the foreground server behind ``politune serve``)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI
    from starlette.types import ASGIApp

log = logging.getLogger("politune")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Binding to anything but loopback requires an API key."""
    if not is_loopback(host) and not api_key:
        raise PolituneError(
            f"--host {host}: binding to a non-loopback address needs --api-key "
            "(or POLITUNE_API_KEY); the default host is 127.0.0.1"
        )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PolituneError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}"


def _start_thread(
    app: ASGIApp, sock: socket.socket, startup_timeout: float
) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn on ``sock`` in a daemon thread (uvicorn leaves signals alone off the main thread)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="politune-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            raise PolituneError("the server did not start")
        time.sleep(0.01)
    return server, thread


def _stop(app: FastAPI, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
    server.should_exit = True
    thread.join(30)
    sock.close()
    app.state.engine.close()


@contextlib.contextmanager
def run_app(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[str]:
    """Run any ASGI ``app`` under uvicorn in a background thread on ``host:port`` (0: a free port); yield the
    base URL ``http://HOST:PORT/v1``; stop it on exit. Tests and benchmarks use it for their local servers."""
    sock = _bind(host, port)
    try:
        server, thread = _start_thread(app, sock, startup_timeout)
    except BaseException:
        sock.close()
        raise
    try:
        yield _url(host, sock.getsockname()[1]) + "/v1"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.contextmanager
def start_server(
    model: str,
    adapters: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    startup_timeout: float = 120.0,
    **kw: Any,
) -> Iterator[str]:
    """Start ``create_app(model, adapters, api_key, **kw)`` under uvicorn in a background thread, on ``port``
    (0: a free one); yield the base URL ``http://HOST:PORT/v1``; shut down cleanly on exit."""
    from politune.serve.app import create_app

    check_bind(host, api_key)
    app = create_app(model, adapters, api_key=api_key, **kw)
    try:
        with run_app(app, host, port, startup_timeout) as url:
            yield url
    finally:
        app.state.engine.close()


def serve(
    model: str,
    adapters: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    **kw: Any,
) -> None:
    """Run the server until Ctrl-C (or SIGTERM), then stop it gracefully."""
    import signal

    from politune.serve.app import create_app

    check_bind(host, api_key)
    app = create_app(model, adapters, api_key=api_key, **kw)
    sock = _bind(host, port)
    server, thread = _start_thread(app, sock, 120.0)
    stop = threading.Event()
    old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if on_ready is not None:
            on_ready(_url(host, sock.getsockname()[1]))
        while thread.is_alive() and not stop.is_set():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        _stop(app, server, thread, sock)
