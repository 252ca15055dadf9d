"""Framework-free values the core works on: RequestView in, Principal out."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from restguard.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as the core sees it: method, normalised path, raw query, headers.

    ``headers`` holds (lower-cased name, value) pairs as received, in order, less the ones
    removed before any decision (names other than letters, digits and ``-``; client-sent
    ``X-Restguard-*``). ``client`` is the client address after trusted-proxy handling;
    ``via_trusted_proxy`` says whether the peer was one of ``[server] trusted_proxies``.
    ``scheme`` is the one the request reached restguard with (RFC 9110 §4.2): ``https`` over
    TLS, else ``http`` (what a trusted proxy claims for its own client is not applied here).
    """

    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    client: str = ""
    via_trusted_proxy: bool = False
    scheme: str = "http"

    def header_values(self, name: bytes) -> list[bytes]:
        """All values of header ``name`` (lower-case), in order."""
        return [v for k, v in self.headers if k == name]

    def single_header(self, name: bytes) -> bytes | None:
        """The one value of header ``name``; a repeated header is ambiguous and refused."""
        values = self.header_values(name)
        if len(values) > 1:
            raise InvalidRequest(f"The {name.decode()} header must not be repeated.")
        return values[0] if values else None


_minting = threading.local()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, as proven by a verifier. Only ``verified_principal`` creates one:
    direct construction and ``dataclasses.replace`` raise TypeError (tink's verified-token
    idea: a value only the verifier can make)."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    auth_method: str

    def __post_init__(self) -> None:
        if not getattr(_minting, "active", False):
            raise TypeError("a Principal is created by a verifier, not constructed directly")


def verified_principal(
    *, subject: str, client_id: str, scopes: frozenset[str] | set[str], auth_method: str
) -> Principal:
    """Create a Principal. For verifiers (credentials/*) and the anonymous public-route case."""
    _minting.active = True
    try:
        return Principal(subject, client_id, frozenset(scopes), auth_method)
    finally:
        _minting.active = False


ANONYMOUS = verified_principal(subject="", client_id="", scopes=frozenset(), auth_method="none")
