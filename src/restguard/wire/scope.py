"""OAuth 2.0 scope syntax (RFC 6749 §3.3), shared by the configuration, the CLI and the
authorization server: one definition of what a scope restguard accepts looks like."""

from __future__ import annotations

import re

_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")  # RFC 6749 §3.3 scope-token


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` is not a scope restguard accepts, or None. RFC 6749 §3.3: a scope-token is
    printable ASCII less space, '"' and '\\'. A comma is refused too: ``"a,b"`` is two scopes
    written as one, and a credential would never hold it."""
    if "," in scope:
        return f"'{scope}' has a comma; each scope is its own string"
    if any(c.isspace() for c in scope):
        return f"'{scope}' has white space; each scope is its own string"
    if not _SCOPE.fullmatch(scope):
        return f"'{scope}' is not a valid scope (printable ASCII without '\"' or '\\')"
    return None
