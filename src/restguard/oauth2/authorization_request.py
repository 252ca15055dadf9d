"""The authorization request (RFC 6749 §4.1.1), checked in the order RFC 6749 §4.1.2.1 sets.

Until the client and its redirect URI are known to be good, an error is shown to the user on a
page (``PageError``) and never redirected: "the authorization server ... MUST NOT automatically
redirect the user-agent to the invalid redirection URI". After that, errors go back to the
client's redirect URI (``RedirectError``) with ``state`` as sent and ``iss`` (RFC 9207 §2).

What this server requires beyond RFC 6749 (RFC 9700 §2.1.1, §4.1.1): PKCE with ``S256`` from
every client (RFC 7636; ``plain`` and a missing challenge are refused), and redirect URIs that
match a registered one exactly, character for character. With exactly one registered URI the
request may omit it (RFC 6749 §3.1.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.clients import is_active
from restguard.oauth2.errors import OAuthError
from restguard.oauth2.scopes import granted_scopes
from restguard.wire import rfc7636

MAX_PARAMETERS: Final = 32
MAX_STATE_CHARS: Final = 1024
RESPONSE_TYPE: Final = "code"


class PageError(Exception):
    """Shown to the user on an error page (no redirect)."""

    def __init__(self, status: int, title: str, message: str, debug: str | None = None) -> None:
        super().__init__(title)
        self.status, self.title, self.message = status, title, message
        self.debug = debug or message


class RedirectError(Exception):
    """Sent back to the client at ``redirect_uri`` (RFC 6749 §4.1.2.1)."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(error)
        self.redirect_uri, self.state = redirect_uri, state
        self.error, self.description = error, description


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str

    def to_data(self) -> dict[str, Any]:
        return {
            "c": self.client_id,
            "r": self.redirect_uri,
            "g": self.redirect_uri_given,
            "s": list(self.scopes),
            "t": self.state,
            "p": self.code_challenge,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AuthorizationRequest:
        """The request sealed by ``to_data``; ``ValueError`` if it is not one."""
        try:
            request = cls(data["c"], data["r"], data["g"], tuple(data["s"]), data["t"], data["p"])
        except (KeyError, TypeError):
            raise ValueError("not an authorization request") from None
        if not (
            isinstance(request.client_id, str)
            and isinstance(request.redirect_uri, str)
            and isinstance(request.redirect_uri_given, bool)
            and all(isinstance(s, str) for s in request.scopes)
            and (request.state is None or isinstance(request.state, str))
            and isinstance(request.code_challenge, str)
        ):
            raise ValueError("not an authorization request")
        return request


def redirect_to(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` added to its query (RFC 6749 §4.1.2: "retaining" any query
    component it has); None values left out."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    if urlsplit(uri).query:
        return uri + "&" + query
    return uri + ("" if uri.endswith("?") else "?") + query  # ("cb?": an empty query)


def form_source(uri: str) -> str:
    """The CSP source expression that allows a form's redirect to ``uri`` (its origin, or the
    private-use scheme)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return parts.scheme + ":"


_BAD_CLIENT = "The application that sent you here is not known to this server."


def _query(raw: bytes) -> tuple[dict[str, str], set[str]]:
    """The parameters (one sent empty counts as omitted) and the names sent more than once."""
    try:
        pairs = parse_qsl(
            raw.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(raw),
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Invalid request", "The address of this page is malformed.") from None
    params: dict[str, str] = {}
    repeated = set()
    for name, value in pairs:
        if name in params:
            repeated.add(name)
        params[name] = value
    return {k: v for k, v in params.items() if v != ""}, repeated


async def parse(raw_query: bytes, clients: ClientLookup, now: datetime) -> AuthorizationRequest:
    """The request in ``raw_query``, or ``PageError`` / ``RedirectError``."""
    params, repeated = _query(raw_query)
    # RFC 6749 §3.1: parameters "MUST NOT be included more than once".
    if repeated & {"client_id", "redirect_uri"}:
        raise PageError(400, "Invalid request", "The request names its application twice.")
    client_id = params.get("client_id")
    if client_id is None:
        raise PageError(400, "Invalid request", "The request does not name an application.")
    client = await clients.get(client_id) if len(client_id) <= 256 else None
    if client is None or not is_active(client, now):
        raise PageError(400, "Unknown application", _BAD_CLIENT, debug="unknown client")
    given = params.get("redirect_uri")
    if given is None:
        if len(client.redirect_uris) != 1:
            raise PageError(
                400,
                "Invalid request",
                "The request does not say where to return to.",
                debug="redirect_uri missing and several registered",
            )
        redirect_uri = client.redirect_uris[0]
    elif given in client.redirect_uris:  # exact, character for character (RFC 9700 §4.1.1)
        redirect_uri = given
    else:
        raise PageError(
            400,
            "Invalid return address",
            "The application asked to return to an address it has not registered, so you were "
            "not sent there.",
            debug="redirect_uri not registered",
        )
    state = params.get("state")
    if state is not None and len(state) > MAX_STATE_CHARS:  # (not echoed: the error says why)
        raise RedirectError(redirect_uri, None, "invalid_request", "state is too long.")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, state, error, description)

    if repeated:
        raise fail("invalid_request", f"{sorted(repeated)[0]} is repeated.")
    if "authorization_code" not in client.grants:
        raise fail("unauthorized_client", "This client may not use the authorization code grant.")
    response_type = params.get("response_type")
    if response_type is None:
        raise fail("invalid_request", "response_type is missing.")
    if response_type != RESPONSE_TYPE:
        raise fail("unsupported_response_type", "Only response_type=code is served.")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        raise fail("invalid_request", "PKCE is required: send code_challenge (S256).")
    if method != rfc7636.METHOD:  # absent means "plain" (RFC 7636 §4.3): refused too
        raise fail("invalid_request", "code_challenge_method must be S256.")
    if not rfc7636.is_challenge(challenge):
        raise fail("invalid_request", "code_challenge is not an S256 challenge.")
    try:
        scopes = granted_scopes(params.get("scope"), client.scopes)
    except OAuthError as err:
        raise fail(err.error, err.description) from None
    return AuthorizationRequest(
        client.client_id, redirect_uri, given is not None, scopes, state, challenge
    )
