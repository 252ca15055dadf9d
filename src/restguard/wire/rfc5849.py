"""OAuth 1.0 (RFC 5849 §3) signed requests: parse the ``Authorization`` header, the query and
the form body, collect and check the parameters, build the signature base string.

Pure spec code: bytes in, values out, and no cryptography library. The rest of RFC 5849 lives
beside it: the percent encoding (§3.6) in :mod:`restguard.wire.rfc5849_encoding`; the
shared-secret methods ``HMAC-SHA1``, ``HMAC-SHA256`` and ``PLAINTEXT`` (standard library only,
so a client, ``restguard.client``, can sign with them without the server's dependencies) in
:mod:`restguard.wire.rfc5849_signatures`; ``RSA-SHA1`` and the one
:func:`~restguard.wire.rfc5849_algorithms.verify` for every method in
:mod:`restguard.wire.rfc5849_algorithms` (pyca ``cryptography``); the ``Authorization`` header a
client writes in :mod:`restguard.wire.rfc5849_signer`. The policy (timestamp window, nonce
single use, which methods a consumer may use, PLAINTEXT only over TLS, two-legged requests)
belongs to the authenticator.

Strictness, beyond the letter of §3.5 where the letter leaves room for two readings:

* protocol parameters come from exactly one place (§3.5: "one and only one"), and none is
  repeated (§3.1 step 2: "Each parameter MUST NOT appear more than once per request"); any
  parameter named ``oauth_*`` counts, wherever it is (§3.5);
* the ``Authorization`` header is parsed exactly as §3.5.1 writes it: ``name="value"`` pairs
  with the values percent-encoded (§3.6; lower-case hex and escaped unreserved characters are
  read, anything else is refused), separated by a comma with optional spaces or tabs; ``realm``
  is a quoted-string (RFC 2617) and is ignored; a name given twice is refused;
* a bad percent escape (``%4``, ``%zz``) anywhere is refused rather than read literally;
* a protocol parameter's value holds no control character (C0 or DEL);
* ``oauth_timestamp`` is canonical plain ASCII digits, positive (§3.3), without leading zeros;
  ``oauth_nonce`` and ``oauth_timestamp`` are required with every method (§3.1 lets PLAINTEXT
  omit them; restguard keeps replay protection for all).

Errata: RFC 5849 errata EID 2550 (verified) corrects the signature of the §3.1 / §3.4.1.1
example to ``r6/TJjbCOr97/+UU0NsvSne7s5g=``; the base string printed there is right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal, NamedTuple
from urllib.parse import unquote_to_bytes

from restguard.wire.rfc5849_encoding import (
    _UNRESERVED,
    _encode_normalized,
    _encode_octets,
    percent_encode,
)

__all__ = [
    "HMAC_METHODS",
    "MAX_AUTHORIZATION_BYTES",
    "MAX_NONCE_CHARS",
    "SIGNATURE_METHODS",
    "OAuthError",
    "OAuthParameterError",
    "OAuthRequest",
    "SignatureInvalid",
    "UnsupportedSignatureMethod",
    "base_string_uri",
    "collect",
    "normalize_parameters",
    "parse_authorization",
    "parse_form",
    "signature_base_string",
]

# §3.4.2-§3.4.4, and HMAC-SHA256: the same construction with SHA-256 (a common extension).
SIGNATURE_METHODS: Final = frozenset({"HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1", "PLAINTEXT"})
HMAC_METHODS: Final[Mapping[str, str]] = {"HMAC-SHA1": "sha1", "HMAC-SHA256": "sha256"}
# Checked before parsing (a bound, not a policy): an Authorization value longer than this, or a
# nonce longer than this, is a 400.
MAX_AUTHORIZATION_BYTES: Final = 8192
MAX_NONCE_CHARS: Final = 255
_MAX_TIMESTAMP_DIGITS: Final = 19  # fits a signed 64-bit column

_UNRESERVED_EQ: Final = _UNRESERVED + b"="
_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# §3.5.1 with RFC 2617's auth-param: name="quoted-string" (the values are checked per name),
# each after the start or a comma with optional white space; anything else is caught by the
# last alternative, so one findall both splits and checks the list.
_QUOTED_TEXT: Final = rb'[^"\\\x00-\x1f\x7f]*(?:\\[\t\x20-\x7e\x80-\xff][^"\\\x00-\x1f\x7f]*)*'
_PARAM_RE: Final = re.compile(
    rb'(?:^|[ \t]*,[ \t]*)([A-Za-z0-9._~%-]+)="(' + _QUOTED_TEXT + rb')"(?=[ \t]*,|$)|([\s\S])'
)
_SCHEME_RE: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QUOTED_PAIR_RE: Final = re.compile(rb"\\(.)", re.DOTALL)
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
_REQUIRED: Final = (
    "oauth_consumer_key",
    "oauth_signature_method",
    "oauth_signature",
    "oauth_timestamp",
    "oauth_nonce",
)

Source = Literal["header", "body", "query"]


class OAuthError(Exception):
    """Base of the errors below."""


class OAuthParameterError(OAuthError):
    """The request's OAuth parameters are malformed, missing, repeated, or sent in more than
    one place: RFC 5849 §3.2's 400 ("unsupported parameters, an unsupported signature method,
    missing parameters, or duplicated protocol parameters")."""


