"""Digest Fields (RFC 9530): ``Content-Digest``, checked against the body actually received.

RFC 9530 §2: ``Content-Digest`` is a Dictionary (RFC 8941 §3.2) whose keys are hashing
algorithms and whose values are Byte Sequences, computed over the message content (the body
after transfer coding is removed, content coding kept). §5 lists the algorithms: ``sha-256``
and ``sha-512`` are "Active"; the others (``md5``, ``sha``, ``unixsum``, ...) are "Deprecated"
and §6 says they "MUST NOT be used" for integrity. Only the two active ones count here.

The rule (CONTRACT "Keys and verification timing"): at least one supported member, and EVERY
supported member present must match the body. A digest of an unsupported algorithm alone
proves nothing, and a matching ``sha-256`` does not excuse a wrong ``sha-512`` beside it (a
recipient that checked only the other one would accept a different body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from restguard.wire.rfc8941 import StructuredFieldError, parse_byte_sequence_dictionary

FIELD: Final = b"content-digest"
# RFC 9530 §5, the "Active" algorithms, with their hash constructors.
ALGORITHMS: Final[Mapping[str, Callable[[bytes], Any]]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}


def parse_content_digest(values: Sequence[bytes]) -> dict[str, bytes]:
    """The ``Content-Digest`` field lines as ``{algorithm: digest}``; raises on malformed.

    Raises :class:`~restguard.wire.rfc8941.StructuredFieldError` for anything that is not a
    Dictionary of Byte Sequences (duplicate keys included).
    """
    return parse_byte_sequence_dictionary(values)


def digest_problem(header_values: Sequence[bytes], body: bytes) -> str | None:
    """Why ``Content-Digest`` does not vouch for ``body``, or ``None`` when it does.

    ``header_values`` are the field lines as received (none when the field is absent). Each
    supported digest is compared in constant time (``hmac.compare_digest``). The answer is
    for the audit log, never for the client.
    """
    if not header_values:
        return "no Content-Digest field"
    try:
        members = parse_content_digest(header_values)
    except StructuredFieldError as exc:
        return f"malformed Content-Digest: {exc}"
    checked = 0
    for name, digest in members.items():
        algorithm = ALGORITHMS.get(name)
        if algorithm is None:
            continue
        if not hmac.compare_digest(algorithm(body).digest(), digest):
            return f"the {name} digest does not match the body"
        checked += 1
    if not checked:
        return "Content-Digest has no sha-256 or sha-512 member"
    return None


def content_digest(body: bytes, alg: str = "sha-256") -> str:
    """The ``Content-Digest`` value a client sends with ``body``: ``sha-256=:<base64>:``."""
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise ValueError(f"unsupported digest algorithm {alg!r}; use sha-256 or sha-512")
    digest = base64.b64encode(algorithm(body).digest()).decode("ascii")
    return f"{alg}=:{digest}:"
