"""``signature``: requests signed by an app (RFC 9421 HTTP Message Signatures), with RFC 9530
``Content-Digest`` for bodies.

``extract`` only sees that ``Signature-Input`` and ``Signature`` are both present; everything
else is proven in ``authenticate``, in this order, each failure one generic 401:

1. Both fields parse strictly (``wire/rfc8941.py``, ``wire/rfc9421.py``: duplicate labels and
   parameters refused). Each ``Signature-Input`` label needs its ``Signature`` member.
2. Labels are tried in the order sent (at most ``MAX_SIGNATURES`` of them): the first one whose
   ``keyid`` names an active app and that verifies wins (RFC 9421 §4.3 leaves the choice to the
   verifier; a label for an unknown key is skipped). The app is read through a cache of at
   most a second, so a revoked app is refused on every instance within a second.
3. ``alg``, when sent, must be the app's algorithm: the algorithm always comes from the key
   (§3.3.7; §7.3.6 "the verifier MUST ... reject" a mismatch).
4. ``created`` is required and within ``MAX_AGE`` seconds before now (``MAX_SKEW`` after);
   ``expires``, when sent, must lie ahead (§3.2 step 6).
5. The covered components include ``@method``, ``@authority``, ``@path``, ``@query`` when the
   request has a query, ``content-digest`` when it has a body (§7.2.1: the verifier decides
   what must be covered), and what the route's ``signature_components`` adds. A route's
   ``signature_label`` makes that label the only one considered. ``@authority`` is the
   ``Host`` the client addressed, or the configured public authority behind a trusted proxy.
6. The signature verifies over the base rebuilt from the request as received (§3.2).
7. ``Content-Digest``, when covered, matches the body actually received (every supported
   member; ``wire/rfc9530.py``): the gateway and the middleware read the body of every signed
   request whole before deciding (``body_limit``; whether there is one at all is known only
   then), so what is checked -- and what "has a body" means -- is exactly what is forwarded.
8. ``nonce`` is required and used once per app, atomically across workers and instances (a
   unique key in the store), checked last so that an invalid request cannot burn one, and kept
   as long as the signature could be accepted (through ``created + MAX_AGE``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from restguard.credentials.apps import is_active, is_key_id, verification_key
from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.read_through import ReadThrough
from restguard.errors import AuthError, BackendUnavailable, InvalidCredential
from restguard.keys.sealing import Sealer
from restguard.store.ports import AppRecord, AppStore, NonceStore
from restguard.types import Principal, RequestView, verified_principal
from restguard.wire import rfc9421, rfc9421_algorithms, rfc9530
from restguard.wire.rfc8941 import StructuredFieldError

CHALLENGE: Final = 'Signature realm="restguard"'
MAX_AGE: Final = 300  # seconds a signature's ``created`` may lie in the past
MAX_SKEW: Final = 30  # ... and in the future (clocks differ)
MAX_NONCE_CHARS: Final = 128
# Labels in one request at most: RFC 9421 §4.3 allows several signatures (a proxy may add its
# own), but each one tried costs a store read and a verification; one 8 KiB Signature-Input
# could otherwise carry ~250 of them.
MAX_SIGNATURES: Final = 8
SIGNED_BODY_LIMIT: Final = 1024 * 1024  # bytes of a signed body read before the decision
APP_CACHE_SECONDS: Final = 1.0
_HEADERS: Final = (b"signature-input", b"signature")
#: What every signed request presents (the signatures are read from the view): one value.
_CREDENTIAL: Final = Credential("signature", "", "signature", _HEADERS)
_REQUIRED: Final = ("@method", "@authority", "@path")
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}
_PRINCIPALS_SIZE: Final = 10_000


class AppCache:
    """App records and their verification keys, read through a cache of at most a second
    (``read_through.ReadThrough``: a key is parsed once per record, not per request)."""

    def __init__(self, apps: AppStore, sealer: Sealer, ttl: float = APP_CACHE_SECONDS) -> None:
        def key_of(record: AppRecord) -> Any:
            return verification_key(record, sealer)

        self._cache = ReadThrough(apps.get, key_of, ttl)  # ValueError past a second

    async def get(self, key_id: str) -> tuple[AppRecord, Any] | None:
        return await self._cache.get(key_id)  # BackendUnavailable: 503

    def drop_cached(self) -> None:
        self._cache.drop_cached()


def _has_body(view: RequestView) -> bool:
    if view.body is not None:
        return bool(view.body)
    if view.header_values(b"transfer-encoding"):
        return True
    lengths = view.header_values(b"content-length")
    return any(v.strip() not in (b"", b"0") for v in lengths)


class SignatureAuthenticator:
    """Verifies RFC 9421 signatures of registered apps."""

    method = "signature"
    header_names = frozenset(_HEADERS)  # (ReadsHeaders)
    stable_extract = True  # (ReadsHeaders)
    unrepeated = True  # (ReadsHeaders: each signature has its own nonce)
    presentation = (
        "an RFC 9421 signature by a registered app in 'Signature-Input' and 'Signature' "
        "(with 'Content-Digest' for a body)"
    )

    def __init__(
        self,
        apps: AppCache,
        nonces: NonceStore,
        *,
        public_url: str,
        body_limit: int = SIGNED_BODY_LIMIT,
    ) -> None:
        """``public_url``: whose authority ``@authority`` is behind a trusted proxy."""
        self._apps, self._nonces, self._limit = apps, nonces, body_limit
        self._principals: dict[str, tuple[AppRecord, Principal]] = {}
        public = urlsplit(public_url)
        self._public_scheme = public.scheme or "http"
        self._public_authority = _normal_authority(public.netloc, self._public_scheme)

    # --- syntax ----------------------------------------------------------------------------
    @staticmethod
    def _present(view: RequestView) -> bool:
        # (every request asks: one pass over the names, no list or generator built)
        for name, _ in view.headers:  # noqa: SIM110
            if name == b"signature-input" or name == b"signature":
                return True
        return False

    def drop_cached(self) -> None:
        self._apps.drop_cached()

    def extract(self, view: RequestView) -> Credential | None:
        inputs = signatures = False
        for name, _ in view.headers:  # (one pass, as ``_present``)
            if name == b"signature-input":
                inputs = True
            elif name == b"signature":
                signatures = True
        if not (inputs or signatures):
            return None
        if not (inputs and signatures):
            raise InvalidCredential(debug="Signature-Input and Signature must come together")
        return _CREDENTIAL

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        return _HEADERS if self._present(view) else ()

    def body_limit(self, view: RequestView) -> int:
        """A signed request has its body read whole before the decision -- every signed
        request, not only one whose head announces a body: an HTTP/2 body needs neither
        ``Content-Length`` nor ``Transfer-Encoding`` (RFC 9113 §8.1.1), so the head cannot say
        that there is none. (Reading a body that is not there costs nothing: it is b"".)"""
        return self._limit if self._present(view) else 0

    # --- proof -----------------------------------------------------------------------------
    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        view = ctx.view
        if view is None:  # an adapter that does not pass the request: fail closed
            raise InvalidCredential(debug="no request to check the signature against")
        input_lines, signature_lines, hosts = _fields(view.headers)
        try:
            inputs = rfc9421.parse_signature_input(input_lines)
            signatures = rfc9421.parse_signature(signature_lines)
        except (StructuredFieldError, rfc9421.SignatureError) as exc:
            raise InvalidCredential(debug=f"malformed signature fields: {exc}") from None
        if not signatures.keys() >= inputs.keys():
            raise InvalidCredential(debug="a Signature-Input label without its Signature")
        if len(inputs) > MAX_SIGNATURES:  # each label costs a store read and a verification
            raise InvalidCredential(debug=f"more than {MAX_SIGNATURES} signatures")
        message = self._message(view, hosts)
        failure = "no signature by a known app"
        for label, sig in inputs.items():
            if ctx.signature_label is not None and label != ctx.signature_label:
                continue  # the route names the one label it considers
            if sig.keyid is None or not is_key_id(sig.keyid):  # (no store read for junk)
                continue
            found = await self._apps.get(sig.keyid)
            if found is None or not is_active(found[0], ctx.now):
                continue
            app, key = found
            try:
                self._check(
                    sig,
                    signatures[label],
                    app,
                    key,
                    view,
                    message,
                    ctx.now,
                    ctx.signature_components,
                )
            except (InvalidCredential, rfc9421.SignatureError, StructuredFieldError) as exc:
                failure = f"{label}: {exc}"
                continue
            await self._use_nonce(app.key_id, sig, ctx.now)
            return self._principal(app)
        raise InvalidCredential(debug=failure)

    def _principal(self, app: AppRecord) -> Principal:
        """The app's principal: made once per app record (the cache's, re-read each second)."""
        made = self._principals.get(app.key_id)
        if made is not None and made[0] is app:
            return made[1]
        principal = verified_principal(
            subject=app.name,
            client_id=app.key_id,
            scopes=frozenset(app.scopes),
            auth_method=self.method,
        )
        if len(self._principals) >= _PRINCIPALS_SIZE:
            self._principals.clear()
        self._principals[app.key_id] = (app, principal)
        return principal

    def _message(self, view: RequestView, hosts: list[bytes]) -> rfc9421.Message:
        """``hosts``: the request's Host field lines."""
        if view.via_trusted_proxy:
            scheme, authority = self._public_scheme, self._public_authority
        else:
            scheme = view.scheme
            authority = _authority(hosts[0], scheme) if len(hosts) == 1 else ""
        return rfc9421.Message(
            method=view.method,
            scheme=scheme,
            authority=authority,
            path=(view.raw_path or view.path.encode()).decode("latin-1"),
            query=view.query,
            headers=view.headers,
        )

    def _check(
        self,
        sig: rfc9421.SignatureInput,
        signature: bytes,
        app: AppRecord,
        key: Any,
        view: RequestView,
        message: rfc9421.Message,
        now: datetime,
        extra: tuple[str, ...] = (),
    ) -> None:
        """``extra``: what the route requires covered besides the defaults."""
        if sig.alg is not None and sig.alg != app.alg:
            raise InvalidCredential(debug=f"alg {sig.alg!r} is not the app's {app.alg!r}")
        at = int(now.timestamp())
        if not sig.created - MAX_SKEW <= at <= _last_second(sig.created):
            raise InvalidCredential(debug="created outside the accepted window")
        if sig.expires is not None and sig.expires <= at:
            raise InvalidCredential(debug="the signature expired")
        if sig.nonce is None or not 0 < len(sig.nonce) <= MAX_NONCE_CHARS:
            raise InvalidCredential(debug="a nonce is required")
        missing = [name for name in _REQUIRED if not sig.covers(name)]
        if view.query and not sig.covers("@query"):
            missing.append("@query")
        if _has_body(view) and not sig.covers("content-digest"):
            missing.append("content-digest")
        missing += [name for name in extra if not sig.covers(name)]
        if missing:
            raise InvalidCredential(debug="not covered: " + " ".join(missing))
        base = rfc9421.signature_base(sig, message)
        rfc9421_algorithms.verify_signature(app.alg, key, base, signature)  # SignatureInvalid
        if sig.covers("content-digest"):
            if view.body is None:  # the adapter did not read it: fail closed
                raise InvalidCredential(debug="the body was not read before the decision")
            problem = rfc9530.digest_problem(view.header_values(b"content-digest"), view.body)
            if problem is not None:
                raise InvalidCredential(debug=f"Content-Digest: {problem}")

    async def _use_nonce(self, key_id: str, sig: rfc9421.SignatureInput, now: datetime) -> None:
        assert sig.nonce is not None  # (checked)
        # Kept while the signature could be accepted: through its last accepted second (the
        # window of ``_check``), not for a span from now -- a signature created MAX_SKEW ahead
        # stays acceptable until created + MAX_AGE, which "now + MAX_AGE + MAX_SKEW" misses by
        # up to a second (a replay in the last second of its life).
        keep = max(now, datetime.fromtimestamp(_last_second(sig.created) + 1, UTC))
        try:
            fresh = await self._nonces.use(key_id, sig.nonce, keep, now)
        except BackendUnavailable:
            raise  # 503: never admitted without its replay check
        if not fresh:
            raise InvalidCredential(debug="replay: the nonce was used before")

    def challenge(self, error: AuthError | None) -> str:
        return CHALLENGE


