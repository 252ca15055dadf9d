"""``OAuth1Auth``: sign every request as an OAuth 1.0a consumer (RFC 5849).

Per request (§3.1): ``oauth_consumer_key``, ``oauth_signature_method``, ``oauth_timestamp`` (now)
and a fresh ``oauth_nonce`` (§3.3), ``oauth_token`` when signing with token credentials (without
one, a two-legged request), ``oauth_callback`` and ``oauth_verifier`` when given (§2.1, §2.3),
``oauth_version="1.0"``, all sent in the ``Authorization: OAuth`` header (§3.5.1). The signature
base string (§3.4.1) covers the method, the URL as sent (§3.4.1.2: scheme, host, a non-default
port, the path) and the parameters of the query and, only when the body is single-part
``application/x-www-form-urlencoded``, of the body (§3.4.1.3.1); another body (JSON, multipart,
bytes) is not covered.

The base string and the header are built by :mod:`restguard.wire.rfc5849_signer`, and the
signing loads no cryptography library, so that ``restguard.client`` needs none of the server's
dependencies:

* ``HMAC-SHA1`` (§3.4.2) and ``HMAC-SHA256``: the standard library's ``hmac``;
* ``PLAINTEXT`` (§3.4.4): the secrets themselves, so sent over ``https://`` only;
* ``RSA-SHA1`` (§3.4.3): an ``rsa_signer`` callable you pass, see :class:`OAuth1Auth`.
"""

from __future__ import annotations

import binascii
import secrets
import string
import time
from collections.abc import AsyncGenerator, Callable, Generator
from functools import partial
from typing import Any, Final
from urllib.parse import urlsplit

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("restguard.client needs httpx: pip install 'restguard[client]'") from exc

from restguard.wire.rfc5849 import OAuthError
from restguard.wire.rfc5849_signatures import plaintext_signature, sign_hmac
from restguard.wire.rfc5849_signer import sign_request_with

__all__ = ["SIGNATURE_METHODS", "OAuth1Auth", "RsaSigner"]

SIGNATURE_METHODS: Final = ("HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT", "RSA-SHA1")
FORM: Final = "application/x-www-form-urlencoded"
# 22 characters of [A-Za-z0-9]: 130 random bits, and a nonce that oauthlib-based servers accept
# as it is by default (their check_nonce: 20 to 30 alphanumeric characters).
NONCE_CHARS: Final = 22
_NONCE_ALPHABET: Final = string.ascii_letters + string.digits

RsaSigner = Callable[[str], str]
"""RSA-SHA1: signature base string -> ``oauth_signature`` (the RSASSA-PKCS1-v1_5 SHA-1
signature of the base string's ASCII bytes, base64-encoded)."""


