"""``oauth1``: requests signed by an OAuth 1.0a consumer (RFC 5849 §3), and the one verifier the
provider's own endpoints (``oauth1/provider.py``) use too.

``extract`` sees that a request carries OAuth parameters -- an ``Authorization: OAuth`` header,
or ``oauth_consumer_key``/``oauth_signature`` in the query or in a form-encoded body (§3.5) --
and ``authenticate`` proves them. ``OAuth1Verifier.verify`` checks, in this order (RFC 5849
§3.2), each failure a 400 (what §3.2 calls a bad request) or one generic 401:

1. The parameters collect strictly (``wire/rfc5849.py``: one location only, nothing repeated,
   the required ones present, the timestamp plain ASCII digits, a known method): else 400.
2. The timestamp lies within ``window`` seconds of now, either way (§3.3 leaves the window to
   the server; default ±300 s): else 401.
3. The consumer exists and is not revoked (read through a cache of at most a second): else 401.
4. The signature method is one this consumer may use (``oauth1 consumer create
   --signature-method``): else 400. ``PLAINTEXT`` is refused unless the request reached
   restguard over TLS -- directly, or through a trusted proxy when ``public_url`` is https
   (§3.4.4: "MUST NOT be used over an insecure channel") -- and never in the query (the
   signature is the secrets: it would sit in every log of the URL): 400.
5. The token is what the endpoint expects: token credentials for a protected resource (live,
   this consumer's, of a user; none at all only on a route with ``oauth1_two_legged = true``),
   authorized temporary credentials at ``/oauth1/access_token``, none at
   ``/oauth1/request_token`` (§2.1, §2.3): else 401.
6. The signature verifies over the base string rebuilt from the request as received (§3.4.1;
   HMAC and PLAINTEXT in constant time, ``wire/rfc5849_algorithms.py``): else 401.
7. The nonce is used once per consumer, token and timestamp (§3.3), atomically across workers
   and instances (a unique key in the store), checked last so that an invalid request cannot
   burn one, and kept as long as the timestamp is acceptable: a replay is 401.

Form bodies (``ReadsBody``, ``CarriedInBody``): the parameters of a single-part
``application/x-www-form-urlencoded`` body are signed (§3.4.1.3.1), so such a body is read
whole before the decision (capped: 413 above) and exactly those bytes are forwarded -- when the
head carries OAuth parameters, or when nothing in the head is a credential of the route (then
the body may carry them, §3.5.2). A form posted with another credential (an API key) is not held
back. Other bodies are not signed and not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.oauth1_consumers import (
    consumer_secret,
    is_active,
    is_consumer_key,
    rsa_public_key,
)
from restguard.credentials.oauth1_tokens import (
    ACCESS,
    TEMPORARY,
    is_live,
    is_token,
    token_secret,
)
from restguard.credentials.read_through import ReadThrough
from restguard.errors import AuthError, InvalidCredential, InvalidRequest
from restguard.keys.sealing import Sealer
from restguard.store.ports import (
    OAuth1ConsumerRecord,
    OAuth1ConsumerStore,
    OAuth1NonceStore,
    OAuth1TokenRecord,
    OAuth1TokenStore,
)
from restguard.types import Principal, RequestView, verified_principal
from restguard.wire import rfc5849, rfc5849_algorithms
from restguard.wire.forms import URLENCODED, content_type

CHALLENGE: Final = 'OAuth realm="restguard"'
DEFAULT_WINDOW: Final = 300  # seconds a timestamp may lie before or after now
MAX_WINDOW: Final = 3600
FORM_BODY_LIMIT: Final = 1024 * 1024  # bytes of a form body read before the decision
_HEADERS: Final = (b"authorization",)
_MARKERS: Final = (b"oauth_consumer_key", b"oauth_signature")

#: What a request must carry in ``oauth_token`` (step 5 above).
Expect = Literal["access", "temporary", "none"]


class Verified(NamedTuple):
    """A request that passed: its parameters, its consumer, its token (None: two-legged or a
    temporary-credential request)."""

    request: rfc5849.OAuthRequest
    consumer: OAuth1ConsumerRecord
    token: OAuth1TokenRecord | None


@dataclass(frozen=True, slots=True)
class _ConsumerKeys:
    secret: str
    rsa: Any  # RSAPublicKey | None


def _is_oauth_header(value: bytes) -> bool:
    head = value.lstrip(b" \t")[:6]
    return head[:5].lower() == b"oauth" and (len(head) == 5 or head[5:6] in b" \t")


def _mentions_oauth(raw: bytes) -> bool:
    """Whether a query or form body has a parameter named ``oauth_consumer_key`` or
    ``oauth_signature`` (percent-encoded spellings too: the verifier decodes names before it
    looks; a value that merely mentions one is not a credential)."""
    if not raw:  # (most requests have no query: asked on every one)
        return False
    decoded = unquote_to_bytes(raw) if b"%" in raw else raw
    if not any(marker in decoded for marker in _MARKERS):
        return False  # (the usual request: one look)
    try:
        names = {name for name, *_ in rfc5849.parse_form(raw, "query")}
    except rfc5849.OAuthParameterError:
        return True  # malformed: the verifier says why (400)
    return "oauth_consumer_key" in names or "oauth_signature" in names


def is_form(view: RequestView) -> bool:
    """Whether the request's body is ``application/x-www-form-urlencoded`` (§3.4.1.3.1)."""
    try:
        return content_type(view.headers)[0] == URLENCODED
    except AuthError:
        return False  # (refused before any decision: ``Guard.decide`` checks it first)


