"""The admin API's resources, one module per kind of record: each has ``ENDPOINTS`` (paths
and handlers), and ``PATHS`` and ``SCHEMAS`` (its part of the OpenAPI document)."""

from __future__ import annotations

from types import ModuleType

from restguard.admin.resources import (
    apikeys,
    apps,
    audit,
    issuers,
    oauth1,
    oauth2_clients,
    signing_keys,
    users,
)

ALL: tuple[ModuleType, ...] = (
    apikeys,
    signing_keys,
    apps,
    oauth2_clients,
    oauth1,
    users,
    issuers,
    audit,
)
