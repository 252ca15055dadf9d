"""What every request is refused for before any route or credential is looked at: headers that
would make the upstream act on another method or path than the one judged, and a query that
carries a credential or a ``_method`` override (``Guard.decide`` runs these on every route,
public and unmatched ones too)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from restguard.errors import InvalidRequest
from restguard.tokens import QUERY_NAMES, contains_credential
from restguard.types import RequestView
from restguard.wire.forms import check_params

# Headers that ask a server to act on another method than the one on the request line.
METHOD_OVERRIDE_HEADERS = frozenset(
    {b"x-http-method-override", b"x-http-method", b"x-method-override"}
)
# Headers that ask a server to route another path than the one on the request line (IIS URL
# Rewrite; honoured by older Symfony and Zend, CVE-2018-14773): the upstream would act on a path
# the policy never judged.
PATH_OVERRIDE_HEADERS = frozenset({b"x-original-url", b"x-rewrite-url"})


def check_headers(view: RequestView) -> None:
    """Refuse headers that would make the upstream act on another method or path than the one
    judged. (Names are already clean: ``edge.view`` dropped invalid names and X-Restguard-*.)"""
    for name, _ in view.headers:
        if name in METHOD_OVERRIDE_HEADERS:
            raise InvalidRequest(
                "Method-override headers are not accepted; use the real HTTP method.",
                debug=f"client sent {name!r}",
            )
        if name in PATH_OVERRIDE_HEADERS:
            raise InvalidRequest(
                "Path-override headers are not accepted; put the path in the request line.",
                debug=f"client sent {name!r}",
            )


def check_query(query: bytes) -> None:
    """Refuse a query that carries a restguard credential (URLs end up in logs, histories and
    Referer headers) or a ``_method`` override — on every route, public and unmatched ones too."""
    if not query:
        return
    check_params(query, "query")
    text = query.decode("latin-1")
    names = (unquote_plus(p.partition("=")[0]).strip().lower() for p in re.split("[&;]", text))
    if contains_credential(unquote_plus(text)) or any(n in QUERY_NAMES for n in names):
        raise InvalidRequest(
            "Credentials are accepted only in headers, never in the URL. "
            "Revoke a key that was sent in a URL.",
            debug="credential in query string",
        )
