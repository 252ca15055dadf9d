"""HTTP Message Signatures (RFC 9421) for requests: parse, rebuild the base, sign with a signer.

Pure spec code: bytes in, values out, and no cryptography library: the algorithms (§3.3,
through pyca ``cryptography``) live in :mod:`restguard.wire.rfc9421_algorithms`, so that a
client (``restguard.client``) can build and sign a request without loading the server's
dependencies. The policy (which components a route requires, the ``created`` window, nonces,
which key a ``keyid`` names) belongs to the authenticator.

Supported covered components (a request's; RFC 9421 §2):

* derived (§2.2): ``@method``, ``@target-uri``, ``@authority``, ``@scheme``,
  ``@request-target``, ``@path``, ``@query``, ``@query-param;name=...``;
* HTTP fields (§2.1), by lower-case name, plain or with ``sf`` (§2.1.1: for the Dictionary
  fields in :data:`DICTIONARY_FIELDS`), ``key`` (§2.1.2) or ``bs`` (§2.1.3).

Refused: ``req`` (§2.4: response signatures only), ``tr`` (trailers are not read), ``@status``
(§2.2.9: "MUST NOT be used in a request"), any other component parameter or ``@`` name
(§2.5: an identifier whose parameters are not understood is an error). Algorithms (§3.3):
``hmac-sha256``, ``ed25519`` and ``ecdsa-p256-sha256``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import unquote_to_bytes

from restguard.wire.rfc8941 import (
    MAX_FIELD_BYTES,
    InnerList,
    Item,
    Params,
    StructuredFieldError,
    parse_byte_sequence_dictionary,
    parse_dictionary,
    parse_inner_lists_serialized,
)
from restguard.wire.rfc8941_serialize import (
    serialize_dictionary,
    serialize_inner_list,
    serialize_item,
    serialize_member,
)

__all__ = [
    "ALGORITHMS",
    "DICTIONARY_FIELDS",
    "SUPPORTED_ALGORITHMS",
    "Message",
    "SignatureBaseError",
    "SignatureError",
    "SignatureInput",
    "SignatureInvalid",
    "StructuredFieldError",
    "component_problem",
    "parse_signature",
    "parse_signature_input",
    "sign_request_with",
    "signature_base",
]

# RFC 9421 §6.2.2, the initial "HTTP Signature Algorithms" registry: name -> section.
ALGORITHMS: Final[Mapping[str, str]] = {
    "rsa-pss-sha512": "3.3.1",
    "rsa-v1_5-sha256": "3.3.2",
    "hmac-sha256": "3.3.3",
    "ecdsa-p256-sha256": "3.3.4",
    "ecdsa-p384-sha384": "3.3.5",
    "ed25519": "3.3.6",
}
SUPPORTED_ALGORITHMS: Final = frozenset({"hmac-sha256", "ed25519", "ecdsa-p256-sha256"})
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
_DERIVED: Final = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
_FIELD_PARAMS: Final = frozenset({"sf", "key", "bs"})
_FIELD_NAME_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_VALUE_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\t"  # what a base line may hold
_QUERY_SAFE: Final = frozenset(
    b"*-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_STRING_PARAMS: Final = ("nonce", "alg", "keyid", "tag")


class SignatureError(Exception):
    """Base of the errors below (the authenticator maps all of them to one generic 401)."""


class SignatureBaseError(SignatureError):
    """The signature base cannot be built from this message (a covered component is missing,
    ambiguous or not representable)."""


class SignatureInvalid(SignatureError):
    """The signature does not verify over the base with this key."""


class SignatureInput(NamedTuple):
    """One member of ``Signature-Input`` (RFC 9421 §4.1), checked.

    ``components`` are ``(name, params)`` in the signer's order, ``name`` the lower-case
    component identifier; ``params_value`` is the ``@signature-params`` value (§2.3): the
    member re-serialized per RFC 8941 §4.1, which is what the signature covers. (A
    ``NamedTuple``: immutable, and cheaper to build than a frozen dataclass on every request.)
    """

    label: str
    components: tuple[tuple[str, Params], ...]
    created: int
    expires: int | None
    nonce: str | None
    alg: str | None
    keyid: str | None
    tag: str | None
    params_value: str
    plain: frozenset[str]  # the names covered without parameters (see ``covers``)

    def covers(self, name: str, params: Params = ()) -> bool:
        """Whether the component ``name`` with exactly ``params`` (any order) is covered."""
        if not params:  # (the common question: one set lookup)
            return name in self.plain
        wanted = sorted(params)
        return any(n == name and sorted(p) == wanted for n, p in self.components)


@dataclass(frozen=True, slots=True)
class Message:
    """The request the signature is checked against.

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


