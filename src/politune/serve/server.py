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
from politune.serve.limits import Endpoint

if TYPE_CHECKING:
    import uvicorn
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


@contextlib.contextmanager
def _running(
    app: ASGIApp, host: str, port: int, startup_timeout: float
) -> Iterator[tuple[str, threading.Thread]]:
    """``app`` under uvicorn in a background thread on ``host:port`` (0: a free port): yields the URL
    ``http://HOST:PORT`` and the thread; stops it on exit."""
    sock = _bind(host, port)
    try:
        server, thread = _start_thread(app, sock, startup_timeout)
    except BaseException:
        sock.close()
        raise
    try:
        yield _url(host, sock.getsockname()[1]), thread
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.contextmanager
def run_app(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
) -> Iterator[str]:
    """Run any ASGI ``app`` under uvicorn in a background thread on ``host:port`` (0: a free port); yield the
    base URL ``http://HOST:PORT/v1``; stop it on exit. Tests and benchmarks use it for their local servers."""
    with _running(app, host, port, startup_timeout) as (url, _):
        yield url + "/v1"


@contextlib.contextmanager
def _politune_app(
    model: str,
    adapters: dict[str, str] | None,
    endpoint: Endpoint,
    startup_timeout: float,
    kw: dict[str, Any],
) -> Iterator[tuple[str, threading.Thread]]:
    """politune's app for ``model`` and ``adapters`` running at ``endpoint`` (:func:`_running`); its engine is
    closed on exit."""
    from politune.serve.app import create_app

    check_bind(endpoint.host, endpoint.api_key)
    app = create_app(model, adapters, api_key=endpoint.api_key, **kw)
    try:
        with _running(app, endpoint.host, endpoint.port, startup_timeout) as running:
            yield running
    finally:
        app.state.engine.close()


@contextlib.contextmanager
def start_server(
    model: str,
    adapters: dict[str, str] | None = None,
    endpoint: Endpoint = Endpoint(port=0),
    startup_timeout: float = 120.0,
    **kw: Any,
) -> Iterator[str]:
    """Serve ``create_app(model, adapters, **kw)`` at ``endpoint`` (default: loopback, a free port) under uvicorn
    in a background thread; yield the base URL ``http://HOST:PORT/v1``; shut down cleanly on exit."""
    with _politune_app(model, adapters, endpoint, startup_timeout, kw) as (url, _):
        yield url + "/v1"


def serve(
    model: str,
    adapters: dict[str, str] | None = None,
    endpoint: Endpoint = Endpoint(),
    on_ready: Callable[[str], None] | None = None,
    **kw: Any,
) -> None:
    """Serve ``create_app(model, adapters, **kw)`` at ``endpoint`` until Ctrl-C (or SIGTERM), then stop
    gracefully; ``on_ready(URL)`` is called once it listens (``http://HOST:PORT``)."""
    import signal

    stop = threading.Event()
    with _politune_app(model, adapters, endpoint, 120.0, kw) as (url, thread):
        old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            if on_ready is not None:
                on_ready(url)
            while thread.is_alive() and not stop.is_set():
                thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, old_term)
