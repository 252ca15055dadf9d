"""Stock upstream servers for tests: apps we did not write the server of, on 127.0.0.1.

``WsgiRefUpstream`` serves a WSGI app (Flask, Django, or a plain callable) with the standard
library's ``wsgiref`` — the CGI-style server that folds ``X_Foo`` and ``X-Foo`` into one
``HTTP_X_FOO`` variable. ``UvicornUpstream`` serves an ASGI app (Starlette, FastAPI) with a real
uvicorn. Both run in a background thread and have the ``url`` that ``GatewayProcess`` needs.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn

from tests.harness import free_port

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(WSGIServer):
    """One thread per connection, so a test's slow request does not block the next one."""

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class WsgiRefUpstream:
    """``app`` under ``wsgiref.simple_server``; ``environs`` records every request's environ."""

    def __init__(self, app: WsgiApp) -> None:
        self.environs: list[dict[str, Any]] = []

        def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            self.environs.append(dict(environ))
            return app(environ, start_response)

        self.port = free_port()
        self._server = make_server(
            "127.0.0.1",
            self.port,
            recording,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class UvicornUpstream:
    """``app`` under a real uvicorn (httptools, default settings but quiet)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn upstream did not start")
            time.sleep(0.01)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def wait_listening(port: int, timeout: float = 5.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
