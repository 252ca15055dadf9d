"""The admin REST API (``/api/`` on the admin listener): JSON over the service layer
(``restguard.manage``), so the API and the CLI cannot drift.

Every call but ``GET /api/openapi.json`` needs an API key holding ``restguard:admin``; the
admin guard (``admin_guard``) decides that exactly as the gateway decides its routes (the same
API-key method, failed-attempt lockout and audit log). This module only translates: it parses
the query and the JSON body strictly (an unknown or repeated parameter, an unknown field, a
body that is not a JSON object: 400 naming it), calls the service, and answers in the
contract's error shape. Every change is written to the audit log (who, what, when; never a
secret). A refused request changes nothing: the service validates before it writes, and each
write is one transaction.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from restguard.admin.call import Call, Handler, Services
from restguard.admin.changes import record_change
from restguard.admin.openapi import OPENAPI_PATH, document
from restguard.admin.resources import ALL
from restguard.admin.schema import MAX_BODY_BYTES
from restguard.asgi import ASGIApp, Receive, Scope, Send, judge_body, scope_view
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.clock import Clock
from restguard.edge.asgi_send import send_problem
from restguard.edge.problem import problem
from restguard.edge.view import Network
from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.keys.sealing import MasterKeyError, Sealer, open_sealer
from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.manage.errors import Invalid, ManageError, NotFound
from restguard.store.errors import DuplicateRecord, StoreError
from restguard.store.ports import Store
from restguard.tokens import redact
from restguard.types import RequestView
from restguard.wire.forms import gate_for
from restguard.wiring import Runtime

_log = logging.getLogger("restguard.admin")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def admin_policy() -> Policy:
    """``/api/openapi.json`` is public (GET); everything else under ``/api/`` needs an API key
    holding ``restguard:admin``. Other paths are not the API's (default deny: 404)."""
    doc, doc_subtree = compile_pattern(OPENAPI_PATH)
    api, api_subtree = compile_pattern("/api/**")
    return Policy(
        [
            Route(
                0,
                OPENAPI_PATH,
                frozenset({"GET"}),
                public=True,
                _segments=doc,
                _subtree=doc_subtree,
            ),
            Route(
                1,
                "/api/**",
                frozenset(_METHODS),
                scopes=(ADMIN_SCOPE,),
                auth=("api_key",),
                _segments=api,
                _subtree=api_subtree,
            ),
        ]
    )


def admin_guard(guard: Guard) -> Guard:
    """A guard for the admin API beside the gateway's ``guard``: its API-key method, rate
    limiter (failed-attempt lockout per client address) and audit sinks."""
    return Guard(
        admin_policy(),
        {"api_key": guard.authenticators["api_key"]},
        guard.clock,
        guard.limiter,
        sinks=guard.sinks,
        failed_attempts=guard.failed_attempts,
    )


def mount(
    runtime: Runtime, guard: Guard | None = None, sealer: Callable[[], Sealer] | None = None
) -> ASGIApp:
    """The admin API of a running restguard, deciding each request with its guard: only keys
    holding ``ADMIN_SCOPE`` get in. ``guard`` defaults to ``admin_guard(runtime.guard)``;
    ``sealer`` to opening the master key per use (the key file may change)."""
    guard = guard or admin_guard(runtime.guard)
    settings = runtime.settings
    api = AdminApi(
        runtime.store,
        runtime.clock,
        guard,
        document,
        sealer or (lambda: open_sealer(settings.master_key_path)),
    )
    api.services = replace(
        api.services, public_url=settings.server.public_url, audit_path=settings.audit_path
    )
    api.trusted_proxies = tuple(settings.server.trusted_proxies)
    api.max_header_bytes = settings.server.max_header_bytes
    return api