class OAuth1Verifier:
    """RFC 5849 §3.2 for one request, the steps of the module docstring."""

    def __init__(
        self,
        consumers: OAuth1ConsumerStore,
        tokens: OAuth1TokenStore,
        nonces: OAuth1NonceStore,
        sealer: Sealer,
        *,
        window: int = DEFAULT_WINDOW,
        ttl: float = 1.0,
    ) -> None:
        if not 0 < window <= MAX_WINDOW:
            raise ValueError(f"the timestamp window is 1..{MAX_WINDOW} seconds")
        self.window = window
        self._tokens, self._nonces = tokens, nonces

        def consumer_keys(record: OAuth1ConsumerRecord) -> _ConsumerKeys:
            return _ConsumerKeys(consumer_secret(record, sealer), rsa_public_key(record))

        def secret_of(record: OAuth1TokenRecord) -> str:
            return token_secret(record, sealer)

        self._consumers = ReadThrough(consumers.get, consumer_keys, ttl)
        self._access = ReadThrough(tokens.get, secret_of, ttl)
        self.sealer = sealer

    def drop_cached(self) -> None:
        self._consumers.drop_cached()
        self._access.drop_cached()

    async def verify(
        self, req: rfc5849.OAuthRequest, *, now: datetime, tls: bool, expect: Expect
    ) -> Verified:
        """``req`` collected from the request as received; ``tls``: whether it came over TLS.
        ``expect="access"`` admits a request without a token too (two-legged): whether that
        is allowed is the caller's decision (``Verified.token`` is None)."""
        at = int(now.timestamp())
        if abs(req.timestamp - at) > self.window:
            raise InvalidCredential(debug="oauth_timestamp outside the accepted window")
        found = (
            await self._consumers.get(req.consumer_key)
            if is_consumer_key(req.consumer_key)
            else None
        )
        if found is None or not is_active(found[0], now):
            raise InvalidCredential(debug="unknown or revoked consumer")
        consumer, keys = found
        method = req.signature_method
        if method not in consumer.signature_methods:
            raise InvalidRequest(
                f"The consumer may not sign with {method}.",
                debug=f"signature method {method} not registered for the consumer",
            )
        if method == "PLAINTEXT":
            if not tls:
                raise InvalidRequest(
                    "PLAINTEXT signatures are accepted over HTTPS only (RFC 5849 §3.4.4).",
                    debug="PLAINTEXT over plain HTTP",
                )
            if req.source == "query":
                raise InvalidRequest(
                    "A PLAINTEXT signature must not be sent in the URL.",
                    debug="PLAINTEXT in the query",
                )
        token, secret = await self._token(req, consumer, now, expect)
        try:
            rfc5849_algorithms.verify(
                method,
                req.base_string,
                req.signature,
                consumer_secret=keys.secret,
                token_secret=secret,
                rsa_public_key=keys.rsa,
            )
        except rfc5849.SignatureInvalid as exc:
            raise InvalidCredential(debug=str(exc)) from None
        except ValueError as exc:  # a method without its key material: refused
            raise InvalidCredential(debug=str(exc)) from None
        await self._use_nonce(req, now)
        return Verified(req, consumer, token)

    async def _token(
        self,
        req: rfc5849.OAuthRequest,
        consumer: OAuth1ConsumerRecord,
        now: datetime,
        expect: Expect,
    ) -> tuple[OAuth1TokenRecord | None, str]:
        if req.token is None:
            if expect == "temporary":
                raise InvalidCredential(debug="oauth_token is required")
            return None, ""
        if expect == "none":
            raise InvalidCredential(debug="a temporary-credential request carries no token")
        if not is_token(req.token):  # (no store read for what restguard never issued)
            raise InvalidCredential(debug="oauth_token is not restguard's")
        if expect == "access":
            found = await self._access.get(req.token)
            record, secret = found if found is not None else (None, "")
        else:  # temporary credentials change state: read them, never from a cache
            record = await self._tokens.get(req.token)
            secret = "" if record is None else token_secret(record, self.sealer)
        kind = ACCESS if expect == "access" else TEMPORARY
        if (
            record is None
            or record.kind != kind
            or record.consumer_key != consumer.consumer_key
            or not is_live(record, now)
            or (kind == ACCESS and record.user_id is None)
        ):
            raise InvalidCredential(debug=f"oauth_token is not live {kind} credentials")
        return record, secret

    async def _use_nonce(self, req: rfc5849.OAuthRequest, now: datetime) -> None:
        # Kept while the timestamp is acceptable: through timestamp + window.
        keep = max(now, datetime.fromtimestamp(req.timestamp + self.window + 1, UTC))
        fresh = await self._nonces.use(  # BackendUnavailable: 503, never admitted unchecked
            req.consumer_key, req.token or "", req.timestamp, req.nonce, keep, now
        )
        if not fresh:
            raise InvalidCredential(debug="replay: the nonce was used before")