# --- parsing -----------------------------------------------------------------------------


def parse_signature_input(
    values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES
) -> dict[str, SignatureInput]:
    """Every member of the ``Signature-Input`` field lines, by label; strict.

    Raises :class:`StructuredFieldError` for a malformed field (RFC 8941, with duplicate
    labels and parameters refused), for a member that breaks RFC 9421 (§4.1: each member is
    an Inner List of sf-strings; §2.3: ``created`` and ``expires`` are Integers, ``nonce``,
    ``alg``, ``keyid`` and ``tag`` Strings) and for components this module does not support.
    ``created`` is required (restguard's policy; §2.3 only recommends it). Parameters not in
    the registry are allowed (§2.3) and stay in ``params_value``.
    """
    return {
        label: _signature_input(label, member, text)
        for label, (member, text) in parse_inner_lists_serialized(values, limit=limit).items()
    }


def parse_signature(values: Sequence[bytes], *, limit: int = MAX_FIELD_BYTES) -> dict[str, bytes]:
    """Every member of the ``Signature`` field lines (§4.2): label -> signature bytes."""
    return parse_byte_sequence_dictionary(values, limit=limit)


#: ``_components`` of the component lists checked, by the identity of the (immutable) items
#: tuple, which the entry holds so that its id is not reused: the parser's fast path hands
#: back the same tuple for the same text, and a client covers the same components in every
#: request it signs. Never by value: equal items may differ in type (an sf-token equals the
#: sf-string of its text; ``?1`` equals ``1``), and type is what the check is about.
_COMPONENTS: dict[int, tuple[tuple[Item, ...], frozenset[str]]] = {}
_COMPONENTS_SIZE: Final = 256


def _signature_input(label: str, member: InnerList, params_value: str) -> SignatureInput:
    items = member.items
    known = _COMPONENTS.get(id(items))
    if known is not None and known[0] is items:
        plain = known[1]
    else:
        plain = _components(label, items)
        if len(_COMPONENTS) >= _COMPONENTS_SIZE:
            _COMPONENTS.clear()
        _COMPONENTS[id(items)] = (items, plain)
    created = expires = None
    strings: dict[str, str] = {}
    for key, value in member.params:
        if key == "created" or key == "expires":
            if type(value) is not int or value < 0:
                raise StructuredFieldError(f"{label}: {key} is not a non-negative integer")
            if key == "created":
                created = value
            else:
                expires = value
        elif key in _STRING_PARAMS:
            if type(value) is not str:
                raise StructuredFieldError(f"{label}: {key} is not an sf-string")
            strings[key] = value
    if created is None:
        raise StructuredFieldError(f"{label}: no created parameter")
    return SignatureInput(
        label,
        items,  # type: ignore[arg-type]  # str values, checked by _components
        created,
        expires,
        strings.get("nonce"),
        strings.get("alg"),
        strings.get("keyid"),
        strings.get("tag"),
        params_value,
        plain,
    )


def _components(label: str, items: tuple[Item, ...]) -> frozenset[str]:
    """Check a member's component list (§2, §4.1); the names it covers without parameters."""
    seen: set[tuple[Any, ...]] = set()
    for item in items:  # an Item is a (value, params) pair already
        name, params = item
        if type(name) is not str:  # a Token is a str subclass: refused too
            raise StructuredFieldError(f"{label}: a component identifier is not an sf-string")
        if params or name not in _DERIVED:  # a plain derived name needs no more checks
            _check_component(label, name, params)
        # §2: "Component identifiers, including their parameters, MUST NOT be repeated";
        # their parameters may come in any order, so the identity sorts them.
        identity = (name, tuple(sorted(params))) if params else item
        if identity in seen:
            raise StructuredFieldError(f"{label}: component {name!r} is listed twice")
        seen.add(identity)
    return frozenset(name for name, params in items if not params)  # type: ignore[misc]


