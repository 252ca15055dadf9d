"""What a 401 tells the client: one ``WWW-Authenticate`` challenge per scheme the route
accepts, and, when no credential was found, why what the request did carry was not read.

Both name only methods, schemes and header names, never a credential. ``Guard`` calls them
with its authenticators and the route's ``auth`` list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from restguard.credentials.base import Authenticator
from restguard.errors import AuthError
from restguard.tokens import carries_credential
from restguard.types import RequestView

_SCHEME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def challenges(
    authenticators: Mapping[str, Authenticator],
    accepted: Sequence[str],
    failed: str | None = None,
    err: AuthError | None = None,
) -> tuple[str, ...]:
    """One challenge per scheme the ``accepted`` methods use (``jwt`` and ``oauth2`` share
    ``Bearer``): the failed method's where it has one (it may carry ``error="invalid_token"``),
    else the first; in the order of ``accepted``."""
    by_scheme: dict[str, str] = {}
    for m in accepted:
        a = authenticators.get(m)
        if a is None:
            continue
        challenge = a.challenge(err if m == failed else None)
        scheme = challenge.partition(" ")[0].lower()
        if scheme not in by_scheme or m == failed:
            by_scheme[scheme] = challenge
    return tuple(by_scheme.values())


def why_missing(
    authenticators: Mapping[str, Authenticator],
    accepted: Sequence[str],
    view: RequestView,
    carriers: Callable[[RequestView], tuple[bytes, ...]],
) -> str:
    """A 401's description when the route found no credential it accepts: what it accepts,
    and why what the request did carry was not read (another method, an Authorization scheme
    no accepted method uses, a credential in a header nothing reads: ``carriers``)."""
    usable = [a for m in accepted if (a := authenticators.get(m)) is not None]
    send = "send " + ", or ".join(a.presentation for a in usable) + "."
    for method, other in authenticators.items():
        if method not in accepted and other.carriers(view):
            return f"This route does not accept {method} credentials; {send}"
    for name, value in view.headers:
        if name == b"authorization":
            scheme = value.lstrip(b" \t").partition(b" ")[0].partition(b"\t")[0]
            if scheme.lower() == b"bearer":
                return f"This route does not accept this Bearer token; {send}"
            shown = _shown_scheme(scheme)
            return f"This route does not accept the Authorization scheme {shown}; {send}"
    for name in carriers(view):
        return f"A credential in the {name.decode('latin-1')} header is not read; {send}"
    return f"This route needs a credential: {send}"


def _shown_scheme(scheme: bytes) -> str:
    """An Authorization scheme as a 401 may name it: a short RFC 9110 token, else nothing."""
    if 0 < len(scheme) <= 20 and _SCHEME.fullmatch(scheme) and not carries_credential(scheme):
        return "'" + scheme.decode("ascii") + "'"
    return "in this header"
