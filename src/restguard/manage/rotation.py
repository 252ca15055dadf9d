"""What every rotation (API keys, apps) refuses, shared so that the kinds agree.

A rotation writes the old record only as it was read (``expected``): of two rotations, or a
rotation and a revocation, at once exactly one wins, and the other makes nothing. For that the
old record must change with every rotation, so only a live record that was never rotated can be
rotated: one in its grace period has a successor already (rotating it again would make a second,
and leave its ``revoked_at``, and with it the ETag and the write's check, as they were).
"""

from __future__ import annotations

from datetime import datetime

from restguard.manage.errors import Conflict, ManageError
from restguard.manage.values import iso
from restguard.manage.versions import changed_meanwhile, pins_version


def check_rotatable(what: str, revoked_at: datetime | None, now: datetime) -> None:
    """409 unless the record (``what``: "API key 'x'", "app 'y'") is live and not rotated."""
    if revoked_at is None:
        return
    if revoked_at <= now:
        raise Conflict(f"{what} is revoked; create a new one", field="id")
    raise Conflict(
        f"{what} was rotated already and works until {iso(revoked_at)}; rotate the one that "
        "replaced it, or revoke this one to stop it now",
        field="id",
    )


def rotation_lost(what: str, if_match: str | None) -> ManageError:
    """The refusal for a rotation whose old record changed between the read and the write
    (nothing was written): 412 if ``If-Match`` named the version, else 409."""
    if pins_version(if_match):
        return changed_meanwhile(what)
    return Conflict(
        f"{what} changed while rotating it (rotated or revoked at the same time); read it again",
        field="id",
    )