def _fields(headers: tuple[tuple[bytes, bytes], ...]) -> tuple[list[bytes], ...]:
    """The lines of ``Signature-Input``, ``Signature`` and ``Host``, in order (one pass)."""
    inputs: list[bytes] = []
    signatures: list[bytes] = []
    hosts: list[bytes] = []
    for name, value in headers:
        if name == b"signature-input":
            inputs.append(value)
        elif name == b"signature":
            signatures.append(value)
        elif name == b"host":
            hosts.append(value)
    return inputs, signatures, hosts


def _last_second(created: int) -> int:
    """The last whole second (Unix time) at which a signature ``created`` then is accepted."""
    return created + MAX_AGE


_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")
#: ``_normal_authority`` of the Host fields seen (a pure function of field and scheme): a
#: gateway sees a handful of them, so the few hundred kept here answer nearly every request.
_AUTHORITIES: dict[tuple[bytes, str], str] = {}
_AUTHORITIES_SIZE: Final = 256
_AUTHORITY_MAX_BYTES: Final = 256


def _authority(host: bytes, scheme: str) -> str:
    """``_normal_authority`` of a Host field's value."""
    known = _AUTHORITIES.get((host, scheme))
    if known is not None:
        return known
    authority = _normal_authority(host.decode("latin-1"), scheme)
    if len(host) <= _AUTHORITY_MAX_BYTES:
        if len(_AUTHORITIES) >= _AUTHORITIES_SIZE:
            _AUTHORITIES.clear()
        _AUTHORITIES[(host, scheme)] = authority
    return authority


def _normal_authority(authority: str, scheme: str) -> str:
    """RFC 9421 §2.2.3 (RFC 9110 §4.2.3): lower case, the scheme's default port left out; "" for
    what is not a host[:port]."""
    authority = authority.strip().lower()
    host, sep, port = authority.rpartition(":") if not authority.endswith("]") else ("", "", "")
    if not sep or "]" in port:
        host, port = authority, ""
    if not _HOST.fullmatch(host) or (port and not port.isdigit()):
        return ""
    default = _DEFAULT_PORTS.get(scheme)
    return host if (not port or (default and ":" + port == default)) else f"{host}:{port}"
