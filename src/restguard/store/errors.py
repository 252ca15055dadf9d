"""Storage errors. Driver exceptions become BackendUnavailable at the port boundary (503)."""

from __future__ import annotations

from restguard.errors import BackendUnavailable

__all__ = [
    "BackendUnavailable",
    "DriverMissing",
    "DuplicateRecord",
    "StaleRecord",
    "StoreError",
    "UnknownRecord",
]


class StoreError(Exception):
    """A store refused a write for a reason the caller can explain to the user."""


class UnknownRecord(StoreError):
    """No record has that id."""


class DuplicateRecord(StoreError):
    """A record with that id or name already exists."""


class StaleRecord(StoreError):
    """The record is no longer as the caller read it (someone changed it since): nothing was
    written. Optimistic concurrency: the check and the write are one statement."""


class DriverMissing(StoreError):
    """The configured database needs a driver that is not installed (a restguard extra)."""