class UnsupportedSignatureMethod(OAuthParameterError):
    """``oauth_signature_method`` names a method this module does not implement (§3.2: 400)."""


class SignatureInvalid(OAuthError):
    """The signature does not verify with these credentials (§3.2: 401)."""


class OAuthRequest(NamedTuple):
    """A request's OAuth 1.0 parameters, collected and checked (§3.5), and its signature base
    string (§3.4.1). (A named tuple: immutable, and made on every signed request -- several
    times cheaper to build than a frozen dataclass.)

    ``protocol`` holds every ``oauth_*`` parameter, decoded (``oauth_signature`` included);
    ``params`` every request parameter in arrival order (query, then body, then header; the
    header's ``realm`` left out), decoded as UTF-8 (a byte that is not UTF-8 shows as U+FFFD
    here; the base string encodes the bytes as sent). ``token`` is ``None`` when
    ``oauth_token`` is absent or empty (§2.1: "The client MAY omit the empty oauth_token").
    """

    method: str
    base_uri: str
    normalized_parameters: str
    base_string: str
    source: Source
    protocol: Mapping[str, str]
    params: tuple[tuple[str, str], ...]
    realm: str | None
    consumer_key: str
    token: str | None
    signature_method: str
    signature: str
    timestamp: int
    nonce: str


# A collected parameter: decoded name, decoded value, "encoded name\0encoded value" (§3.6; the
# NUL makes a plain sort the (name, value) order, see collect) and whether both decoded as
# UTF-8 (a byte that is not shows as U+FFFD in the text; the encoding keeps the bytes).
_Param = tuple[str, str, str, bool]


def _component(decoded: bytes) -> tuple[str, str, bool]:
    try:
        return decoded.decode("utf-8"), _encode_octets(decoded), True
    except UnicodeDecodeError:
        return decoded.decode("utf-8", "replace"), _encode_octets(decoded), False


def _form_param(piece: bytes) -> _Param:
    """One ``name[=value]`` of a query or form body (HTML 4.01 §17.13.4: ``+`` is a space,
    then percent escapes, already checked)."""
    raw_name, _, raw_value = piece.partition(b"=")
    name, enc_name, ok_name = _component(unquote_to_bytes(raw_name.replace(b"+", b" ")))
    value, enc_value, ok_value = _component(unquote_to_bytes(raw_value.replace(b"+", b" ")))
    return name, value, f"{enc_name}\0{enc_value}", ok_name and ok_value


