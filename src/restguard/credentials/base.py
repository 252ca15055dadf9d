"""The Authenticator interface every credential kind implements.

``extract`` looks at syntax only (no store, no clock) and returns a Credential, None when the
request carries no credential of this kind, raises InvalidCredential when it carries a malformed
one (401: RFC 6750 §3.1 "invalid_token" covers malformed tokens) and InvalidRequest when the
*request* is malformed (a credential header repeated, the credential sent twice).
``authenticate`` proves the credential and returns a Principal, or raises an AuthError.
``carriers`` names the headers that carry a credential of this kind, used or not: they are
removed before forwarding on every route (public ones too) unless the route forwards them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from restguard.errors import AuthError
from restguard.types import Principal, RequestView


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request presented. ``headers`` name the headers that carried it (stripped
    before forwarding); ``credential_id`` is the public part, safe for the audit log. A frozen
    dataclass, not a NamedTuple like the other per-request values: a tuple hands its secret to
    anything that iterates or serialises it (``json.dumps(..., default=repr)`` gets the repr
    that hides it from this class)."""

    method: str
    secret: str
    credential_id: str
    headers: tuple[bytes, ...]

    def __repr__(self) -> str:  # never print the secret
        return f"Credential({self.method!r}, {self.credential_id!r})"


class AuthContext(NamedTuple):
    """What a verifier may know besides the credential: the time, the client address, and
    the request (with its body when the verifier asked for it: ``ReadsBody``)."""

    now: datetime
    client: str
    view: RequestView | None = None
    # the route's rules for RFC 9421 signatures (``[[routes]] signature_components`` and
    # ``signature_label``): what else a signature must cover, and the one label to consider
    signature_components: tuple[str, ...] = ()
    signature_label: str | None = None
    # the route admits OAuth 1.0a requests signed by a consumer alone (``oauth1_two_legged``)
    oauth1_two_legged: bool = False


class Authenticator(Protocol):
    method: str
    # How a client presents it, for a 401's description ("an API key in 'X-API-Key: <key>'").
    presentation: str

    def extract(self, view: RequestView) -> Credential | None: ...

    def carriers(self, view: RequestView) -> tuple[bytes, ...]: ...

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal: ...

    def challenge(self, error: AuthError | None) -> str:
        """The ``WWW-Authenticate`` challenge for a 401 on a route that accepts this method."""
        ...


@runtime_checkable
class ReadsHeaders(Protocol):
    """An authenticator whose credential travels in the headers ``header_names`` only: when a
    request has none of them, ``extract`` returns None and ``carriers`` returns (), so the
    guard does not ask it (it asks every other authenticator of the route on every request).
    Its ``carriers`` reads those headers and nothing else, and answers the same headers the
    same way every time: the guard remembers its answers for a set of headers seen before
    (``carriers._Screened``; a refusal is asked again each time). ``extract`` is remembered
    too when ``stable_extract`` is true: it reads nothing else either (not what the
    authenticator has verified since; a name known only once verified comes from
    ``Attributes``), else it is asked afresh each time."""

    header_names: frozenset[bytes]
    stable_extract: bool
    # Its headers' values differ on every request (an RFC 9421 signature covers its nonce and
    # creation time): a set holding one is never seen again, so it is not remembered.
    unrepeated: bool


@runtime_checkable
class Attributes(Protocol):
    """An authenticator that can name a credential in the audit log only once it has verified
    it (an opaque OAuth 2.0 token's client): the guard asks ``attributed`` right after
    ``authenticate`` passed, and records the credential it returns."""

    def attributed(self, credential: Credential, principal: Principal) -> Credential: ...


@runtime_checkable
class Background(Protocol):
    """An authenticator with work of its own (keeping a key set or a list current): the
    runtime awaits ``start`` once inside the running loop and calls ``close`` at the end."""

    async def start(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class HoldsCache(Protocol):
    """Keeps store records in memory for the hot path, each at most a second old (revocation
    applies everywhere within a second). ``drop_cached`` forgets them at once: a revocation
    announced by another instance (``[storage] redis``'s fan-out) applies within its latency."""

    def drop_cached(self) -> None: ...


@runtime_checkable
class ReadsBody(Protocol):
    """An authenticator whose credential may cover the request body (RFC 9421 with
    ``Content-Digest``, OAuth 1.0a form parameters). Before deciding, every adapter asks the
    guard (``Guard.body_wanted``); when a route's authenticator wants the body of this request,
    the adapter reads it first (at most ``body_limit`` bytes: 413 above), decides with it in
    ``view.body``, and hands exactly those bytes on. No byte reaches the upstream or the app
    before the decision."""

    def body_limit(self, view: RequestView) -> int:
        """Bytes of body this request's credential needs read before the decision (0: none):
        what its head shows of the credential says so."""
        ...


@runtime_checkable
class CarriedInBody(Protocol):
    """An authenticator whose credential may travel in the body alone, nothing in the head
    (OAuth 1.0a's form-body parameters, RFC 5849 §3.5.2). The guard reads such a body first
    only when no authenticator of the route finds a credential in the head: a form posted with
    an API key is never held back (nor capped) for a credential it does not carry."""

    def body_carrier_limit(self, view: RequestView) -> int:
        """Bytes of body to read when the credential may be in it (0: it cannot be)."""
        ...
