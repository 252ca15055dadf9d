"""Input values shared by every kind of record: times as the CLI and the API print them,
scope lists and durations, each refused with the field it came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from restguard.config import parse_duration, scope_problem
from restguard.manage.errors import Invalid

MAX_SCOPES = 100


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC, to the second (``2026-12-01T14:20:00Z``)."""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def check_scopes(
    scopes: Any, field: str = "scopes", hint: str = "give each scope as its own item"
) -> tuple[str, ...]:
    """Scopes as given (duplicates dropped, order kept); Invalid naming the first bad one."""
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise Invalid("must be a list of strings", field=field)
    if len(scopes) > MAX_SCOPES:
        raise Invalid(f"at most {MAX_SCOPES} scopes", field=field)
    for scope in scopes:
        problem = scope_problem(scope)
        if problem:
            raise Invalid(f"{problem}: {hint}", field=field)
    return tuple(dict.fromkeys(scopes))


def duration(value: Any, field: str) -> float | None:
    """Seconds from a duration (``30d``, ``90s``, ``500ms``), or None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("must be a duration such as 30d, 12h or 90s", field=field)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc), field=field) from None
