"""Why an operation was refused, in terms both adapters can show: an HTTP status and error
code for the admin API, a message for people (the CLI prints it as is)."""

from __future__ import annotations


class ManageError(Exception):
    """An operation refused; ``field`` names the bad input when there is one."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(ManageError):
    """Malformed or out-of-range input (400)."""


class NotFound(ManageError):
    """No record has that id (404)."""

    status = 404
    code = "not_found"


class Conflict(ManageError):
    """The record exists already, or its state forbids the operation (409)."""

    status = 409
    code = "conflict"


class Stale(ManageError):
    """``If-Match`` names a version the record no longer has (412): someone changed it."""

    status = 412
    code = "precondition_failed"
