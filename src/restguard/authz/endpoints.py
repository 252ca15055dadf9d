"""restguard's own endpoints on the gateway listener, in one place.

CONTRACT "Configuration": restguard's own endpoints are matched before the policy, so ``/**``
and ``/{tenant}/**`` routes are fine; a route that names one of them literally is a
configuration error. Every endpoint the contract promises ("Authorization server endpoints") is
listed here; ``served`` says whether this version answers it. Only served endpoints are matched
before the policy (an unserved path is an ordinary path: the policy decides it), but a route
naming any of them literally is refused already, so a later version that serves it cannot
silently take a route's path away. An issue that adds an endpoint sets ``served = True`` here
and registers its handler in ``gateway/own.py`` (a test holds the two in step).

Embedded mode (``restguard.asgi``, ``restguard.fastapi``) serves none of them: there every
path is the app's and the policy decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from restguard.authz.policy import AmbiguousPath, Route, fold, fold_path

# A token request is a handful of form parameters (RFC 6749 §4.1.3, §4.4.2, §6; an assertion or
# a code_verifier at most): 16 KiB is ample.
TOKEN_BODY_LIMIT = 16 * 1024
# The login, consent and device forms: a sealed request, a CSRF token, a name, a password,
# a user code, scopes.
PAGE_BODY_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class OwnEndpoint:
    """One of restguard's own endpoints (its path is in normal form)."""

    path: str
    methods: tuple[str, ...]  # GET implies HEAD, as for routes
    reference: str
    served: bool = False  # this version answers it on the gateway listener
    # Bytes of request body the endpoint reads (``gateway/exchange_body.py``): a declared or
    # sent body above it gets 413. 0: none, a body is read and discarded.
    body_limit: int = 0

    def allows(self, method: str) -> bool:
        return method in self.methods or (method == "HEAD" and "GET" in self.methods)

    @property
    def allow_header(self) -> str:
        """The ``Allow`` value of a 405 (RFC 9110 §15.5.6)."""
        extra = ("HEAD",) if "GET" in self.methods and "HEAD" not in self.methods else ()
        return ", ".join((*self.methods, *extra))


OWN_ENDPOINTS: tuple[OwnEndpoint, ...] = (
    OwnEndpoint("/.well-known/jwks.json", ("GET",), "RFC 7517 §5", served=True),
    OwnEndpoint("/.well-known/oauth-authorization-server", ("GET",), "RFC 8414 §3", served=True),
    OwnEndpoint("/oauth2/authorize", ("GET",), "RFC 6749 §3.1", served=True),
    OwnEndpoint(
        "/oauth2/token", ("POST",), "RFC 6749 §3.2", served=True, body_limit=TOKEN_BODY_LIMIT
    ),
    OwnEndpoint(
        "/oauth2/introspect", ("POST",), "RFC 7662 §2", served=True, body_limit=TOKEN_BODY_LIMIT
    ),
    OwnEndpoint(
        "/oauth2/revoke", ("POST",), "RFC 7009 §2", served=True, body_limit=TOKEN_BODY_LIMIT
    ),
    OwnEndpoint(
        "/oauth2/device_authorization",
        ("POST",),
        "RFC 8628 §3.1",
        served=True,
        body_limit=TOKEN_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/login", ("GET", "POST"), "CONTRACT: login page", served=True, body_limit=PAGE_BODY_LIMIT
    ),
    OwnEndpoint(
        "/consent",
        ("GET", "POST"),
        "CONTRACT: consent page",
        served=True,
        body_limit=PAGE_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/device",
        ("GET", "POST"),
        "RFC 8628 §3.3: user-code page",
        served=True,
        body_limit=PAGE_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/oauth1/request_token",
        ("POST",),
        "RFC 5849 §2.1",
        served=True,
        body_limit=TOKEN_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/oauth1/authorize",
        ("GET", "POST"),
        "RFC 5849 §2.2",
        served=True,
        body_limit=PAGE_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/oauth1/access_token",
        ("POST",),
        "RFC 5849 §2.3",
        served=True,
        body_limit=TOKEN_BODY_LIMIT,
    ),
    OwnEndpoint(
        "/oauth1/tokens",
        ("GET", "POST"),
        "restguard: a user's OAuth 1.0a connections",
        served=True,
        body_limit=PAGE_BODY_LIMIT,
    ),
)

_SERVED = {e.path: e for e in OWN_ENDPOINTS if e.served}
_SERVED_FOLDED = {fold(e.path) for e in OWN_ENDPOINTS if e.served}
_FOLDED = {fold(e.path): e for e in OWN_ENDPOINTS}


def served_endpoint(path: str) -> OwnEndpoint | None:
    """The endpoint this version answers at the normalised ``path``, if any (exact match:
    restguard's paths are case-sensitive). ``AmbiguousPath`` for a path that differs from one
    only in letter case or a trailing slash: a lenient upstream router behind a ``/**`` route
    would answer it with a document of its own under restguard's name."""
    if path in _NOT_SERVED:  # (a path answered lately; folding it cost ~0.4 us a request)
        return None
    endpoint = _SERVED.get(path)
    if endpoint is None and fold_path(path) in _SERVED_FOLDED:
        raise AmbiguousPath(
            "The path differs from one of restguard's own endpoints only in letter case or a "
            "trailing slash; send the endpoint's exact path.",
            debug=f"{path} folds onto restguard's {fold_path(path)}",
        )
    if endpoint is None and len(path) <= 256:
        if len(_NOT_SERVED) >= 4096:  # (bounded: emptied when full)
            _NOT_SERVED.clear()
        _NOT_SERVED.add(path)
    return endpoint


#: Paths lately found to be none of restguard's own endpoints, nor to fold onto one.
_NOT_SERVED: set[str] = set()


def named_endpoint(route: Route) -> OwnEndpoint | None:
    """The own endpoint ``route`` names literally, if any (a configuration error).

    Literally: every segment of the route's path is literal and, ignoring letter case and one
    trailing slash (as lenient upstream routers do), the path is the endpoint's, or a subtree
    rooted at it (``/login/**``). Parameters and subtrees above an endpoint (``/{page}``,
    ``/**``, ``/oauth2/**``) name none: the endpoint is matched first and the route has the
    rest."""
    if any(s is None for s in route._segments):
        return None
    literal = "/" + "/".join(s for s in route._segments if s is not None)
    folded = fold(literal)
    if len(folded) > 1 and folded.endswith("/"):
        folded = folded[:-1]
    return _FOLDED.get(folded)
