"""wiring: where the counters of limits live, and Redis's extra missing or misconfigured."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from restguard.authz.ratelimit import MemoryRateLimiter
from restguard.clock import SystemClock
from restguard.config import ConfigError, Settings
from restguard.store.sql import open_store
from restguard.store.sql.rate_limit_repository import SqlRateLimiter
from restguard.wiring import _limiter, open_redis_for


def settings(tmp_path: Path, **over: object) -> Settings:
    base = Settings(file=tmp_path / "restguard.toml", database_url=f"sqlite:///{tmp_path}/d.db")
    return replace(base, **over)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "kind"),
    [
        ({}, MemoryRateLimiter),  # one process on SQLite: its memory
        ({"processes": 2}, SqlRateLimiter),  # serve --workers 2: the database
        ({"database_url": "postgresql://postgres@127.0.0.1:5432/x"}, SqlRateLimiter),
    ],
)
def test_the_limiter_is_shared_whenever_more_than_one_process_may_serve(
    tmp_path: Path, over: dict[str, object], kind: type
) -> None:
    s = settings(tmp_path, **over)
    store = open_store(s.database_url)
    try:
        limiter = _limiter(s, store, None, SystemClock())
        assert isinstance(getattr(limiter, "shared", limiter), kind)
    finally:
        store.close()


def test_redis_configured_without_its_extra_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m.startswith("restguard.store.redis")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(ConfigError) as err:
        open_redis_for(settings(tmp_path, redis_url="redis://127.0.0.1:6379/0"))
    assert "pip install 'restguard[redis]'" in str(err.value)
    assert "storage.redis" in str(err.value)


def test_an_unusable_redis_url_is_a_configuration_error_without_the_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        open_redis_for(settings(tmp_path, redis_url="redis://:s3cretpw@host:notaport/0"))
    assert "storage.redis" in str(err.value)
    assert "s3cretpw" not in str(err.value)
