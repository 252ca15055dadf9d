"""Shared helpers for the gateway-level JWT tests (``jwt`` method, external issuers).

* ``Signer``: a key pair (Ed25519, P-256 or RSA-2048, pyca ``cryptography``) with its public JWK,
  PEM and a raw signer, so that any header, payload bytes and signature can be built
  (``mint_raw``); ``mint_pyjwt`` and ``mint_joserfc`` mint with the two stock libraries.
* ``JWKSServer``: a threaded stdlib HTTP server on 127.0.0.1 whose answers (JWKS body, status,
  delay, Cache-Control, redirects) each test controls per path, and which counts requests.
* ``add_issuer`` / ``remove_issuer``: issuers written straight to a gateway's store (the running
  gateway picks them up within 0.5 s); ``wait_until`` polls instead of sleeping blindly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from restguard.credentials.jwt_issuers import new_issuer
from restguard.store.ports import IssuerRecord
from restguard.store.sql import open_store
from tests.harness import GatewayProcess, free_port

# shared with the unit tests' helpers, and re-exported for the gateway-level tests
from tests.unit.keys.jwt_helpers import DROP as DROP
from tests.unit.keys.jwt_helpers import b64 as b64
from tests.unit.keys.jwt_helpers import part as part
from tests.unit.keys.jwt_helpers import uint as uint

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def bearer(token: str | bytes) -> tuple[bytes, bytes]:
    raw = token.encode("latin-1") if isinstance(token, str) else token
    return (b"Authorization", b"Bearer " + raw)


# --- keys ---------------------------------------------------------------------------------------


@dataclass
class Signer:
    """One private key, the JWS algorithm it signs with, and its ``kid``."""

    alg: str
    private: Any
    kid: str

    @classmethod
    def generate(cls, alg: str, kid: str) -> Signer:
        if alg == "EdDSA":
            return cls(alg, ed25519.Ed25519PrivateKey.generate(), kid)
        if alg == "ES256":
            return cls(alg, ec.generate_private_key(ec.SECP256R1()), kid)
        if alg == "RS256":
            return cls(alg, rsa.generate_private_key(65537, 2048), kid)
        raise ValueError(alg)

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def jwk(self, **extra: Any) -> dict[str, Any]:
        pub = self.public
        if self.alg == "EdDSA":
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            jwk: dict[str, Any] = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
        elif self.alg == "ES256":
            nums = pub.public_numbers()
            jwk = {"kty": "EC", "crv": "P-256", "x": uint(nums.x, 32), "y": uint(nums.y, 32)}
        else:
            nums = pub.public_numbers()
            jwk = {"kty": "RSA", "n": uint(nums.n), "e": uint(nums.e)}
        return {**jwk, "kid": self.kid, "use": "sig", **extra}

    def public_pem(self) -> bytes:
        return bytes(
            self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def public_der(self) -> bytes:
        return bytes(
            self.public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def private_pem(self) -> bytes:
        return bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def sign_der(self, signing_input: bytes) -> bytes:
        """ES256 only: the DER ECDSA signature (what JWS must NOT carry)."""
        return bytes(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg == "EdDSA":
            return bytes(self.private.sign(signing_input))
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.sign_der(signing_input))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))


def jwks_of(*signers: Signer) -> dict[str, Any]:
    return {"keys": [s.jwk() for s in signers]}


# --- tokens -------------------------------------------------------------------------------------


def now() -> int:
    return int(time.time())


def claims_for(issuer: str, audience: str, **over: Any) -> dict[str, Any]:
    """Valid claims for ``issuer``/``audience``; ``over`` replaces (``DROP`` removes) members."""
    t = now()
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "alice",
        "client_id": "app-1",
        "scope": "notes:read",
        "iat": t,
        "exp": t + 300,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


def mint_raw(
    signer: Signer,
    payload: dict[str, Any] | bytes | str,
    header: dict[str, Any] | bytes | str | None = None,
    **header_over: Any,
) -> str:
    """A compact JWS signed by ``signer`` over exactly the given header and payload."""
    if header is None:
        header = {"alg": signer.alg, "typ": "JWT", "kid": signer.kid, **header_over}
        header = {k: v for k, v in header.items() if v is not DROP}
    signing_input = part(header) + "." + part(payload)
    return signing_input + "." + b64(signer.sign(signing_input.encode()))


def mint_pyjwt(signer: Signer, payload: dict[str, Any], **headers: Any) -> str:
    return pyjwt.encode(
        payload, signer.private, algorithm=signer.alg, headers={"kid": signer.kid, **headers}
    )


def _joserfc_key(signer: Signer) -> Any:
    pem = signer.private_pem()
    if signer.alg == "EdDSA":
        return OKPKey.import_key(pem)
    if signer.alg == "ES256":
        return ECKey.import_key(pem)
    return RSAKey.import_key(pem)


def mint_joserfc(signer: Signer, payload: dict[str, Any], **headers: Any) -> str:
    """joserfc's token. ``alg`` in ``headers`` may name ``Ed25519`` (RFC 9864) for an Ed25519
    key; joserfc warns that ``EdDSA`` is deprecated, which is not this test's concern."""
    header = {"alg": signer.alg, "kid": signer.kid, **headers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = jose_jwt.encode(header, payload, _joserfc_key(signer), algorithms=[header["alg"]])
    return str(token)


# --- the JWKS server ----------------------------------------------------------------------------


@dataclass
class Endpoint:
    """What one path of the JWKS server answers."""

    body: dict[str, Any] | bytes = field(default_factory=lambda: {"keys": []})
    status: int = 200
    delay: float = 0.0
    cache_control: str | None = None
    location: str | None = None  # a redirect (with a 3xx status)
    content_type: str = "application/json"


class JWKSServer:
    """A threaded HTTP server on 127.0.0.1; ``endpoints[path]`` says what ``path`` answers,
    ``hits[path]`` counts the GETs it received (unknown paths: 404, counted too)."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.hits: dict[str, int] = {}
        self.log: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                with owner._lock:
                    owner.hits[path] = owner.hits.get(path, 0) + 1
                    owner.log.append((time.monotonic(), path))
                    endpoint = owner.endpoints.get(path)
                if endpoint is None:
                    endpoint = Endpoint(body=b"not found", status=404, content_type="text/plain")
                if endpoint.delay:
                    time.sleep(endpoint.delay)
                body = endpoint.body
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(endpoint.status)
                    self.send_header("Content-Type", endpoint.content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    self.send_header("Connection", "close")
                    if endpoint.cache_control is not None:
                        self.send_header("Cache-Control", endpoint.cache_control)
                    if endpoint.location is not None:
                        self.send_header("Location", endpoint.location)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (timeouts, size caps)
                    pass
                self.close_connection = True

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: dict[str, Any] | bytes, **options: Any) -> str:
        """Serve ``body`` at ``path`` (replacing what was there); returns the URL."""
        with self._lock:
            self.endpoints[path] = Endpoint(body=body, **options)
        return self.url(path)

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits.get(path, 0)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


# --- issuers in a gateway's store ---------------------------------------------------------------


def add_issuer(
    gw: GatewayProcess,
    *,
    issuer: str,
    jwks_uri: str,
    audience: str,
    algorithms: tuple[str, ...] = (),
    scope_claim: str = "scope",
    typ: str | None = None,
    leeway: float = 0,
) -> IssuerRecord:
    """Trust ``issuer`` in ``gw``'s database (as ``restguard issuer add`` does, no probe)."""
    record = new_issuer(
        issuer=issuer,
        jwks_uri=jwks_uri,
        audience=audience,
        now=datetime.now(UTC),
        algorithms=algorithms,
        scope_claim=scope_claim,
        typ=typ,
        leeway=leeway,
        own_issuer=gw.settings.server.public_url,
    )

    async def insert() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.issuers.insert(record)
        finally:
            store.close()

    asyncio.run(insert())
    return record


def remove_issuer(gw: GatewayProcess, issuer_id: str) -> None:
    async def remove() -> None:
        store = open_store(gw.settings.database_url)
        try:
            await store.issuers.remove(issuer_id)
        finally:
            store.close()

    asyncio.run(remove())


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05
) -> float:
    """Poll ``predicate`` until it holds; returns the seconds it took (fails past ``timeout``)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
