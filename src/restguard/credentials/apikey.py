"""API keys: ``rg_ak_<id>_<secret><checksum>``.

* ``id``: 12 characters of ``[0-9a-z]``, public, the handle for revoke/rotate and the audit log.
* ``secret``: 43 characters of base62 from ``secrets`` (256 bits).
* ``checksum``: CRC32 of everything before it, 6 characters of base62, so secret scanners (and
  restguard itself) can tell a real key from a typo without a database look-up.

Keys are accepted in ``Authorization: ApiKey <key>``, ``Authorization: Bearer <key>`` (what
Stripe, GitHub and Unkey users send; the ``rg_ak_`` prefix tells a key from a JWT or an OAuth
token) and ``X-API-Key: <key>``; never in the query string (the guard refuses that on every
route). Only the SHA-256 digest is stored; checks are constant-time. Records are cached for at
most ``cache_ttl`` seconds (revocation reaches every instance within one second).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from restguard.clock import Clock
from restguard.credentials.base import AuthContext, Credential
from restguard.credentials.read_through import ReadThrough
from restguard.errors import AuthError, InvalidCredential, InvalidRequest
from restguard.keys.hashing import digest_matches, token_digest
from restguard.store.ports import ApiKeyRecord, ApiKeyStore
from restguard.tokens import checksum62
from restguard.types import Principal, RequestView, verified_principal

PREFIX = "rg_ak_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LEN, _SECRET_LEN, _CHECK_LEN = 12, 43, 6
_KEY = re.compile(r"^rg_ak_([0-9a-z]{12})_([0-9A-Za-z]{49})$")
MAX_KEY_CHARS = 128
_BEARER_KEY = b"rg_ak_"


def new_key_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))


def generate_key(key_id: str | None = None) -> tuple[str, str]:
    """A fresh (id, key). The key is shown once and never stored."""
    key_id = key_id or new_key_id()
    body = PREFIX + key_id + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    return key_id, body + checksum62(body)


def parse_key(text: str) -> str:
    """The key's id if ``text`` is well-formed with a valid checksum; InvalidCredential (401)
    otherwise: a malformed key is an invalid credential, like a wrong one."""
    m = _KEY.match(text)
    if not m or checksum62(text[:-_CHECK_LEN]) != text[-_CHECK_LEN:]:
        raise InvalidCredential(debug="api key syntax or checksum")
    return m.group(1)


MAX_NAME_CHARS = 200


def check_name(name: str) -> str:
    """A key's name becomes ``X-Restguard-Subject``: printable, 1 to 200 characters, no control
    characters (they could split a header block). ValueError says what is wrong."""
    if not name.strip():
        raise ValueError("must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"must be at most {MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise ValueError("must not contain control characters")
    return name


def new_record(
    name: str, scopes: tuple[str, ...], now: datetime, expires_in: float | None
) -> tuple[ApiKeyRecord, str]:
    """A record to store and the key to show once; ValueError for a bad name."""
    check_name(name)
    key_id, key = generate_key()
    expires = now + timedelta(seconds=expires_in) if expires_in else None
    return ApiKeyRecord(key_id, name, token_digest(key), scopes, now, expires), key


def _principal(record: ApiKeyRecord) -> Principal:
    """Who a key's record says its holder is (kept with the cached record)."""
    return verified_principal(
        subject=record.name,
        client_id=record.id,
        scopes=set(record.scopes),
        auth_method="api_key",
    )


