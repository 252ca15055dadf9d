"""Pagination of listings: ``limit`` items after the ``after`` cursor (an item's id), in the
store's order. The next page's cursor is the last id shown, so pages stay stable while new
records are added at the end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from restguard.manage.errors import Invalid

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def page(
    items: Sequence[T],
    ident: Callable[[T], str],
    show: Callable[[T], dict[str, Any]],
    *,
    keep: Callable[[T], bool] = lambda _: True,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """``{"items": [...], "next": cursor | None}`` of the items ``keep`` admits. The cursor is
    placed in the whole listing, so a record whose state changed between two pages does not
    lose the reader's place. Invalid (400) for a cursor that names no record (records are
    revoked, never deleted, so a cursor once given stays valid)."""
    count = check_limit(limit)
    start = 0
    if after is not None:
        ids = [ident(item) for item in items]
        if after not in ids:
            raise Invalid("after names no record of this listing", field="after")
        start = ids.index(after) + 1
    chosen: list[T] = []
    more = False
    for item in items[start:]:
        if keep(item):
            if len(chosen) == count:
                more = True
                break
            chosen.append(item)
    return {
        "items": [show(item) for item in chosen],
        "next": ident(chosen[-1]) if more else None,
    }
