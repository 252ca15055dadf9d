"""FastAPI integration: ``Depends(require_scopes("notes:read"))`` returns the ``Principal``.

Call ``install(app, guard)`` once: it registers the error translator and, where the app is not
already wrapped by ``GuardMiddleware``, lets the dependency run the guard itself. Either way the
decision is the gateway's exact one (``Guard.decide``), and the scopes named here are required
on top of the route's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import quote_plus

from fastapi import FastAPI, Request
from fastapi.responses import Response

from restguard.asgi import DECISION_KEY, VIEW_KEY, decide_scope
from restguard.edge.problem import problem
from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.guard import require_scopes as _check
from restguard.types import Principal, RequestView
from restguard.wire.forms import gate_for

_URLENCODED = ((b"content-type", b"application/x-www-form-urlencoded"),)

_GUARD_STATE = "restguard_guard"


def install(app: FastAPI, guard: Guard) -> None:
    """Make ``guard`` available to ``require_scopes`` and map AuthError to the contract's JSON."""
    setattr(app.state, _GUARD_STATE, guard)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        status, headers, body = problem(exc)
        response = Response(body, status_code=status)
        for name, value in headers:
            if name != b"content-length":  # Response sets its own
                response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
        return response

    app.add_exception_handler(AuthError, handler)


def require_scopes(*scopes: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the request's Principal, after the guard's decision and these scopes."""

    async def dependency(request: Request) -> Principal:
        decision = request.scope.get(DECISION_KEY)
        if not isinstance(decision, Decision):
            guard = getattr(request.app.state, _GUARD_STATE, None)
            if not isinstance(guard, Guard):
                raise RuntimeError("call restguard.fastapi.install(app, guard) first")
            view, decision = await decide_scope(guard, request.scope)
            request.scope[DECISION_KEY] = decision
            request.scope[VIEW_KEY] = view
            if gate_for(view.headers) is not None:  # (with or without a length: HTTP/2)
                await _check_body(guard, view, request)
        _check(decision.principal, scopes)
        return decision.principal

    return dependency


async def _check_body(guard: Guard, view: RequestView, request: Request) -> None:
    """A body's ``_method`` parameter is refused here too. Starlette caches the body it reads;
    when FastAPI already parsed a form for the endpoint (its ``Form()`` parameters), the body
    is gone and the parsed fields are judged instead."""
    try:
        body = await request.body()
    except RuntimeError:  # "Stream consumed": FastAPI parsed the form first
        form = await request.form()
        fields = "&".join(quote_plus(name) + "=" for name in form)
        guard.check_body(replace(view, headers=_URLENCODED), fields.encode())
        return
    guard.check_body(view, body)
