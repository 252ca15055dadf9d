"""The ONLY place an AuthError becomes a status, headers and a JSON body."""

from __future__ import annotations

import json
from typing import Any

from restguard.errors import AuthError, InsufficientScope

Headers = list[tuple[bytes, bytes]]


def problem(err: AuthError) -> tuple[int, Headers, bytes]:
    """Status, headers and body for ``err``. Only the public description is shown."""
    body: dict[str, Any] = {"error": err.error, "error_description": err.description}
    if isinstance(err, InsufficientScope):
        body["scope"] = err.scope
    payload = json.dumps(body).encode()
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [(b"www-authenticate", c.encode("latin-1")) for c in err.challenges]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers]
    return err.status, headers, payload
