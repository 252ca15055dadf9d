"""Requested scopes (RFC 6749 §3.3): space-delimited scope-tokens, each one the client may have."""

from __future__ import annotations

import re
from collections.abc import Sequence

from restguard.oauth2.errors import OAuthError

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), delimited by SP.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def granted_scopes(requested: str | None, allowed: Sequence[str]) -> tuple[str, ...]:
    """The scopes to grant: what was requested (each one allowed), or without a ``scope``
    parameter every scope the client is allowed (§3.3 lets the server pick a default)."""
    if requested is None:
        return tuple(allowed)
    wanted = [s for s in requested.split(" ") if s]
    if not wanted or any(not _SCOPE_TOKEN.fullmatch(s) for s in wanted):
        raise OAuthError("invalid_scope", "The scope parameter is malformed.")
    refused = [s for s in wanted if s not in allowed]
    if refused:
        raise OAuthError(
            "invalid_scope",
            "The client may not be granted: " + " ".join(sorted(set(refused))) + ".",
        )
    return tuple(dict.fromkeys(wanted))
