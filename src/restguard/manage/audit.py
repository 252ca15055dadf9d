"""Queries of the audit log (``restguard audit``, ``GET /api/audit``): the JSON-lines file
``[audit] path`` names, one decision per line (``restguard.audit.JsonLinesAudit``).

``parse`` reads one line as the CLI does (any JSON object; ``None`` for a broken or partial
line, which is skipped). ``check_filters`` validates a query's filters (Invalid naming the bad
one) and ``listing`` answers one page, newest first, reading the file backwards in blocks in a
worker thread so that the event loop never waits on the disk.

What one page costs is bounded: the scan stops as soon as the page is full (and one more match
is known to exist), or after ``MAX_SCAN_BYTES`` of the file, whichever comes first. A page
stopped by that cap may hold fewer than ``limit`` items (even none) while ``next`` is not null:
following ``next`` continues the scan where it stopped. The cursor is the byte offset of the
earliest line examined, so pages cover every line exactly once, however many lines are appended
meanwhile (the log only grows at its end). Lines reach the file in batches, within a quarter of
a second of their decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from restguard.errors import BackendUnavailable
from restguard.manage.errors import Conflict, Invalid
from restguard.manage.pages import check_limit

_log = logging.getLogger("restguard.admin")
#: Bytes of the file one page reads at most (beyond that, the page ends early; see above).
MAX_SCAN_BYTES = 8 * 1024 * 1024
BLOCK_BYTES = 64 * 1024
#: No line restguard writes comes near this (a request target is at most 8 KiB): a longer one
#: means a foreign or corrupted file, refused (409) before it is read whole into memory.
LONGEST_LINE = 64 * 1024
READ_TIMEOUT = 5.0  # seconds one page may take to read, then 503
OUTCOMES = ("allow", "deny")
#: What marks the lines of the admin API's changes (``detail``: ``admin <action> <target>``).
ADMIN_PREFIX = "admin "

_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
# A line's fields as ``DecisionEvent`` writes them: (types admitted, may it be null).
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "time": ((str,), False),
    "method": ((str,), False),
    "path": ((str,), False),
    "route": ((str,), True),
    "outcome": ((str,), False),
    "status": ((int,), False),
    "error": ((str,), True),
    "auth_method": ((str,), True),
    "credential_id": ((str,), True),
    "client": ((str,), False),
    "detail": ((str,), True),
    "duration_ms": ((int, float), False),
    "upstream": ((str,), True),
    "request_id": ((str,), True),
}
FIELDS = tuple(_FIELDS)


def parse(raw: str | bytes) -> dict[str, Any] | None:
    """One decision from one line (any JSON object, as written); ``None`` for a broken or
    partial line."""
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):  # (JSON, UTF-8, a 5,000-digit number, deep nesting)
        return None
    return event if isinstance(event, dict) else None


def item(event: dict[str, Any]) -> dict[str, Any] | None:
    """A decision as the API shows it: exactly ``FIELDS`` (a nullable one that is absent, as
    in lines of older versions, is null); ``None`` when a field has the wrong type (not a line
    restguard wrote: skipped like a broken one)."""
    shown: dict[str, Any] = {}
    for name, (types, nullable) in _FIELDS.items():
        value = event.get(name)
        if value is None:
            if not nullable:
                return None
        elif (
            isinstance(value, bool)
            or not isinstance(value, types)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            return None
        shown[name] = value
    if shown["outcome"] not in OUTCOMES:
        return None
    return shown


def _time(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 date-time (with its offset), or None when absent."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.upper())  # RFC 3339 §5.6 allows 't' and 'z'
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in value.upper():
        raise Invalid("must be an RFC 3339 date-time, e.g. 2026-12-01T14:20:00Z", field=field)
    return moment


def _flag(value: str | None, field: str) -> bool | None:
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid("must be true or false", field=field)
    return value == "true"


@dataclass(frozen=True)
class Filters:
    """What a query keeps; every given filter must hold (None: any)."""

    outcome: str | None = None
    status: int | None = None
    method: str | None = None
    auth_method: str | None = None
    credential_id: str | None = None
    route: str | None = None
    path_prefix: str | None = None
    since: datetime | None = None  # time >= since
    until: datetime | None = None  # time < until
    admin: bool | None = None  # only (True) or no (False) admin-change lines

    def keep(self, line: dict[str, Any]) -> bool:
        """Whether ``line`` (an ``item``) passes."""
        for name in ("outcome", "status", "auth_method", "credential_id", "route"):
            wanted = getattr(self, name)
            if wanted is not None and line[name] != wanted:
                return False
        if self.method is not None and line["method"].upper() != self.method:
            return False
        if self.path_prefix is not None and not line["path"].startswith(self.path_prefix):
            return False
        if self.admin is not None:
            detail = line["detail"]
            if (detail is not None and detail.startswith(ADMIN_PREFIX)) != self.admin:
                return False
        if self.since is not None or self.until is not None:
            try:
                moment = datetime.fromisoformat(line["time"])
            except ValueError:
                return False
            if moment.tzinfo is None:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        return True


def check_filters(
    *,
    outcome: str | None = None,
    status: int | None = None,
    method: str | None = None,
    auth_method: str | None = None,
    credential_id: str | None = None,
    route: str | None = None,
    path_prefix: str | None = None,
    since: str | None = None,
    until: str | None = None,
    admin: str | None = None,
) -> Filters:
    """A query's filters, each checked (Invalid naming the first bad one)."""
    if outcome is not None and outcome not in OUTCOMES:
        raise Invalid("must be allow or deny", field="outcome")
    if status is not None and not 100 <= status <= 599:
        raise Invalid("must be an HTTP status code (100 to 599)", field="status")
    if method is not None and not _METHOD.fullmatch(method):
        raise Invalid("must be an HTTP method such as GET", field="method")
    start, end = _time(since, "since"), _time(until, "until")
    if start is not None and end is not None and end <= start:
        raise Invalid("must be later than since", field="until")
    return Filters(
        outcome=outcome,
        status=status,
        method=method.upper() if method is not None else None,
        auth_method=auth_method,
        credential_id=credential_id,
        route=route,
        path_prefix=path_prefix,
        since=start,
        until=end,
        admin=_flag(admin, "admin"),
    )


