"""The admin API's resources, one module per kind of record: each has ``ENDPOINTS`` (paths
and handlers), and ``PATHS`` and ``SCHEMAS`` (its part of the OpenAPI document)."""

from __future__ import annotations

from types import ModuleType

from restguard.admin.resources import apikeys, apps, oauth1, signing_keys

ALL: tuple[ModuleType, ...] = (apikeys, signing_keys, apps, oauth1)