class RequestParts:
    """How a request's scheme and authority are read for the base string URI (§3.4.1.2): as
    received, or ``public_url``'s behind a trusted proxy (the proxy terminated the client's
    connection, so its own request says nothing the client signed)."""

    def __init__(self, public_url: str) -> None:
        public = urlsplit(public_url)
        self.public_scheme = (public.scheme or "http").lower()
        self.public_authority = public.netloc

    def scheme_authority(self, view: RequestView) -> tuple[str, str]:
        if view.via_trusted_proxy:
            return self.public_scheme, self.public_authority
        hosts = view.header_values(b"host")
        if len(hosts) != 1:
            raise InvalidRequest("Send one Host header.", debug="host missing or repeated")
        return view.scheme, hosts[0].decode("latin-1").strip()

    def tls(self, view: RequestView) -> bool:
        return view.scheme == "https" or (view.via_trusted_proxy and self.public_scheme == "https")

    def collect(self, view: RequestView, form: bool | None = None) -> rfc5849.OAuthRequest:
        """The request's OAuth parameters and base string; ``InvalidRequest`` (400) for what
        §3.2 calls a bad request. ``form``: whether the body is form-encoded, if known."""
        scheme, authority = self.scheme_authority(view)
        if form is None:
            form = is_form(view)
        try:
            return rfc5849.collect(
                view.method,
                scheme,
                authority,
                (view.raw_path or view.path.encode()).decode("latin-1"),
                view.query,
                view.headers,
                view.body if form else None,
                form,
            )
        except rfc5849.OAuthParameterError as exc:
            raise InvalidRequest(f"{exc} (RFC 5849 §3.2).", debug=str(exc)) from None
        except ValueError as exc:
            raise InvalidRequest("The request URI cannot be signed.", debug=str(exc)) from None