class ApiKeyAuthenticator:
    """Verifies restguard API keys against an ApiKeyStore."""

    method = "api_key"
    header_names = frozenset({b"authorization", b"x-api-key"})  # (ReadsHeaders)
    stable_extract = True  # (ReadsHeaders)
    unrepeated = False  # (ReadsHeaders)
    presentation = (
        "an API key in 'Authorization: Bearer <key>', 'Authorization: ApiKey <key>' or "
        "'X-API-Key: <key>'"
    )

    def __init__(
        self,
        store: ApiKeyStore,
        clock: Clock,
        *,
        cache_ttl: float = 1.0,
        cache_size: int = 10_000,
        touch_interval: float = 60.0,
        usage: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self._clock, self._size, self._touch_interval = clock, cache_size, touch_interval
        # (one read per key at a time; ValueError for a ttl past a second)
        self._cache = ReadThrough(store.get, _principal, cache_ttl, cache_size, clock.monotonic)
        # Last-used times go to a bookkeeper (store.bookkeeping) that writes them off the
        # decision path; without one they are not recorded.
        self._usage = usage
        self._touched: dict[str, float] = {}
        # key -> the stored digest it was found to match (that very bytes object, from the
        # cached record): while the record stays cached, the key is not hashed again. A dict
        # of secrets compares a key with == only after its full SipHash (random per process)
        # matched, so it times nothing an attacker can steer, as the JWT/oauth2 verified dicts.
        self._matched: dict[str, bytes] = {}

    @staticmethod
    def _find(view: RequestView) -> list[tuple[bytes, bytes]]:
        """(header name, raw key) for every place the request carries an API key."""
        auth = header = None
        for name, value in view.headers:  # one pass; a repeated field is ambiguous
            if name == b"authorization":
                if auth is not None:
                    raise InvalidRequest("The authorization header must not be repeated.")
                auth = value
            elif name == b"x-api-key":
                if header is not None:
                    raise InvalidRequest("The x-api-key header must not be repeated.")
                header = value
        found: list[tuple[bytes, bytes]] = []
        if auth is not None:
            # RFC 9110 §11.4 separates the scheme with SP; lenient servers also take a tab.
            scheme, _, rest = auth.replace(b"\t", b" ").partition(b" ")
            scheme = scheme.lower()
            rest = rest.strip(b" ")
            if scheme == b"apikey" or (scheme == b"bearer" and rest.startswith(_BEARER_KEY)):
                found.append((b"authorization", rest))
        if header is not None:
            found.append((b"x-api-key", header))
        return found

    def carriers(self, view: RequestView) -> tuple[bytes, ...]:
        for name, _ in view.headers:  # (most requests carry neither: one cheap pass)
            if name == b"x-api-key" or name == b"authorization":
                break
        else:
            return ()
        try:
            return tuple([name for name, _ in self._find(view)])
        except InvalidRequest:  # a repeated header: both kinds are stripped, whatever they hold
            return (b"authorization", b"x-api-key")

    def extract(self, view: RequestView) -> Credential | None:
        found = self._find(view)
        if not found:
            return None
        if len(found) > 1:
            raise InvalidRequest("Send the API key in one header only.", debug="api key twice")
        name, raw = found[0]
        if len(raw) > MAX_KEY_CHARS:
            raise InvalidCredential(debug="api key too long")
        try:
            text = raw.decode("ascii").strip(" \t")
        except UnicodeDecodeError:
            raise InvalidCredential(debug="api key not ascii") from None
        return Credential(self.method, text, parse_key(text), (name,))

    def drop_cached(self) -> None:
        self._cache.drop_cached()

    async def authenticate(self, credential: Credential, ctx: AuthContext) -> Principal:
        key_id = credential.credential_id
        hit = await self._cache.get(key_id)
        if hit is None:
            raise InvalidCredential(debug="unknown api key id")
        record, principal = hit
        secret = credential.secret
        if self._matched.get(secret) is not record.key_hash:
            if not digest_matches(secret, record.key_hash):
                raise InvalidCredential(debug="api key secret mismatch")
            if len(self._matched) >= self._size:
                self._matched.clear()
            self._matched[secret] = record.key_hash
        if record.revoked_at is not None and record.revoked_at <= ctx.now:
            raise InvalidCredential(debug="api key revoked")
        if record.expires_at is not None and record.expires_at <= ctx.now:
            raise InvalidCredential(debug="api key expired")
        mono = self._clock.monotonic()
        usage = self._usage
        if (
            usage is not None
            and mono - self._touched.get(key_id, -self._touch_interval) >= self._touch_interval
        ):
            usage(key_id, ctx.now)  # noted in memory, written in the background
            self._touched[key_id] = mono
            if len(self._touched) > self._size:
                self._touched.clear()
        return principal  # verified above; the same object while the record is cached

    def challenge(self, error: AuthError | None) -> str:
        return 'ApiKey realm="restguard"'
