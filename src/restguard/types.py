"""Framework-free values the core works on: RequestView in, Principal out."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import NamedTuple

from restguard.errors import InvalidCredential, InvalidRequest


class RequestView(NamedTuple):
    """A request as the core sees it: method, normalised path, raw query, headers.

    ``headers`` holds (lower-cased name, value) pairs as received, in order, less the ones
    removed before any decision (names other than letters, digits and ``-``; client-sent
    ``X-Restguard-*``). ``client`` is the client address after trusted-proxy handling;
    ``via_trusted_proxy`` says whether the peer was one of ``[server] trusted_proxies``.
    ``scheme`` is the one the request reached restguard with (RFC 9110 §4.2): ``https`` over
    TLS, else ``http`` (what a trusted proxy claims for its own client is not applied here).
    ``raw_path``: the path as received; ``body``: the body, when a verifier covers it.

    Immutable (a NamedTuple: one is built per request, and a frozen dataclass's constructor
    cost ~4x as much); ``view._replace(body=...)`` makes a changed copy.
    """

    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    client: str = ""
    via_trusted_proxy: bool = False
    scheme: str = "http"
    # The path as received (before normalisation; RFC 9421 ``@path`` signs this), and the
    # request body when an authenticator needed it for the decision (``ReadsBody``): None when
    # it was not read.
    raw_path: bytes = b""
    body: bytes | None = None
    # The request's id (``X-Request-Id``): a trusted proxy's, else one of restguard's own;
    # "" where no id was given (views built by embedding code).
    request_id: str = ""

    def __repr__(self) -> str:  # header values and the body may hold secrets: never shown
        names = ", ".join(name.decode("latin-1") for name, _ in self.headers)
        return (
            f"RequestView({self.method!r}, {self.path!r}, headers=[{names}], "
            f"client={self.client!r})"
        )

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
    # Who vouched for ``subject`` when it is not restguard itself (``jwt``: the token's ``iss``).
    # A subject is unique only together with its issuer (OpenID Connect Core §2).
    issuer: str = ""

    def __post_init__(self) -> None:
        if not getattr(_minting, "active", False):
            raise TypeError("a Principal is created by a verifier, not constructed directly")


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# What no identity value may hold: control characters (C0, DEL, C1), which could split or bend
# a header block, and lone surrogates, which cannot be written as UTF-8 at all.
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def verified_principal(
    *,
    subject: str,
    client_id: str,
    scopes: frozenset[str] | set[str],
    auth_method: str,
    issuer: str = "",
) -> Principal:
    """Create a Principal. For verifiers (credentials/*) and the anonymous public-route case.

    Every value is forwarded to the upstream as a header, so a credential whose values could
    not be written faithfully is an invalid credential (401), whatever vouched for it: a
    control character or lone surrogate in the subject, client id or issuer, or a scope that
    is not an RFC 6749 scope-token (a space inside one would read as two scopes upstream)."""
    for value in (subject, client_id, issuer):
        if _UNWRITABLE.search(value):
            raise InvalidCredential(debug="identity value with a control character or surrogate")
    for scope in scopes:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise InvalidCredential(debug="a scope that is not an RFC 6749 scope-token")
    _minting.active = True
    try:
        return Principal(subject, client_id, frozenset(scopes), auth_method, issuer)
    finally:
        _minting.active = False


ANONYMOUS = verified_principal(subject="", client_id="", scopes=frozenset(), auth_method="none")