class AdminApi:
    """The ``/api/`` ASGI application: the endpoints of every resource module
    (``admin/resources/``), each request decided first by ``guard`` (``admin_guard``).

    The decision is deferred, as on the gateway: its audit line is written once the answer is
    known, with the status the client got (201, 404 ...); a required audit log gets it before
    the handler runs (``"upstream": "pending"``), so nothing it could not record takes effect.
    A change's own line (who, what, which record) follows the answer's status."""

    trusted_proxies: tuple[Network, ...] = ()
    max_header_bytes: int = 16 * 1024

    def __init__(
        self,
        store: Store,
        clock: Clock,
        guard: Guard,
        openapi: Callable[[], dict[str, Any]],
        sealer: Callable[[], Sealer],
    ) -> None:
        self.guard, self.openapi = guard, openapi
        self.services = Services(store, clock, sealer, self._changed)
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(pattern), handlers)
            for resource in ALL
            for pattern, handlers in resource.ENDPOINTS
        ]

    def _changed(self, call: Call, action: str, target: str) -> None:
        """Note a change; its audit line is written with the answer's status (``_record``)."""
        call.changes.append((action, target))

    def _record(self, call: Call, status: int) -> None:
        """The audit line of each change made, with the status sent (``admin/changes.py``)."""
        for action, target in call.changes:
            record_change(self.guard, call.view, call.admin, action, target, status)

    def _route(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
        for pattern, handlers in self.routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            wanted = "GET" if method == "HEAD" else method
            if wanted not in handlers:
                allow = ", ".join(sorted({*handlers, *(("HEAD",) if "GET" in handlers else ())}))
                raise _MethodNotAllowed(allow)
            return handlers[wanted], m.groups()
        raise NotFound("no such admin API endpoint")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        head = scope["method"] == "HEAD"
        try:
            view = scope_view(
                self.guard,
                scope,
                trusted_proxies=self.trusted_proxies,
                max_header_bytes=self.max_header_bytes,
            )
            decision = await self.guard.decide(view, deferred=True)
        except AuthError as err:
            await send_problem(send, err, head=head)
            return
        status = 500
        try:
            status, body, headers = await self._answer(scope, receive, view, decision)
            await _send(send, status, body, head, headers)
        finally:
            self.guard.completed(decision, status, "ok")

    async def _answer(
        self, scope: Scope, receive: Receive, view: RequestView, decision: Decision
    ) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        """What to answer a decided request; every error in the contract's shape."""
        method, path = scope["method"], scope["path"]
        if path == OPENAPI_PATH:
            if method not in ("GET", "HEAD"):
                text = "this endpoint answers GET, HEAD"
                return 405, _error("method_not_allowed", text), [(b"allow", b"GET, HEAD")]
            return 200, self.openapi(), []
        call: Call | None = None
        try:
            handler, args = self._route(method, path)
            call = Call(
                method,
                _query(scope.get("query_string", b"")),
                await _body(self.guard, view, receive),
                _if_match(view.headers),
                view,
                decision,
                self.services,
                args,
            )
            status, data, headers = await handler(call)
        except _MethodNotAllowed as exc:
            text = f"this endpoint answers {exc.allow}"
            return 405, _error("method_not_allowed", text), [(b"allow", exc.allow.encode())]
        except ManageError as exc:
            return exc.status, _problem(exc), []
        except AuthError as exc:  # BackendUnavailable: the store is down (503, fail closed)
            status, headers, body = problem(exc)
            return status, json.loads(body), [h for h in headers if h[0] == b"retry-after"]
        except DuplicateRecord:
            return 409, _error("conflict", "the record exists already"), []
        except (MasterKeyError, StoreError) as exc:
            # What the CLI would print as its one-line error: the server's own problem.
            _log.error("admin API %s %s failed: %s", method, path, exc)
            return 500, _error("server_error", "the server could not do this; its log says why"), []
        self._record(call, status)
        return status, data, headers


class _MethodNotAllowed(Exception):
    def __init__(self, allow: str) -> None:
        super().__init__(allow)
        self.allow = allow


class _TooLarge(ManageError):
    status = 413
    code = "invalid_request"


class _Unsupported(ManageError):
    status = 415
    code = "invalid_request"


def _error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


def _problem(exc: ManageError) -> dict[str, Any]:
    """The contract's error shape; a bad input's name is in ``field`` and leads the text.
    Input is echoed in some messages (a bad scope, an unknown field's name): anything shaped
    like a restguard credential in them is redacted, so a key sent in the wrong place does
    not travel on into the client's logs."""
    text = redact(f"{exc.field}: {exc.message}" if exc.field else exc.message)
    data = _error(exc.code, text)
    if exc.field:
        data["field"] = redact(exc.field)
    return data


async def _send(
    send: Send,
    status: int,
    data: Any,
    head: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(data).encode()
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _query(raw: bytes) -> dict[str, str]:
    """Query parameters, each at most once (a repeated one is ambiguous: 400)."""
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the query string does not parse", field="query") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise Invalid("is given twice", field=key)
        params[key] = value
    return params


def _if_match(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    values = [v for k, v in headers if k == b"if-match"]
    if len(values) > 1:
        raise Invalid("is given twice", field="If-Match")
    return values[0].decode("latin-1") if values else None


async def _body(guard: Guard, view: RequestView, receive: Receive) -> dict[str, Any]:
    """The JSON object sent (``{}`` when there is no body); 413 past ``MAX_BODY_BYTES``; the
    guard's body gates as on every route (a form body's ``_method``: 400); 415 for another
    media type; 400 for what does not parse as one JSON object."""
    headers = view.headers
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if gate_for(headers) is not None:
        await judge_body(guard, view, raw)
    if not raw:
        return {}
    types = [v for k, v in headers if k == b"content-type"]
    media = types[0].split(b";")[0].strip().lower() if len(types) == 1 else b""
    if media != b"application/json":
        raise _Unsupported("send the body as application/json", field="Content-Type")
    try:
        data = json.loads(raw, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):  # (nesting past the stack: 400)
        raise Invalid("is not valid JSON", field="body") from None
    except _Duplicate as exc:
        raise Invalid("is given twice", field=str(exc)) from None
    if not isinstance(data, dict):
        raise Invalid("must be a JSON object", field="body")
    return data


class _Duplicate(Exception):
    """A JSON object names a member twice (RFC 8259 §4: names SHOULD be unique; which one
    counts differs between parsers, so it is refused)."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _Duplicate(key)
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259 §6)."""
    raise ValueError(name)