def _cursor(value: str | None, f: BinaryIO, size: int) -> int:
    """Where the page's scan ends (exclusive): the ``after`` cursor, or the file's end."""
    if value is None:
        return size
    if not value.isdigit() or len(value) > 18:
        raise Invalid("is not a cursor of this listing", field="after")
    offset = int(value)
    if offset > size:
        raise Invalid("is past the end of the log (was it rotated?)", field="after")
    if offset > 0:
        f.seek(offset - 1)
        if f.read(1) != b"\n":
            raise Invalid("is not a cursor of this listing", field="after")
    return offset


def scan(
    path: Path,
    filters: Filters,
    limit: int | None = None,
    after: str | None = None,
    *,
    max_bytes: int = MAX_SCAN_BYTES,
    block: int = BLOCK_BYTES,
) -> dict[str, Any]:
    """One page, newest first (blocking: run it in a worker thread). See the module doc for
    the cursor and the cap on what one page reads. A file that cannot be read (its
    permissions, a lost mount) is BackendUnavailable (503), logged."""
    count = check_limit(limit)
    try:
        return _scan(path, filters, count, after, max_bytes, block)
    except FileNotFoundError:
        if after is not None:
            raise Invalid("is past the end of the log (was it rotated?)", field="after") from None
        return {"items": [], "next": None}
    except OSError as exc:
        _log.error("cannot read the audit log %s: %s", path, exc)
        raise BackendUnavailable(
            "The audit log could not be read.", debug=f"audit log: {exc}"
        ) from None


def _scan(
    path: Path, filters: Filters, count: int, after: str | None, max_bytes: int, block: int
) -> dict[str, Any]:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        end = _cursor(after, f, size)
        chosen: list[dict[str, Any]] = []
        examined: int | None = None  # the offset of the earliest whole line looked at
        start, buf, hi, read = end, b"", 0, 0
        trailing = True  # the segment after the last newline: partial (or empty)
        while True:
            i = buf.rfind(b"\n", 0, hi)
            if i < 0 and start > 0:
                if read >= max_bytes and examined is not None:
                    return _answer(chosen, examined)  # the cap: continue from here
                if hi >= LONGEST_LINE:  # no restguard line is this long: a foreign file
                    raise Conflict(
                        f"the audit log holds a line longer than {LONGEST_LINE} bytes: the "
                        "file at [audit] path is not a log restguard wrote"
                    )
                n = min(block, start)
                start -= n
                f.seek(start)
                chunk = f.read(n)
                if len(chunk) != n:  # the file shrank under us (truncated): stop here
                    return _answer(chosen, examined)
                read += n
                buf, hi = chunk + buf[:hi], hi + n
                continue
            offset = start + i + 1
            line = buf[i + 1 : hi]
            hi = max(i, 0)
            if trailing:
                trailing = False
            else:
                examined = offset
                event = parse(line)
                shown = item(event) if event is not None else None
                if shown is not None and filters.keep(shown):
                    if len(chosen) == count:  # one more exists: the page is full
                        return _answer(chosen, _offset_of(chosen))
                    chosen.append(shown | {"_offset": offset})
            if i < 0:  # the file's first line: nothing before it
                return _answer(chosen, None)


def _offset_of(chosen: list[dict[str, Any]]) -> int:
    return int(chosen[-1]["_offset"])


def _answer(chosen: list[dict[str, Any]], next_offset: int | None) -> dict[str, Any]:
    items = [{k: v for k, v in c.items() if k != "_offset"} for c in chosen]
    return {"items": items, "next": str(next_offset) if next_offset else None}


async def listing(
    path: Path | None,
    filters: Filters,
    *,
    limit: int | None = None,
    after: str | None = None,
    scanner: Callable[..., dict[str, Any]] = scan,
) -> dict[str, Any]:
    """One page of the log at ``path``, newest first, read in a worker thread. An absent file
    is an empty page; no log kept (``path`` None: ``[audit] path = ""``) is a Conflict."""
    if path is None:
        raise Conflict('the audit log is off ([audit] path = "" in the settings)')
    check_limit(limit)
    # The disk may hang (a dead network mount): the answer does not wait past the deadline
    # (the worker thread finishes or stays stuck on its own; the event loop never waits).
    try:
        async with asyncio.timeout(READ_TIMEOUT):  # (not wait_for: clock.wait_for_event)
            return await asyncio.to_thread(scanner, path, filters, limit, after)
    except TimeoutError:
        _log.error("reading the audit log %s took more than %s s", path, READ_TIMEOUT)
        raise BackendUnavailable(
            "The audit log could not be read in time.", debug="audit log read timed out"
        ) from None
