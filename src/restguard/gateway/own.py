"""Answers to restguard's own endpoints on the gateway listener (``authz/endpoints.py``).

CONTRACT "Configuration": restguard's own endpoints are matched before the policy. Every
endpoint marked ``served`` there has its handler here; the request's normalised path selects it,
so ``/.well-known/jwks.json?x`` and ``/.well-known/./jwks.json`` are answered here too and never
reach the upstream, whatever the routes say. A method the endpoint does not serve gets 405.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from restguard.authz.endpoints import OwnEndpoint
from restguard.errors import MethodNotAllowed
from restguard.keys.signing import JWKS_MAX_AGE

if TYPE_CHECKING:
    from restguard.gateway.server import Gateway

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]


_JWKS_HEADERS: Headers = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"public, max-age=%d" % JWKS_MAX_AGE),
]


def _jwks(gw: Gateway) -> Answer:
    """RFC 7517 §5: the JWK Set restguard's identity tokens verify against. A rotation's new
    key signs at once, so caches keep it briefly (``JWKS_MAX_AGE``); verifiers refetch on an
    unknown ``kid`` (``keys/signing.py``)."""
    return 200, list(_JWKS_HEADERS), gw.jwks_body()


HANDLERS: dict[str, Callable[[Gateway], Answer]] = {
    "/.well-known/jwks.json": _jwks,
}


def answer_own(gw: Gateway, endpoint: OwnEndpoint, method: str) -> Answer:
    """The answer of ``endpoint`` to ``method``; ``MethodNotAllowed`` for another method."""
    if not endpoint.allows(method):
        raise MethodNotAllowed(endpoint.allow_header, debug=f"{method} {endpoint.path}")
    return HANDLERS[endpoint.path](gw)