def _header_component(raw: bytes) -> tuple[str, str, bool]:
    """An Authorization parameter name or value: §3.5.1 "Parameter names and values are
    encoded per Parameter Encoding (Section 3.6)", so only unreserved characters and ``%XX``
    (lower-case hex and escaped unreserved characters are read, and re-encoded canonically)."""
    rest = raw.translate(None, _UNRESERVED)
    if not rest:
        text = raw.decode("ascii")
        return text, text, True
    if rest.strip(b"%") or _BAD_ESCAPE.search(raw):  # (hex digits are unreserved)
        raise OAuthParameterError("an Authorization parameter that is not percent-encoded")
    return _component(unquote_to_bytes(raw))


# --- §3.5.1 the Authorization header -------------------------------------------------------


def parse_authorization(value: bytes) -> tuple[str | None, list[_Param]] | None:
    """One ``Authorization`` field value: ``None`` if its scheme is not ``OAuth`` (§3.5.1: "the
    auth-scheme name set to "OAuth" (case insensitive)"), else ``(realm, params)``, each param
    ``(name, value, encoded pair, utf8)`` decoded, ``realm`` left out. Raises
    :class:`OAuthParameterError` when the value breaks §3.5.1 or repeats a name.
    """
    if len(value) > MAX_AUTHORIZATION_BYTES:
        raise OAuthParameterError("the Authorization header is too long")
    value = value.strip(b" \t")
    scheme = _SCHEME_RE.match(value)
    if scheme is None or scheme.group().lower() != b"oauth":
        return None
    body = value[scheme.end() :]
    if body[:1] != b" ":  # RFC 7235 §2.1: auth-scheme [ 1*SP ( token68 / #auth-param ) ]
        raise OAuthParameterError("the OAuth scheme is not followed by a space and parameters")
    body = body.lstrip(b" ")
    found = _PARAM_RE.findall(body)
    if not found or body[:1] == b",":
        raise OAuthParameterError("the OAuth Authorization header has no parameters")
    realm: str | None = None
    params: list[_Param] = []
    seen: set[str] = set()
    for raw_name, raw_value, junk in found:
        if junk:
            raise OAuthParameterError("a malformed OAuth Authorization header (RFC 5849 §3.5.1)")
        if raw_name.lower() == b"realm":  # RFC 2617 §1.2: a quoted-string, not encoded
            if realm is not None:
                raise OAuthParameterError("realm is repeated in the Authorization header")
            realm = _QUOTED_PAIR_RE.sub(rb"\1", raw_value).decode("utf-8", "replace")
            continue
        # (the usual name and value are unreserved characters only: their own encoding)
        if raw_name.translate(None, _UNRESERVED):
            name, enc_name, ok_name = _header_component(raw_name)
        else:
            name = enc_name = raw_name.decode("ascii")
            ok_name = True
        if name in seen:
            raise OAuthParameterError(f"{name!r} is repeated in the Authorization header")
        seen.add(name)
        if raw_value.translate(None, _UNRESERVED):
            decoded, enc_value, ok_value = _header_component(raw_value)
        else:
            decoded = enc_value = raw_value.decode("ascii")
            ok_value = True
        params.append((name, decoded, f"{enc_name}\0{enc_value}", ok_name and ok_value))
    return realm, params


def parse_form(raw: bytes, where: str) -> list[_Param]:
    """§3.4.1.3.1: a query or form body "parsed into a list of name/value pairs by treating it
    as an application/x-www-form-urlencoded string"; empty pieces between ``&`` are skipped, a
    malformed percent escape is refused."""
    if b"%" in raw and _BAD_ESCAPE.search(raw):
        raise OAuthParameterError(f"a malformed percent escape in the {where}")
    out: list[_Param] = []
    for piece in raw.split(b"&"):
        if not piece:
            continue
        if not piece.translate(None, _UNRESERVED_EQ) and piece.count(b"=") < 2:
            # the usual case: unreserved characters only, already their own encoding
            name, _, value = piece.decode("ascii").partition("=")
            out.append((name, value, f"{name}\0{value}", True))
        else:
            out.append(_form_param(piece))
    return out


