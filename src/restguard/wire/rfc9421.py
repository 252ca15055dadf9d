"""HTTP Message Signatures (RFC 9421) for requests: parse, rebuild the base, sign with a signer.

The signature base (§2.5) and the request it is built from live in
:mod:`restguard.wire.rfc9421_base`, re-exported here. Pure spec code: bytes in, values out, and
no cryptography library: the algorithms (§3.3, through pyca ``cryptography``) live in
:mod:`restguard.wire.rfc9421_algorithms`, so that a client (``restguard.client``) can build and
sign a request without loading the server's dependencies. The policy (which components a
route requires, the ``created`` window, nonces, which key a ``keyid`` names) belongs to the
authenticator.

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
from typing import Any, Final, NamedTuple

from restguard.wire.rfc8941 import (
    MAX_FIELD_BYTES,
    InnerList,
    Item,
    Params,
    StructuredFieldError,
    parse_byte_sequence_dictionary,
    parse_inner_lists_serialized,
)
from restguard.wire.rfc8941_serialize import (
    serialize_inner_list,
)
from restguard.wire.rfc9421_base import (
    DICTIONARY_FIELDS,
    Message,
    SignatureBaseError,
    SignatureError,
    signature_base,
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
_DERIVED: Final = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
_FIELD_PARAMS: Final = frozenset({"sf", "key", "bs"})
_FIELD_NAME_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_STRING_PARAMS: Final = ("nonce", "alg", "keyid", "tag")


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
    fields = (
        label,
        items,  # str values, checked by _components
        created,
        expires,
        strings.get("nonce"),
        strings.get("alg"),
        strings.get("keyid"),
        strings.get("tag"),
        params_value,
        plain,
    )
    return tuple.__new__(SignatureInput, fields)  # (SignatureInput(...) without its __new__)


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