class OAuth1Auth(httpx.Auth):
    """Sign requests as the consumer ``consumer_key``:
    ``httpx.Client(auth=OAuth1Auth(key, secret, token=..., token_secret=...))``,
    ``httpx.AsyncClient(auth=...)`` or ``requests.get(url, auth=...)``.

    ``signature_method`` is ``"HMAC-SHA1"`` (default), ``"HMAC-SHA256"`` or ``"PLAINTEXT"``,
    each with ``consumer_secret`` (the text exactly as ``restguard oauth1 consumer create``
    printed it), or ``"RSA-SHA1"`` with ``rsa_signer``, a callable ``base string ->
    oauth_signature``. restguard.client never loads ``cryptography``, so it takes no RSA key
    object; with ``cryptography`` installed, make the callable from the private key::

        from restguard.wire.rfc5849_algorithms import signer
        auth = OAuth1Auth(key, signature_method="RSA-SHA1",
                          rsa_signer=signer("RSA-SHA1", rsa_private_key=private_key))

    ``token`` and ``token_secret`` are the token credentials (or the temporary credentials
    while exchanging them, with ``verifier``); without ``token`` every request is two-legged.
    ``callback`` (the temporary credential request's ``oauth_callback``, §2.1) and ``verifier``
    (``oauth_verifier``, §2.3) are sent with every request when given; ``realm`` is the
    header's ``realm`` (§3.5.1). RSA-SHA1 uses no secret: ``consumer_secret`` and
    ``token_secret`` are then ignored.

    PLAINTEXT sends the secrets themselves (§3.4.4: "MUST be used with a transport-layer
    mechanism such as TLS"): a request to an ``http://`` URL raises ``ValueError`` unless
    ``allow_insecure_plaintext=True`` (for tests). A redirect is not signed again: a redirect
    to the same origin carries the first request's header, which the server refuses.
    """

    # Only a form body is signed: the flows below read the body when the request has one.
    requires_request_body = False

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str | None = None,
        *,
        token: str | None = None,
        token_secret: str | None = None,
        signature_method: str = "HMAC-SHA1",
        rsa_signer: RsaSigner | None = None,
        callback: str | None = None,
        verifier: str | None = None,
        realm: str | None = None,
        allow_insecure_plaintext: bool = False,
    ) -> None:
        if not isinstance(consumer_key, str) or not consumer_key:
            raise ValueError("consumer_key is the consumer's key (ck_...)")
        if signature_method not in SIGNATURE_METHODS:
            raise ValueError(
                f"unsupported signature method {signature_method!r}; "
                f"use one of {', '.join(SIGNATURE_METHODS)}"
            )
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token is empty: leave it out (None) for a two-legged request")
        if token_secret is not None and token is None:
            raise ValueError("token_secret without token")
        for name, value in (("callback", callback), ("verifier", verifier), ("realm", realm)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} is a str")
        self._sign = _signer(signature_method, consumer_secret, token_secret, rsa_signer)
        self.consumer_key, self.signature_method, self.token = consumer_key, signature_method, token
        self.callback, self.verifier, self.realm = callback, verifier, realm
        self._allow_insecure_plaintext = allow_insecure_plaintext
        # Refuse a malformed realm (control characters) now, not on the first request; a dummy
        # signer: the key is not used here.
        try:
            self._header("GET", "https", "example.test", "/", b"", None, lambda base: "-")
        except OAuthError as exc:
            raise ValueError(str(exc)) from exc

    # -- signing --------------------------------------------------------------------------------

    def _header(
        self,
        method: str,
        scheme: str,
        authority: str,
        raw_path: str,
        raw_query: bytes,
        form_body: bytes | None,
        sign: RsaSigner | None = None,
    ) -> str:
        """The ``Authorization`` value of one request: a new nonce and timestamp every time."""
        if (
            self.signature_method == "PLAINTEXT"
            and scheme.lower() != "https"
            and not self._allow_insecure_plaintext
        ):
            raise ValueError(
                "PLAINTEXT sends the secrets themselves: https:// only (RFC 5849 §3.4.4)"
            )
        try:
            return sign_request_with(
                method,
                scheme,
                authority,
                raw_path,
                raw_query,
                form_body,
                signer=sign or self._sign,
                consumer_key=self.consumer_key,
                signature_method=self.signature_method,
                nonce="".join(secrets.choice(_NONCE_ALPHABET) for _ in range(NONCE_CHARS)),
                timestamp=int(time.time()),
                token=self.token,
                callback=self.callback,
                verifier=self.verifier,
                realm=self.realm,
            )
        except OAuthError as exc:  # e.g. an oauth_ parameter already in the query
            raise ValueError(f"cannot sign this request with OAuth 1.0a: {exc}") from exc

    # -- httpx ----------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` (a form body must have been read: the two flows below do it)."""
        self._sign_httpx(request)
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """``httpx.Client``: reads the body first only when it is a form (its parameters are
        signed); one signature per request, no retry."""
        if _is_form(request.headers.get("content-type")):
            request.read()
        self._sign_httpx(request)
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """``httpx.AsyncClient``: as :meth:`sync_auth_flow`."""
        if _is_form(request.headers.get("content-type")):
            await request.aread()
        self._sign_httpx(request)
        yield request

    def _sign_httpx(self, request: httpx.Request) -> None:
        url = request.url
        # §3.4.1.2: "The host and port values MUST match the content of the HTTP request "Host"
        # header field": the Host the request carries (httpx sets it from the URL).
        authority = request.headers.get("host") or url.netloc.decode("ascii")
        raw_path, _, raw_query = url.raw_path.partition(b"?")
        form = request.content if _is_form(request.headers.get("content-type")) else None
        request.headers["Authorization"] = self._header(
            request.method, url.scheme, authority, raw_path.decode("ascii"), raw_query, form
        )

    # -- requests -------------------------------------------------------------------------------

    def __call__(self, request: Any) -> Any:
        """The ``requests`` auth protocol (a ``PreparedRequest``).

        A form body given as ``str`` (``data={...}`` makes one) is sent as its UTF-8 bytes, the
        bytes signed; a streamed form body (a file or a generator) cannot be signed: pass it
        as bytes or a dict. ``requests`` does not call auth again on a redirect.
        """
        parts = urlsplit(str(request.url))
        host = request.headers.get("Host")
        authority = _text(host) if host else parts.netloc.rpartition("@")[2]
        raw_path, _, raw_query = str(request.path_url).partition("?")
        form: bytes | None = None
        content_type = request.headers.get("Content-Type")
        if _is_form(_text(content_type) if content_type is not None else None):
            body = request.body
            if body is None:
                body = b""
            elif isinstance(body, str):
                body = body.encode("utf-8")
                request.body = body
                request.prepare_content_length(body)
            elif not isinstance(body, bytes | bytearray):
                raise TypeError(
                    "OAuth1Auth signs a form body's parameters: pass it as bytes, str or a dict, "
                    "not a stream"
                )
            form = bytes(body)
        request.headers["Authorization"] = self._header(
            str(request.method), parts.scheme, authority, raw_path, raw_query.encode("utf-8"), form
        )
        return request

    def __repr__(self) -> str:
        return f"OAuth1Auth({self.consumer_key!r}, signature_method={self.signature_method!r})"


