"""``SignatureAuth``: sign every request as a restguard app (RFC 9421 HTTP Message Signatures,
RFC 9530 ``Content-Digest``).

Per request, what the gateway requires (``restguard.credentials.signature``): the components
``@method``, ``@authority`` and ``@path``, ``@query`` when the URL has a query, and
``content-digest`` when there is a body (a ``Content-Digest: sha-256=:...:`` field is added);
``created`` is now, ``nonce`` a fresh random value, ``keyid`` the app's ``key_id`` and ``alg``
the app's algorithm. A request is signed once per send: httpx signs each redirect hop anew, and
nothing here ever sends a nonce twice.

The signature base is built by :mod:`restguard.wire.rfc9421` (no cryptography library), and the
signing needs none either, so that ``restguard.client`` loads none of the server's dependencies:

* ``hmac-sha256``: the standard library's ``hmac``;
* ``ed25519``: ``key.sign(base)`` of the key object you pass (``cryptography``'s
  ``Ed25519PrivateKey`` has exactly that method);
* ``ecdsa-p256-sha256``: a ``signer`` callable you pass, ``base -> r || s`` (64 bytes, RFC 9421
  §3.3.4; not DER), see :class:`SignatureAuth`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any
from urllib.parse import urlsplit

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("restguard.client needs httpx: pip install 'restguard[client]'") from exc

from restguard.wire.rfc8941 import Params
from restguard.wire.rfc9421_signer import ALGORITHMS, RequestSigner, Signer, SupportsSign

__all__ = ["ALGORITHMS", "SignatureAuth", "Signer", "SupportsSign"]


class SignatureAuth(httpx.Auth):
    """Sign requests as the app ``key_id``: ``httpx.Client(auth=SignatureAuth(key_id, secret))``,
    ``httpx.AsyncClient(auth=...)`` or ``requests.get(url, auth=...)``.

    ``key`` depends on ``alg`` (the app's algorithm, as given to ``restguard app create``):

    * ``"hmac-sha256"`` (default): the secret as ``restguard app create`` printed it (a str,
      base64url without padding), or the raw HMAC key (bytes: the decoded secret);
    * ``"ed25519"``: the private key, an object with ``sign(data) -> bytes`` such as
      ``cryptography``'s ``Ed25519PrivateKey``; or a callable ``base -> signature``;
    * ``"ecdsa-p256-sha256"``: a callable ``base -> r || s``, the two integers big-endian and
      zero-padded to 32 bytes each (RFC 9421 §3.3.4; not the DER that most libraries return).
      With ``cryptography``::

          def signer(base: bytes) -> bytes:
              der = private_key.sign(base, ec.ECDSA(hashes.SHA256()))
              r, s = decode_dss_signature(der)
              return r.to_bytes(32, "big") + s.to_bytes(32, "big")

      (``restguard.wire.rfc9421_algorithms.signer("ecdsa-p256-sha256", private_key)`` is
      that function, outside ``restguard.client`` because it loads ``cryptography``.)

    ``components`` are covered IN ADDITION to the ones the gateway requires (which are always
    covered): e.g. ``("content-type", "@scheme")``; a covered header must be in every request.
    ``label`` names the signature; ``tag`` is RFC 9421's application-specific ``tag``.
    """

    requires_request_body = True  # the body's digest is signed: httpx reads it first

    def __init__(
        self,
        key_id: str,
        key: str | bytes | SupportsSign | Signer,
        *,
        alg: str = "hmac-sha256",
        components: Iterable[str | tuple[str, Params]] | None = None,
        label: str = "sig1",
        tag: str | None = None,
    ) -> None:
        self._signer = RequestSigner(
            key_id, key, alg=alg, components=components, label=label, tag=tag
        )
        self.key_id, self.alg, self.label, self.tag = key_id, alg, label, tag

    # -- httpx ----------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """One flow for ``httpx.Client`` and ``httpx.AsyncClient`` (httpx reads the body first,
        ``requires_request_body``); one signature per request, no retry."""
        url = request.url
        # @authority is what the gateway compares: the Host field the request carries.
        authority = request.headers.get("host") or url.netloc.decode("ascii")
        fields = self._signer.signed(
            request.method,
            url.scheme,
            authority,
            url.raw_path.decode("ascii"),
            request.headers.raw,
            request.content,
        )
        for name, value in fields:
            request.headers[name] = value
        yield request

    # -- requests -------------------------------------------------------------------------------

    def __call__(self, request: Any) -> Any:
        """The ``requests`` auth protocol (a ``PreparedRequest``).

        A ``str`` body is sent as its UTF-8 bytes (the digest's bytes); a streamed body (a file
        or a generator) cannot be signed: read it into bytes first. ``requests`` does not call
        auth again on a redirect, so a redirect is refused by the gateway, never replayed.
        """
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
            request.body = body
            request.prepare_content_length(body)
        elif not isinstance(body, bytes | bytearray):
            raise TypeError(
                "SignatureAuth signs the body's digest: pass the body as bytes, not a stream"
            )
        parts = urlsplit(str(request.url))
        headers = [(_bytes(name), _bytes(value)) for name, value in request.headers.items()]
        host = request.headers.get("Host")
        authority = _bytes(host).decode("latin-1") if host else parts.netloc.rpartition("@")[2]
        target = str(request.path_url)
        fields = self._signer.signed(
            str(request.method), parts.scheme, authority, target, headers, body
        )
        for name, value in fields:
            request.headers[name] = value
        return request

    def __repr__(self) -> str:
        return f"SignatureAuth({self.key_id!r}, alg={self.alg!r})"


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")
