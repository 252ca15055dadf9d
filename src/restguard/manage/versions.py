"""Record versions for optimistic concurrency: an entity tag per record state, and the
``If-Match`` precondition (RFC 9110 §8.8.3, §13.1.1), so that two operators cannot overwrite
each other: a change made against a version that is no longer current is refused (412).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from restguard.manage.errors import Invalid, Stale

# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE;
# etagc = %x21 / %x23-7E / obs-text. Lists are comma separated (§5.6.1).
R = TypeVar("R")

_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def etag(state: Any) -> str:
    """A strong entity tag for a record's state (JSON-serialisable data)."""
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


def parse_if_match(value: str) -> list[str] | None:
    """The strong tags an ``If-Match`` lists (weak ones can never match: §13.1.1 "MUST use the
    strong comparison function"), or None for ``*``. Invalid (400) when it does not parse:
    an ambiguous precondition is refused, not guessed."""
    text = value.strip()
    if text == "*":
        return None
    tags: list[str] = []
    for member in text.split(","):
        member = member.strip()
        if not member:
            continue  # §5.6.1: empty list elements are allowed and ignored
        m = _TAG.fullmatch(member)
        if m is None:
            raise Invalid("If-Match must be * or a list of entity tags", field="If-Match")
        if not m.group(1):
            tags.append(f'"{m.group(2)}"')
    if not tags and not text.replace(",", "").strip():
        raise Invalid("If-Match must be * or a list of entity tags", field="If-Match")
    return tags


def changed_meanwhile(what: str) -> Stale:
    """412 for a conditional write that found its record changed between the read that checked
    ``If-Match`` and the write (one statement with the check, so nothing was written)."""
    return Stale(
        f"{what} changed while this request ran; read it again and retry", field="If-Match"
    )


def pins_version(if_match: str | None) -> bool:
    """Whether ``If-Match`` names versions (then a write must find the record as read), rather
    than being absent or ``*`` (any version: the record need only exist). Call it after
    ``require_match`` (as ``checked`` does), which refuses a malformed value."""
    return if_match is not None and parse_if_match(if_match) is not None


def checked(if_match: str | None, record: R, version: Callable[[R], str]) -> R | None:
    """``require_match`` for ``record``, then what the write must still find: ``record`` when
    ``If-Match`` names versions, None when it is absent or ``*``."""
    require_match(if_match, version(record))
    return record if pins_version(if_match) else None


def require_match(if_match: str | None, current: str) -> None:
    """Refuse (412) unless ``If-Match`` is absent, ``*`` (the record exists) or lists
    ``current``."""
    if if_match is None:
        return
    tags = parse_if_match(if_match)
    if tags is not None and current not in tags:
        raise Stale(
            "the record changed since you read it (its ETag is now "
            f"{current}); read it again and retry",
            field="If-Match",
        )