# --- §3.4.1 the signature base string ----------------------------------------------------------


def base_string_uri(scheme: str, authority: str, raw_path: str) -> str:
    """§3.4.1.2: ``scheme://host[:port]path``: "The scheme and host MUST be in lowercase";
    "The host and port values MUST match the content of the HTTP request "Host" header field"
    (``authority``); "the port MUST be excluded when making an HTTP request to port 80 or when
    making an HTTPS request to port 443. All other non-default port numbers MUST be included."
    The path is as sent (not decoded or normalised); an empty one is ``/``."""
    scheme = scheme.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is None:
        raise ValueError(f"not an http or https scheme: {scheme!r}")
    host = authority.lower()
    port = ""
    if host.startswith("["):  # an IPv6 literal
        end = host.find("]")
        if end < 0 or (end + 1 < len(host) and host[end + 1] != ":"):
            raise OAuthParameterError("a malformed authority")
        host, port = host[: end + 1], host[end + 2 :]
    elif ":" in host:
        host, _, port = host.partition(":")
    if port:
        if not (port.isascii() and port.isdigit()) or len(port) > 5:
            raise OAuthParameterError("a malformed port in the authority")
        port = str(int(port))
    if not host:
        raise OAuthParameterError("the request has no host")
    netloc = host if not port or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{raw_path or '/'}"


def normalize_parameters(params: Iterable[tuple[str, str]]) -> str:
    """§3.4.1.3.2 over decoded pairs: encode each name and value (§3.6), sort "by name, using
    ascending byte value ordering. If two or more parameters share the same name, they are
    sorted by their value", join ``name=value`` pairs with ``&``. The caller leaves out
    ``oauth_signature`` and the header's ``realm`` (§3.4.1.3.1)."""
    pairs = sorted((percent_encode(n), percent_encode(v)) for n, v in params)
    return "&".join(f"{n}={v}" for n, v in pairs)


def signature_base_string(method: str, base_uri: str, normalized_parameters: str) -> str:
    """§3.4.1.1: the method in upper case ("If the request uses a custom HTTP method, it MUST
    be encoded"), ``&``, the base string URI encoded, ``&``, the normalized parameters
    encoded (each per §3.6)."""
    return (
        f"{percent_encode(method.upper())}&{percent_encode(base_uri)}&"
        f"{percent_encode(normalized_parameters)}"
    )


def _check_timestamp(value: str) -> int:
    """§3.3: "The timestamp value MUST be a positive integer": plain ASCII digits, no sign, no
    white space, no leading zero, at most 19 digits."""
    if (
        not value
        or not value.isascii()
        or not value.isdigit()
        or value[0] == "0"
        or len(value) > _MAX_TIMESTAMP_DIGITS
    ):
        raise OAuthParameterError("oauth_timestamp is not a positive integer in ASCII digits")
    return int(value)


