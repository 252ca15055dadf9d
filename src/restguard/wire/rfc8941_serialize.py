"""Structured Field Values (RFC 8941 §4.1): the serializer of Items, Inner Lists and
Dictionaries, each with their Parameters, validating every key and bare item it writes.

Split from :mod:`restguard.wire.rfc8941` (the strict parser, the types, and the serialization
of bare items and of the Inner Lists the parser produced, which the parser itself uses); this
module builds on them and is used where a field value is written (RFC 9421's signature base
and ``Signature-Input``).
"""

from __future__ import annotations

from restguard.wire.rfc8941 import (
    _KEY,
    InnerList,
    Item,
    Member,
    Params,
    StructuredFieldError,
    serialize_bare_item,
)


def serialize_params(params: Params) -> str:
    """§4.1.1.2: ``;key`` for true, ``;key=value`` otherwise."""
    parts = []
    for key, value in params:
        if _KEY.fullmatch(key) is None:
            raise StructuredFieldError(f"not a key: {key!r}")
        parts.append(";" + key if value is True else f";{key}={serialize_bare_item(value)}")
    return "".join(parts)


def serialize_item(item: Item) -> str:
    """§4.1.3: a bare item followed by its parameters."""
    text = serialize_bare_item(item.value)
    return text + serialize_params(item.params) if item.params else text


def serialize_inner_list(inner: InnerList) -> str:
    """§4.1.1.1: ``(`` items separated by one SP ``)`` then the list's parameters."""
    body = " ".join([serialize_item(item) for item in inner.items])
    return f"({body}){serialize_params(inner.params)}"


def serialize_member(member: Member) -> str:
    """A dictionary member's value: an Inner List or an Item, with their parameters."""
    if isinstance(member, InnerList):
        return serialize_inner_list(member)
    return serialize_item(member)


def serialize_dictionary(dictionary: dict[str, Member]) -> str:
    """§4.1.2: ``key=value`` members joined by ``, ``; a true Item is written ``key;params``."""
    parts = []
    for key, member in dictionary.items():
        if _KEY.fullmatch(key) is None:
            raise StructuredFieldError(f"not a key: {key!r}")
        if isinstance(member, Item) and member.value is True:
            parts.append(key + serialize_params(member.params))
        else:
            parts.append(f"{key}={serialize_member(member)}")
    return ", ".join(parts)
