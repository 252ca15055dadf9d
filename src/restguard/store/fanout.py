"""Revocation fan-out: a store whose revoking writes are announced to every instance.

Each instance keeps the credential records it reads on the hot path for at most a second
(``credentials.read_through``), so a revocation anywhere applies everywhere within a second
without any of this. With ``[storage] redis`` the store a process writes through is an
``AnnouncingStore``: once a revoking write has committed, it is announced on Redis's pub/sub
channel, and each instance that hears it drops its cached records at once
(``credentials.base.HoldsCache``): the revocation applies within the channel's latency.

The announcement follows the commit and is best effort: if it cannot be sent (Redis down) the
write stands and the one-second bound still holds, so the failure is logged, never raised.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, cast

from restguard.errors import BackendUnavailable
from restguard.store.ports import Store

_log = logging.getLogger("restguard.fanout")

#: Announce = (kind, key) -> None, e.g. ``RevocationBus.publish``.
Announce = Callable[[str, str], Awaitable[None]]

#: Per repository of the ``Store``, the writes that take a credential (or what vouches for
#: one) out of service. Adding a credential needs no announcement: caches remember a record's
#: absence for at most a second too, and a new issuer, being trust added, may wait that long.
REVOKING: Final[Mapping[str, frozenset[str]]] = {
    "api_keys": frozenset({"revoke", "rotate"}),
    "apps": frozenset({"revoke", "rotate"}),
    "oauth2_clients": frozenset({"revoke"}),
    "revoked_tokens": frozenset({"revoke"}),
    "refresh_tokens": frozenset({"revoke_family", "revoke_user"}),
    "issuers": frozenset({"remove"}),
    "oauth1_consumers": frozenset({"revoke"}),
    "oauth1_tokens": frozenset({"revoke", "revoke_user"}),
    "users": frozenset({"remove"}),
}


class _Announcing:
    """One repository whose ``methods`` announce ``(kind, first argument)`` once they return."""

    def __init__(
        self, repository: object, kind: str, methods: frozenset[str], announce: Announce
    ) -> None:
        self._repository, self._kind, self._methods = repository, kind, methods
        self._announce = announce

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._repository, name)
        if name not in self._methods:
            return attribute

        @functools.wraps(attribute)
        async def announced(*args: Any, **kwargs: Any) -> Any:
            result = await attribute(*args, **kwargs)
            key = str(args[0]) if args else ""
            try:
                await self._announce(self._kind, key)
            except BackendUnavailable as exc:
                _log.warning(
                    "%s.%s committed but could not be announced (%s): other instances apply "
                    "it within a second",
                    self._kind,
                    name,
                    exc.debug,
                )
            return result

        return announced


class AnnouncingStore:
    """``store`` with the ``REVOKING`` writes announced through ``announce``."""

    def __init__(self, store: Store, announce: Announce) -> None:
        self._store = store
        self._wrapped = {
            name: _Announcing(getattr(store, name), name, methods, announce)
            for name, methods in REVOKING.items()
        }

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        return wrapped if wrapped is not None else getattr(self._store, name)


def announcing(store: Store, announce: Announce) -> Store:
    """``store`` whose revoking writes are announced (typed as the ``Store`` it stands for)."""
    return cast(Store, AnnouncingStore(store, announce))
