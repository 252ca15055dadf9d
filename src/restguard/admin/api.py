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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from restguard.asgi import DECISION_KEY, VIEW_KEY, ASGIApp, GuardMiddleware, Receive, Scope, Send
from restguard.authz.policy import Policy, Route, compile_pattern
from restguard.clock import Clock
from restguard.edge.asgi_send import send_json, send_problem
from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.keys.sealing import MasterKeyError, Sealer, open_sealer
from restguard.manage import apikeys, signing_keys
from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.manage.errors import Invalid, ManageError, NotFound
from restguard.manage.values import duration
from restguard.store.errors import DuplicateRecord, StoreError
from restguard.store.ports import Store
from restguard.types import RequestView
from restguard.wiring import Runtime

_log = logging.getLogger("restguard.admin")
OPENAPI_PATH = "/api/openapi.json"
MAX_BODY_BYTES = 64 * 1024
_ID = "[A-Za-z0-9-]{1,64}"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


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


def mount(runtime: Runtime) -> ASGIApp:
    """The admin API of a running restguard, behind its guard (``GuardMiddleware``): only
    keys holding ``ADMIN_SCOPE`` get in."""
    from restguard.admin.openapi import document  # (it imports this module's constants)

    guard = admin_guard(runtime.guard)
    settings = runtime.settings
    api = AdminApi(
        runtime.store,
        runtime.clock,
        guard,
        document,
        lambda: open_sealer(settings.master_key_path),
    )
    return GuardMiddleware(api, guard, trusted_proxies=runtime.settings.server.trusted_proxies)