def _check_component(label: str, name: str, params: Params) -> None:
    if name in _DERIVED:
        if params:  # §2.4: "req" is for responses; no other parameter applies
            raise StructuredFieldError(f"{label}: {name} takes no parameters here")
        return
    if name == "@query-param":  # §2.2.8: exactly one "name", an sf-string
        if len(params) != 1 or params[0][0] != "name" or type(params[0][1]) is not str:
            raise StructuredFieldError(f"{label}: @query-param needs one name parameter")
        return
    if name == "@signature-params":  # §2.3: never a covered component
        raise StructuredFieldError(f"{label}: @signature-params cannot be covered")
    if not name or not _FIELD_NAME_CHARS.issuperset(name):
        # §2.1: "implementations MUST use lowercased field names ... as component names";
        # anything else (an unknown "@" name, an upper-case letter) is refused.
        raise StructuredFieldError(f"{label}: unsupported component {name!r}")
    keys = set()
    for key, value in params:
        if key not in _FIELD_PARAMS:
            raise StructuredFieldError(f"{label}: unsupported parameter {key!r} on {name!r}")
        if (value is not True) if key != "key" else (type(value) is not str):
            raise StructuredFieldError(f"{label}: parameter {key!r} has the wrong type")
        keys.add(key)
    if "bs" in keys and len(keys) > 1:  # §2.1.3: bs cannot be combined with sf or key
        raise StructuredFieldError(f"{label}: bs cannot be combined with sf or key")


def component_problem(name: str) -> str | None:
    """Why ``name`` cannot be required of a signature by configuration, or None: a derived
    component this module supports (without parameters) or a lower-case field name."""
    if name in _DERIVED:
        return None
    if name.startswith("@"):
        return (
            f"'{name}' is not a derived component restguard checks ({', '.join(sorted(_DERIVED))})"
        )
    if not name or not _FIELD_NAME_CHARS.issuperset(name):
        return f"'{name}' is not a lower-case header field name"
    return None


# --- the signature base (§2.5) -----------------------------------------------------------


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
        raise SignatureBaseError(f"{prefix[:-2].decode()}: a value that is not printable ASCII")
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


# --- signing (for clients and tests) -----------------------------------------------------


def sign_request_with(
    msg: Message,
    signer: Callable[[bytes], bytes],
    *,
    label: str = "sig1",
    keyid: str,
    alg: str,
    components: Sequence[str | tuple[str, Params]],
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    include_alg: bool = True,
) -> tuple[bytes, bytes]:
    """Sign ``msg``: the ``Signature-Input`` and ``Signature`` field values, as bytes.

    ``signer`` turns the signature base into the raw signature bytes of ``alg`` (§3.3: the
    HMAC; Ed25519's 64 bytes; ECDSA's ``r || s``, 64 bytes, not DER); this module never
    touches a key. ``components`` are names (``"@method"``, ``"content-digest"``) or
    ``(name, params)`` pairs (``("@query-param", (("name", "Pet"),))``). The input is built,
    then parsed back by :func:`parse_signature_input`, so that what is signed is exactly what a
    verifier here would rebuild; ``alg`` is written as a parameter unless ``include_alg`` is
    false. :func:`restguard.wire.rfc9421_algorithms.sign_request` does the same with a key.
    """
    items = tuple(
        Item(c.lower(), ()) if isinstance(c, str) else Item(c[0].lower(), c[1]) for c in components
    )
    params: list[tuple[str, Any]] = [("created", created)]
    if expires is not None:
        params.append(("expires", expires))
    params.append(("keyid", keyid))
    if include_alg:
        params.append(("alg", alg))
    if nonce is not None:
        params.append(("nonce", nonce))
    if tag is not None:
        params.append(("tag", tag))
    member = serialize_inner_list(InnerList(items, tuple(params)))
    signature_input = f"{label}={member}".encode("ascii")
    parsed = parse_signature_input([signature_input])
    if list(parsed) != [label]:
        raise ValueError(f"not a signature label: {label!r}")
    signature = signer(signature_base(parsed[label], msg))
    if not isinstance(signature, bytes) or not signature:
        raise ValueError("the signer returned no signature bytes")
    encoded = base64.b64encode(signature)
    return signature_input, label.encode("ascii") + b"=:" + encoded + b":"