class OAuth1Authenticator:
    """Verifies requests signed by OAuth 1.0a consumers with token credentials (three-legged)
    or, on routes with ``oauth1_two_legged = true``, by the consumer alone."""

    method = "oauth1"
    presentation = (
        "an OAuth 1.0a signature by a registered consumer in 'Authorization: OAuth ...' "
        "(or in the query or a form body, RFC 5849 §3.5)"
    )

    def __init__(
        self,
        verifier: OAuth1Verifier,
        *,
        public_url: str,
        body_limit: int = FORM_BODY_LIMIT,
    ) -> None:
        self.verifier, self._limit = verifier, body_limit
        self.parts = RequestParts(public_url)
        self._last_header: tuple[object, bool] = (object(), False)

    def drop_cached(self) -> None:
        self.verifier.drop_cached()

    def _header(self, view: RequestView) -> bool:
        """Whether an ``Authorization: OAuth`` field is present (asked up to 3x per request:
        the last header tuple's answer is kept, as ``bearer_token`` keeps its own)."""
        headers = view.headers
        last = self._last_header
        if last[0] is headers:
            return last[1]
        found = False
        for k, v in headers:
            if k == b"authorization" and _is_oauth_header(v):
                found = True
                break
        if type(headers) is tuple:  # (a list may change: never taken for the same request)
            self._last_header = (headers, found)
        return found

    def extract(self, view: RequestView) -> Credential | None:
        if self._header(view):
            return Credential(self.method, "", "oauth1", _HEADERS)
        if _mentions_oauth(view.query) or (
            view.body and is_form(view) and _mentions_oauth(view.body)
        ):
            return Credential(self.method, "", "oauth1", ())
        return None

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        return _HEADERS if self._header(view) else ()

    def body_limit(self, view: RequestView) -> int:
        """A form-encoded body is read before the decision when the head carries OAuth
        parameters: the body's parameters are signed with them (§3.4.1.3.1)."""
        if (self._header(view) or _mentions_oauth(view.query)) and is_form(view):
            return self._limit
        return 0

    def body_carrier_limit(self, view: RequestView) -> int:
        """... and when nothing in the head is a credential, a form body may hold the OAuth
        parameters themselves (§3.5.2): the guard reads it then (``CarriedInBody``)."""
        return self._limit if is_form(view) else 0

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        view = ctx.view
        if view is None:  # an adapter that does not pass the request: fail closed
            raise InvalidCredential(debug="no request to check the signature against")
        form = is_form(view)
        if form and view.body is None:
            raise InvalidCredential(debug="the form body was not read before the decision")
        req = self.parts.collect(view, form)
        done = await self.verifier.verify(
            req, now=ctx.now, tls=self.parts.tls(view), expect="access"
        )
        consumer, token = done.consumer, done.token
        if token is None:
            if not ctx.oauth1_two_legged:
                raise InvalidCredential(debug="oauth_token is required on this route")
            return verified_principal(
                subject=consumer.consumer_key,
                client_id=consumer.consumer_key,
                scopes=frozenset(consumer.scopes),
                auth_method=self.method,
            )
        assert token.subject is not None  # (checked: token credentials carry their user)
        return verified_principal(
            subject=token.subject,
            client_id=consumer.consumer_key,
            scopes=frozenset(token.scopes),
            auth_method=self.method,
        )

    def challenge(self, error: AuthError | None) -> str:
        return CHALLENGE
