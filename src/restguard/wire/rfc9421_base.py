"""RFC 9421 §2.5: the signature base of a request, rebuilt from the message as received.

Split from :mod:`restguard.wire.rfc9421` (which parses ``Signature-Input`` and ``Signature``,
signs, and re-exports what is defined here): the request (:class:`Message`), the covered
components' values (§2.1 fields, §2.2 derived components) and the base's lines. Pure spec code:
bytes in, bytes out, no cryptography library.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import unquote_to_bytes

from restguard.wire.rfc8941 import Item, Params, StructuredFieldError, parse_dictionary
from restguard.wire.rfc8941_serialize import (
    serialize_dictionary,
    serialize_item,
    serialize_member,
)

if TYPE_CHECKING:
    from restguard.wire.rfc9421 import SignatureInput

__all__ = [
    "DICTIONARY_FIELDS",
    "Message",
    "SignatureBaseError",
    "SignatureError",
    "signature_base",
]

# Fields whose structured type is known to be a Dictionary, for the ``sf`` parameter (§2.1.1):
# RFC 9530's digests and preferences, RFC 9421's own fields.
DICTIONARY_FIELDS: Final = frozenset(
    {
        "content-digest",
        "repr-digest",
        "want-content-digest",
        "want-repr-digest",
        "signature",
        "signature-input",
        "accept-signature",
    }
)
_VALUE_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\t"  # what a base line may hold
_QUERY_SAFE: Final = frozenset(
    b"*-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


class SignatureError(Exception):
    """Base of the errors below (the authenticator maps all of them to one generic 401)."""


class SignatureBaseError(SignatureError):
    """The signature base cannot be built from this message (a covered component is missing,
    ambiguous or not representable)."""


class Message(NamedTuple):
    """The request the signature is checked against (immutable; a NamedTuple: one is built
    per signed request, and a frozen dataclass's constructor cost ~3x as much).

    ``path`` is the target's path as received (not decoded or normalised), ``query`` the raw
    query without ``?`` (``b""`` when none), ``authority`` the host[:port] the client
    addressed (behind a proxy: the configured public authority), ``headers`` the field lines
    in order as (lower-case name, value) pairs.
    """

    method: str
    scheme: str
    authority: str
    path: str
    query: bytes = b""
    headers: Sequence[tuple[bytes, bytes]] = ()


def signature_base(sig: SignatureInput, msg: Message) -> bytes:
    """The signature base of ``sig`` over ``msg``, exactly per RFC 9421 §2.5.

    One line per covered component, ``<identifier>: <value>``, then
    ``"@signature-params": <params_value>``, joined by LF with no final LF. §2.5: "If the
    component identifier ... cannot be resolved to a component value in the message, the
    implementation MUST produce an error": :class:`SignatureBaseError`. A derived component
    (``@...``) is always derived from the message, never read from a field with that name.
    """
    lines: list[bytes] = []
    for name, params in sig.components:
        if not params and name in _PLAIN_DERIVED:  # the common lines: one call, one prefix
            try:
                lines.append(_PLAIN_DERIVED[name](msg))
            except UnicodeEncodeError:
                raise SignatureBaseError(f"{name}: a value that is not ASCII") from None
            continue
        if name[0] == "@":
            try:
                value = _derived(name, params, msg)
            except UnicodeEncodeError:
                raise SignatureBaseError(f"{name}: a value that is not ASCII") from None
        else:
            value = _field(name, params, msg.headers)
        if value.translate(None, _VALUE_BYTES):
            raise SignatureBaseError(f"{name}: a value that is not printable ASCII")
        ident = serialize_item(Item(name, params)) if params else f'"{name}"'
        lines.append(ident.encode("ascii") + b": " + value)
    lines.append(b'"@signature-params": ' + sig.params_value.encode("ascii"))
    return b"\n".join(lines)


def _checked_line(prefix: bytes, value: bytes) -> bytes:
    if value.translate(None, _VALUE_BYTES):
        raise SignatureBaseError(f"{prefix[1:-3].decode()}: a value that is not printable ASCII")
    return prefix + value


#: The base lines of the derived components signed most (no parameters), as ``_derived`` and
#: ``signature_base``'s general path would write them.
_PLAIN_DERIVED: Final[Mapping[str, Callable[[Message], bytes]]] = {
    "@method": lambda msg: _checked_line(b'"@method": ', msg.method.encode("ascii")),
    "@authority": lambda msg: _checked_line(b'"@authority": ', _authority(msg).encode("ascii")),
    "@path": lambda msg: _checked_line(b'"@path": ', (msg.path or "/").encode("ascii")),
    "@query": lambda msg: _checked_line(b'"@query": ', b"?" + msg.query),
}


def _derived(name: str, params: Params, msg: Message) -> bytes:
    if name == "@method":  # §2.2.1: the method as is (case-sensitive)
        return msg.method.encode("ascii")
    if name == "@authority":  # §2.2.3: normalised per RFC 9110 §4.2.3
        return _authority(msg).encode("ascii")
    if name == "@path":  # §2.2.6: not decoded; an empty path is "/"
        return (msg.path or "/").encode("ascii")
    if name == "@query":  # §2.2.7: with its "?"; no query at all is "?" alone
        return b"?" + msg.query
    if name == "@scheme":  # §2.2.4: lower-case
        return msg.scheme.lower().encode("ascii")
    if name == "@target-uri":  # §2.2.2: the absolute target URI
        query = b"?" + msg.query if msg.query else b""
        uri = f"{msg.scheme.lower()}://{_authority(msg)}{msg.path or '/'}"
        return uri.encode("ascii") + query
    if name == "@request-target":  # §2.2.5: origin-form, as in the request line
        query = b"?" + msg.query if msg.query else b""
        return (msg.path or "/").encode("ascii") + query
    if name == "@query-param":
        return _query_param(str(params[0][1]), msg.query)
    raise SignatureBaseError(f"unsupported derived component {name!r}")  # parse refuses it


def _authority(msg: Message) -> str:
    authority = msg.authority.lower()
    if not authority:
        raise SignatureBaseError("@authority: the request has no authority")
    default = {"https": ":443", "http": ":80"}.get(msg.scheme.lower())
    if default and authority.endswith(default):
        authority = authority[: -len(default)]
    return authority


def _query_param(name: str, query: bytes) -> bytes:
    """§2.2.8: parse as application/x-www-form-urlencoded, re-encode names and values.

    "If a parameter name occurs multiple times in a request, the named parameter MUST NOT be
    included": a repeated name cannot be covered, so it is an error here too.
    """
    found: list[bytes] = []
    for pair in query.split(b"&"):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        if _query_encode(key) == name:
            found.append(_query_encode(value).encode("ascii"))
    if len(found) != 1:
        why = "absent" if not found else "repeated"
        raise SignatureBaseError(f"@query-param {name!r} is {why}")
    return found[0]


def _query_encode(raw: bytes) -> str:
    """WHATWG URL's form parsing (``+`` is a space, percent-decode, UTF-8) then "percent-encode
    after encoding" with the form set, a space as ``%20`` (RFC 9421 §2.2.8's examples)."""
    text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace").encode()
    return "".join(chr(b) if b in _QUERY_SAFE else f"%{b:02X}" for b in text)


def _field(name: str, params: Params, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """§2.1: the field's lines in order, each trimmed, joined by ", " (or per sf/key/bs)."""
    wanted = name.encode("ascii")
    lines = [value for key, value in headers if key == wanted]
    if not lines:  # §2.5: a covered component missing from the message is an error
        raise SignatureBaseError(f"covered field {name!r} is absent")
    if not params:
        if len(lines) == 1:
            return lines[0].strip(b" \t")
        return b", ".join(line.strip(b" \t") for line in lines)
    flags = dict(params)
    if "bs" in flags:  # §2.1.3: each line as a Byte Sequence
        return b", ".join(b":" + base64.b64encode(line.strip(b" \t")) + b":" for line in lines)
    try:
        if "key" in flags:  # §2.1.2: one Dictionary member, re-serialized
            member = parse_dictionary(lines).get(str(flags["key"]))
            if member is None:
                raise SignatureBaseError(f"{name}: no member {flags['key']!r}")
            return serialize_member(member).encode("ascii")
        if name not in DICTIONARY_FIELDS:  # §2.1.1 needs the field's structured type
            raise SignatureBaseError(f"{name}: sf on a field of unknown structured type")
        return serialize_dictionary(parse_dictionary(lines)).encode("ascii")
    except StructuredFieldError as exc:
        raise SignatureBaseError(f"{name}: not a valid structured field ({exc})") from exc