def _signer(
    method: str,
    consumer_secret: str | None,
    token_secret: str | None,
    rsa_signer: RsaSigner | None,
) -> RsaSigner:
    if method == "RSA-SHA1":
        if rsa_signer is None:
            raise ValueError(
                "RSA-SHA1 needs rsa_signer, a callable base string -> oauth_signature, e.g. "
                "restguard.wire.rfc5849_algorithms.signer('RSA-SHA1', rsa_private_key=key)"
            )
        if not callable(rsa_signer):
            raise TypeError(
                "rsa_signer is a callable base string -> oauth_signature, not a key object: "
                "restguard.wire.rfc5849_algorithms.signer('RSA-SHA1', rsa_private_key=key) "
                "makes one from a cryptography RSAPrivateKey"
            )
        return partial(_checked_rsa, rsa_signer)
    if rsa_signer is not None:
        raise ValueError(f"rsa_signer is for RSA-SHA1, not {method}")
    if consumer_secret is None or consumer_secret == "":
        raise ValueError(f"{method} needs the consumer secret")
    if not isinstance(consumer_secret, str) or not isinstance(token_secret or "", str):
        raise TypeError("consumer_secret and token_secret are str, as printed")
    if method == "PLAINTEXT":
        return partial(_plaintext, consumer_secret, token_secret or "")
    return partial(_hmac, method, consumer_secret, token_secret or "")


def _hmac(method: str, consumer_secret: str, token_secret: str, base_string: str) -> str:
    return sign_hmac(method, base_string, consumer_secret, token_secret)


def _plaintext(consumer_secret: str, token_secret: str, base_string: str) -> str:
    return plaintext_signature(consumer_secret, token_secret)


def _checked_rsa(sign: RsaSigner, base_string: str) -> str:
    signature = sign(base_string)
    try:
        ok = isinstance(signature, str) and bool(
            binascii.a2b_base64(signature.encode("ascii"), strict_mode=True)
        )
    except (UnicodeEncodeError, binascii.Error):
        ok = False
    if not ok:
        raise ValueError("RSA-SHA1: rsa_signer must return the signature base64-encoded, a str")
    return signature


def _is_form(content_type: str | None) -> bool:
    """The media type (case-insensitive, parameters ignored) is urlencoded (§3.4.1.3.1)."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip(" \t").lower() == FORM


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")
