"""Shared CLI plumbing: the --config option, loading settings, opening the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from restguard.config import ConfigError, Settings, config_path, load, parse_duration
from restguard.errors import BackendUnavailable
from restguard.keys.sealing import MasterKeyError
from restguard.store.errors import DriverMissing, StoreError
from restguard.store.fanout import announcing
from restguard.store.ports import Store
from restguard.store.sql.engine import require_postgres_driver
from restguard.wiring import open_redis_for, open_store_for

P = ParamSpec("P")
T = TypeVar("T")

CONFIG_HELP = "Configuration file (default: $RESTGUARD_CONFIG, then ./restguard.toml)."
config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),  # also what shell completion offers: files
    metavar="PATH",
    default=None,
    help=CONFIG_HELP,
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout."
)


def given_config(config: str | None) -> str | None:
    """The --config a command was given: after the subcommand, else before it
    (``restguard --config X apikey list``); ``None`` leaves it to $RESTGUARD_CONFIG."""
    ctx = click.get_current_context(silent=True)
    root: str | None = ctx.find_root().params.get("config") if ctx is not None else None
    if config is None:
        return root
    if root is not None and resolve(root) != resolve(config):
        raise click.UsageError(f"--config is given twice ({root} and {config}); give it once")
    return config


def duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: seconds for a duration option (``30d``, ``90s``, ``500ms``)."""
    if value is None:
        return None
    try:
        return parse_duration(value)  # at most 36500d: later dates do not fit a datetime
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def settings_from(config: str | None) -> Settings:
    try:
        settings = load(config_path(given_config(config)))
    except ConfigError as exc:
        more = len(exc.problems) - 1
        hint = f" ({more} more: 'restguard check' lists them all)" if more else ""
        raise click.ClickException(f"{exc}{hint}") from None
    if settings.database_url.startswith("postgresql"):  # the driver is an extra: say which
        try:
            require_postgres_driver()
        except DriverMissing as exc:
            raise click.ClickException(f"{settings.file}: {exc}") from None
    return settings


def friendly(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn restguard's expected failures into one clear message and exit status 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, MasterKeyError, StoreError) as exc:
            raise click.ClickException(str(exc)) from None
        except BackendUnavailable as exc:
            raise click.ClickException(
                f"the database is unavailable ({exc.debug or exc.description})"
            ) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``action`` on the migrated store, closing it afterwards."""
    sql = open_store_for(settings)
    redis = open_redis_for(settings)
    try:
        if redis is None:
            return await action(sql)
        # revocations are announced, so every instance applies them at once
        return await action(announcing(sql, redis.revocations.publish))
    finally:
        if redis is not None:
            await redis.aclose()
        sql.close()


def resolve(path: str) -> Path:
    return Path(path).expanduser().resolve()