def collect(
    method: str,
    scheme: str,
    authority: str,
    raw_path: str,
    raw_query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes | None,
    body_is_form: bool,
) -> OAuthRequest:
    """Collect and check a request's OAuth parameters (§3.5) and build its base string (§3.4.1).

    ``headers`` are (lower-case name, value) pairs; ``authority`` the host[:port] the client
    addressed; ``raw_path`` the path as received; ``raw_query`` the query without ``?``;
    ``body`` the entity-body, read only when ``body_is_form`` (the request is single-part
    ``application/x-www-form-urlencoded``, §3.4.1.3.1 and §3.5.2). Raises
    :class:`OAuthParameterError` (400) for everything §3.2 calls a bad request:

    * ``oauth_*`` parameters in more than one of header, body and query (§3.5: "one and only
      one of the following locations"), or a protocol parameter repeated (§3.1: "MUST NOT
      appear more than once per request"), or more than one OAuth ``Authorization`` field;
    * a missing ``oauth_consumer_key``, ``oauth_signature_method``, ``oauth_signature``,
      ``oauth_timestamp`` or ``oauth_nonce``; a timestamp that is not a positive integer
      (§3.3); ``oauth_version`` other than ``"1.0"`` (§3.2: "If the "oauth_version" parameter
      is present, ensuring its value is "1.0""); an unsupported signature method
      (:class:`UnsupportedSignatureMethod`).
    """
    header_params: list[_Param] | None = None
    realm: str | None = None
    fields = 0
    for key, field in headers:
        if key == b"authorization":
            fields += 1
            parsed = parse_authorization(field)
            if parsed is None:
                continue
            if header_params is not None:
                raise OAuthParameterError("more than one OAuth Authorization header")
            realm, header_params = parsed
    if header_params is not None and fields > 1:  # RFC 9110 §11.6.2: one credential per field
        raise OAuthParameterError("an OAuth Authorization header next to another one")
    query_params = parse_form(raw_query, "query") if raw_query else []
    body_params = parse_form(body, "body") if body_is_form and body else []

    protocol: dict[str, str] = {}
    source: Source | None = None
    groups: tuple[tuple[Source, list[_Param] | None], ...] = (
        ("header", header_params),
        ("body", body_params),
        ("query", query_params),
    )
    for where, group in groups:
        if not group:
            continue
        for name, value, _, utf8 in group:
            if not name.startswith("oauth_"):
                continue
            if source is None:
                source = where
            elif source != where:
                raise OAuthParameterError(f"oauth_ parameters in both the {source} and the {where}")
            if name in protocol:
                raise OAuthParameterError(f"{name} is repeated")
            if not utf8:
                raise OAuthParameterError(f"{name} is not UTF-8")
            protocol[name] = value
    if source is None:
        raise OAuthParameterError("no OAuth parameters")
    if _CONTROL.search("".join(protocol.values())):  # (NUL: no store keeps it; none is meant)
        bad = next(name for name, value in protocol.items() if _CONTROL.search(value))
        raise OAuthParameterError(f"{bad} holds a control character")
    for required in _REQUIRED:
        if not protocol.get(required):
            raise OAuthParameterError(f"{required} is missing")
    signature_method = protocol["oauth_signature_method"]
    if signature_method not in SIGNATURE_METHODS:
        raise UnsupportedSignatureMethod(f"unsupported signature method {signature_method!r}")
    version = protocol.get("oauth_version")
    if version is not None and version != "1.0":
        raise OAuthParameterError("oauth_version is not 1.0")
    timestamp = _check_timestamp(protocol["oauth_timestamp"])
    nonce = protocol["oauth_nonce"]
    if len(nonce) > MAX_NONCE_CHARS:
        raise OAuthParameterError("oauth_nonce is too long")

    collected = query_params + body_params + (header_params or [])
    params = tuple([(name, value) for name, value, _, _ in collected])
    # §3.4.1.3.1: "The "oauth_signature" parameter MUST be excluded"
    encoded = [pair for name, _, pair, _ in collected if name != "oauth_signature"]
    # §3.4.1.3.2: sorted by name, then by value. Each pair is "name\0value" while sorting: NUL
    # sorts below every byte of an encoded name, so the order is the (name, value) order ("="
    # would not be: "%", "-", "." and the digits sort below it).
    encoded.sort()
    normalized = "&".join(encoded).replace("\0", "=")
    upper = method.upper()
    base_uri = base_string_uri(scheme, authority, raw_path)
    base_string = (
        f"{percent_encode(upper)}&{percent_encode(base_uri)}&{_encode_normalized(normalized)}"
    )
    return OAuthRequest(
        method=upper,
        base_uri=base_uri,
        normalized_parameters=normalized,
        base_string=base_string,
        source=source,
        protocol=protocol,
        params=params,
        realm=realm,
        consumer_key=protocol["oauth_consumer_key"],
        token=protocol.get("oauth_token") or None,
        signature_method=signature_method,
        signature=protocol["oauth_signature"],
        timestamp=timestamp,
        nonce=nonce,
    )
