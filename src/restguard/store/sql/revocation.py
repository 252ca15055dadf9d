"""Revoking one record on SQL, shared by every kind that has a ``revoked_at`` (API keys, apps,
OAuth 2.0 clients, OAuth 1.0a consumers and credentials).

A revocation keeps an earlier one (a record in its grace period stops now; one revoked before
stays revoked then). With ``expected``, the columns the caller read and the values it read them
with, the check is part of the UPDATE's WHERE: the record is revoked only while it is still as
read, else ``StaleRecord`` and nothing is written. That is optimistic concurrency with the check
and the write in one statement, so ``If-Match`` (RFC 9110 §13.1.1) holds against a change
that lands between the caller's read and its write, on SQLite and on PostgreSQL alike (a
concurrent UPDATE of the row makes PostgreSQL re-evaluate the WHERE on the committed row).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, RowMapping, Table, case, or_, select
from sqlalchemy import update as sql_update

from restguard.store.errors import StaleRecord, UnknownRecord

#: A column and the value the caller read in it (None: SQL NULL).
Read = tuple[Column[Any], Any]


def not_revoked_before(col: Any, at: datetime) -> ColumnElement[bool]:
    """Not revoked, or revoked later than ``at``: where a revocation at ``at`` changes it."""
    return or_(col.is_(None), col > at)


def same(col: Column[Any], value: Any) -> ColumnElement[bool]:
    """``col`` still holds ``value`` (``IS NULL`` for None: ``= NULL`` is never true)."""
    return col.is_(None) if value is None else col == value


def revoke_row(
    conn: Connection,
    table: Table,
    key: Read,
    at: datetime,
    what: str,
    expected: Sequence[Read] | None = None,
) -> RowMapping:
    """Set ``table``'s ``revoked_at`` to ``at`` on the row whose ``key`` column holds the key,
    unless an earlier one is set; the row as it is then. ``UnknownRecord`` if there is no such
    row. With ``expected``: only while every listed column still holds the value read, else
    ``StaleRecord`` (the caller's transaction then rolls back, so nothing changes).
    ``what`` names the record in errors (never a secret)."""
    col = table.c.revoked_at
    key_col, key_value = key
    where = [key_col == key_value]
    if expected is None:
        where.append(not_revoked_before(col, at))
    else:
        where += [same(c, v) for c, v in expected]
    changed = conn.execute(
        sql_update(table)
        .where(*where)
        .values(revoked_at=case((not_revoked_before(col, at), at), else_=col))
    ).rowcount
    row = conn.execute(select(table).where(key_col == key_value)).mappings().first()
    if row is None:
        raise UnknownRecord(f"no {what}")
    if expected is not None and changed == 0:
        raise StaleRecord(f"{what} changed since it was read")
    return row