@dataclass
class Call:
    """One admin API request, parsed."""

    method: str
    params: dict[str, str]
    body: dict[str, Any]
    if_match: str | None
    view: RequestView
    decision: Decision
    path_args: tuple[str, ...] = ()
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def admin(self) -> str:
        """Who is acting: the admin key's id."""
        return self.decision.principal.client_id

    def take(self, allowed: tuple[str, ...]) -> dict[str, str]:
        """The query parameters, refusing any not in ``allowed``."""
        for key in self.params:
            if key not in allowed:
                raise Invalid(
                    f"unknown query parameter (allowed: {', '.join(allowed) or 'none'})",
                    field=key,
                )
        return self.params

    def fields(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The body's fields, refusing unknown ones and naming a missing required one."""
        for key in self.body:
            if key not in allowed:
                raise Invalid(f"unknown field (allowed: {', '.join(allowed) or 'none'})", field=key)
        for key in required:
            if key not in self.body:
                raise Invalid("is required", field=key)
        return self.body


Answer = tuple[int, Any, list[tuple[bytes, bytes]]]
Handler = Callable[["AdminApi", Call], Awaitable[Answer]]


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 9:
        raise Invalid("must be a whole number", field=name)
    return int(value)


def _etag_header(data: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(b"etag", data["etag"].encode())]


class AdminApi:
    """The ``/api/`` ASGI application, behind ``GuardMiddleware(AdminApi(...), admin_guard)``."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        guard: Guard,
        openapi: Callable[[], dict[str, Any]],
        sealer: Callable[[], Sealer],
    ) -> None:
        self.store, self.clock, self.guard, self.openapi = store, clock, guard, openapi
        self.sealer = sealer  # opened per use, as the CLI does: the master key file may change
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"/api/apikeys"), {"GET": AdminApi.list_keys, "POST": AdminApi.create_key}),
            (re.compile(rf"/api/apikeys/({_ID})"), {"GET": AdminApi.get_key}),
            (re.compile(rf"/api/apikeys/({_ID})/revoke"), {"POST": AdminApi.revoke_key}),
            (re.compile(rf"/api/apikeys/({_ID})/rotate"), {"POST": AdminApi.rotate_key}),
            (re.compile(r"/api/signing-keys"), {"GET": AdminApi.list_signing_keys}),
            (re.compile(r"/api/signing-keys/rotate"), {"POST": AdminApi.rotate_signing_key}),
        ]

    # --- API keys ---------------------------------------------------------------------------

    async def list_keys(self, call: Call) -> Answer:
        q = call.take(("state", "name", "scope", "limit", "after"))
        data = await apikeys.listing(
            self.store,
            self.clock.now(),
            state_is=q.get("state"),
            name=q.get("name"),
            scope=q.get("scope"),
            limit=_int(q.get("limit"), "limit"),
            after=q.get("after"),
        )
        return 200, data, []

    async def create_key(self, call: Call) -> Answer:
        call.take(())
        body = call.fields(("name", "scopes", "expires_in"), required=("name",))
        data = await apikeys.create(
            self.store,
            self.clock.now(),
            body["name"],
            body.get("scopes", []),
            duration(body.get("expires_in"), "expires_in"),
        )
        self._changed(call, "apikey.create", data["id"])
        location = f"/api/apikeys/{data['id']}".encode()
        return 201, data, [(b"location", location), *_etag_header(data)]

    async def get_key(self, call: Call) -> Answer:
        call.take(())
        rec = await apikeys.read(self.store, call.path_args[0])
        data = apikeys.public(rec, self.clock.now())
        return 200, data, _etag_header(data)

    async def revoke_key(self, call: Call) -> Answer:
        call.take(())
        call.fields(())
        data = await apikeys.revoke(
            self.store, self.clock.now(), call.path_args[0], if_match=call.if_match
        )
        self._changed(call, "apikey.revoke", data["id"])
        return 200, data, _etag_header(data)

    async def rotate_key(self, call: Call) -> Answer:
        call.take(())
        body = call.fields(("grace",))
        data = await apikeys.rotate(
            self.store,
            self.clock.now(),
            call.path_args[0],
            duration(body.get("grace"), "grace"),
            if_match=call.if_match,
        )
        self._changed(call, "apikey.rotate", f"{data['old_id']} -> {data['id']}")
        location = f"/api/apikeys/{data['id']}".encode()
        return 201, data, [(b"location", location), *_etag_header(data)]

    # --- signing keys -----------------------------------------------------------------------

    async def list_signing_keys(self, call: Call) -> Answer:
        q = call.take(("limit", "after"))
        data = await signing_keys.listing(
            self.store,
            self.clock.now(),
            limit=_int(q.get("limit"), "limit"),
            after=q.get("after"),
        )
        return 200, data, []

    async def rotate_signing_key(self, call: Call) -> Answer:
        call.take(())
        alg = signing_keys.check_alg(call.fields(("alg",)).get("alg"))
        data = await signing_keys.rotate(self.store, self.sealer(), self.clock.now(), alg)
        self._changed(call, "signing-key.rotate", data["kid"])
        return 201, data, []

    # --- plumbing ---------------------------------------------------------------------------

    def _changed(self, call: Call, action: str, target: str) -> None:
        """The audit line of a change: who (the admin key), what, on which record; when is
        the line's time. Never a secret: targets are ids."""
        self.guard.record(
            call.view,
            status=200,
            started=self.clock.monotonic(),
            auth_method="api_key",
            credential_id=call.admin,
            detail=f"admin {action} {target}",
        )

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
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        if path == OPENAPI_PATH:
            await send_json(send, 200, self.openapi(), head=head)
            return
        try:
            handler, args = self._route(method, path)
            call = Call(
                method,
                _query(scope.get("query_string", b"")),
                await _body(scope, receive),
                _if_match(scope["headers"]),
                scope[VIEW_KEY],
                scope[DECISION_KEY],
                args,
            )
            status, data, headers = await handler(self, call)
        except _MethodNotAllowed as exc:
            text = f"this endpoint answers {exc.allow}"
            allow = [(b"allow", exc.allow.encode())]
            await _send(send, 405, _error("method_not_allowed", text), head, allow)
            return
        except ManageError as exc:
            await _send(send, exc.status, _problem(exc), head)
            return
        except AuthError as exc:  # BackendUnavailable: the store is down (503, fail closed)
            await send_problem(send, exc, head=head)
            return
        except DuplicateRecord:
            await _send(send, 409, _error("conflict", "the record exists already"), head)
            return
        except (MasterKeyError, StoreError) as exc:
            # What the CLI would print as its one-line error: the server's own problem.
            _log.error("admin API %s %s failed: %s", method, path, exc)
            text = "the server could not do this; its log says why"
            await _send(send, 500, _error("server_error", text), head)
            return
        await _send(send, status, data, head, headers)


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
    """The contract's error shape; a bad input's name is in ``field`` and leads the text."""
    text = f"{exc.field}: {exc.message}" if exc.field else exc.message
    data = _error(exc.code, text)
    if exc.field:
        data["field"] = exc.field
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


def _if_match(headers: list[tuple[bytes, bytes]]) -> str | None:
    values = [v for k, v in headers if k == b"if-match"]
    if len(values) > 1:
        raise Invalid("is given twice", field="If-Match")
    return values[0].decode("latin-1") if values else None


async def _body(scope: Scope, receive: Receive) -> dict[str, Any]:
    """The JSON object sent (``{}`` when there is no body); 415 for another media type, 413
    past ``MAX_BODY_BYTES``, 400 for what does not parse as one JSON object."""
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
    if not raw:
        return {}
    types = [v for k, v in scope["headers"] if k == b"content-type"]
    media = types[0].split(b";")[0].strip().lower() if len(types) == 1 else b""
    if media != b"application/json":
        raise _Unsupported("send the body as application/json", field="Content-Type")
    try:
        data = json.loads(raw, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
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
