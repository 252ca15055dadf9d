"""Shared CLI plumbing: the --config option, loading settings, opening the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from restguard.config import ConfigError, Settings, config_path, load
from restguard.errors import BackendUnavailable
from restguard.keys.sealing import MasterKeyError
from restguard.store.errors import StoreError
from restguard.store.ports import Store
from restguard.wiring import open_store_for

P = ParamSpec("P")
T = TypeVar("T")

config_option = click.option(
    "--config",
    "config",
    metavar="PATH",
    default=None,
    help="Configuration file (default: $RESTGUARD_CONFIG or ./restguard.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def settings_from(config: str | None) -> Settings:
    try:
        return load(config_path(config))
    except ConfigError as exc:
        more = len(exc.problems) - 1
        hint = f" ({more} more: 'restguard check' lists them all)" if more else ""
        raise click.ClickException(f"{exc}{hint}") from None


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
    store = open_store_for(settings)
    try:
        return await action(store)
    finally:
        store.close()


def resolve(path: str) -> Path:
    return Path(path).expanduser().resolve()
