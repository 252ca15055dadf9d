"""Storage errors. Driver exceptions become BackendUnavailable at the port boundary (503)."""

from __future__ import annotations

from restguard.errors import BackendUnavailable

__all__ = ["BackendUnavailable", "DriverMissing", "DuplicateRecord", "StoreError", "UnknownRecord"]


class StoreError(Exception):
    """A store refused a write for a reason the caller can explain to the user."""


class UnknownRecord(StoreError):
    """No record has that id."""


class DuplicateRecord(StoreError):
    """A record with that id or name already exists."""


class DriverMissing(StoreError):
    """The configured database needs a driver that is not installed (a restguard extra)."""
