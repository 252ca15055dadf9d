"""Client authentication at the token endpoint (RFC 6749 §2.3).

``client_secret_basic`` (RFC 6749 §2.3.1: HTTP Basic, the id and secret each
``application/x-www-form-urlencoded`` first), ``client_secret_post`` (the two in the body) and
``none`` (a public client names itself with ``client_id``; it holds no secret). A request that
uses two methods is refused (§2.3: "MUST NOT use more than one authentication method").
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote_plus

from restguard.oauth2.clients import is_active, secret_matches
from restguard.oauth2.errors import OAuthError, invalid_request
from restguard.oauth2.http import EndpointRequest
from restguard.store.ports import OAuthClientRecord


class ClientLookup(Protocol):
    """Where client records come from: the store, or a cache in front of it."""

    async def get(self, client_id: str) -> OAuthClientRecord | None: ...


MAX_CREDENTIAL_CHARS = 256


@dataclass(frozen=True, slots=True)
class Presented:
    """What the request presents: the method, the client id, the secret (None for ``none``)."""

    method: str
    client_id: str
    secret: str | None


def _basic(value: bytes) -> Presented:
    scheme, _, rest = value.partition(b" ")
    if scheme.lower() != b"basic":
        raise invalid_request("Only HTTP Basic client authentication is accepted here.")
    try:
        decoded = base64.b64decode(rest.strip(b" "), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_request("The Basic credentials do not decode.") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        raise invalid_request("The Basic credentials have no ':'.")
    return Presented("client_secret_basic", unquote_plus(raw_id), unquote_plus(raw_secret))


def presented(request: EndpointRequest, form: dict[str, str]) -> Presented:
    """The client's credentials as sent, or ``OAuthError``. Syntax only."""
    auth = request.header(b"authorization")
    if len(auth) > 1:
        raise invalid_request("The Authorization header must not be repeated.")
    in_body = "client_secret" in form
    if auth:
        if in_body:
            raise invalid_request("Authenticate the client one way: Basic or the body.")
        found = _basic(auth[0])
        if "client_id" in form and form["client_id"] != found.client_id:
            raise invalid_request("client_id differs from the authenticated client.")
    elif in_body:
        if "client_id" not in form:
            raise invalid_request("client_secret without client_id.")
        found = Presented("client_secret_post", form["client_id"], form["client_secret"])
    elif "client_id" in form:
        found = Presented("none", form["client_id"], None)
    else:
        raise OAuthError("invalid_client", "Client authentication is required.", status=401)
    if (
        not found.client_id
        or len(found.client_id) > MAX_CREDENTIAL_CHARS
        or (found.secret is not None and len(found.secret) > MAX_CREDENTIAL_CHARS)
    ):
        raise _failed(found, "client id or secret empty or too long")
    return found


def _failed(found: Presented, debug: str) -> OAuthError:
    return OAuthError(
        "invalid_client",
        "Client authentication failed.",
        status=401,
        basic_challenge=found.method == "client_secret_basic",
        debug=debug,
    )


async def authenticate(found: Presented, clients: ClientLookup, now: datetime) -> OAuthClientRecord:
    """The client ``found`` proves to be: a confidential client with its secret, or a public
    client that sent none. Every failure is the same ``invalid_client`` (401)."""
    record = await clients.get(found.client_id)
    if record is None or not is_active(record, now):
        raise _failed(found, "unknown or revoked client")
    if record.secret_hash is None:  # public: it must not pretend to have a secret
        if found.secret is not None:
            raise _failed(found, "a public client sent a secret")
        return record
    if found.secret is None:
        raise _failed(found, "a confidential client sent no secret")
    if not secret_matches(record, found.secret):
        raise _failed(found, "wrong client secret")
    return record
