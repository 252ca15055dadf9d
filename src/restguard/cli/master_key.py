"""``restguard master-key rotate``: a new master key, every stored secret re-sealed under it.

Crash-safe (``keys/sealing.py``): the new key goes to ``<master key>.next`` first, the database
is re-sealed in one transaction, then ``.next`` replaces the master key file. Interrupted at any
point, the data directory still opens, and running the command again finishes the rotation.
"""

from __future__ import annotations

import click
from sqlalchemy.exc import DBAPIError

from restguard.cli.context import config_option, friendly, json_option, run, settings_from
from restguard.cli.output import emit_json, success
from restguard.keys.master_check import WrongMasterKey, ensure_master_key
from restguard.keys.sealing import (
    Sealer,
    SealError,
    finish_rotation,
    open_sealer,
    prepare_rotation,
)
from restguard.store.sql import SqlStore
from restguard.store.sql.reseal import check_all, reseal_all
from restguard.wiring import open_store_for


@click.group("master-key")
def master_key() -> None:
    """The master key that seals stored secrets."""


@master_key.command("rotate")
@config_option
@json_option
@friendly
def rotate(config: str | None, as_json: bool) -> None:
    """Replace the master key file with a new key and re-seal every stored secret under it.

    The key is never printed. With RESTGUARD_MASTER_KEY set this is refused: move the key to
    the file named by [keys] master_key first. Restart running instances afterwards (they
    already pick up new signing keys sealed with the new master key)."""
    settings = settings_from(config)
    path = settings.master_key_path
    store = open_store_for(settings)
    try:
        assert isinstance(store, SqlStore)
        sealer = open_sealer(path)
        # The right key, before writing a new one (a data directory made before the master-key
        # check gets one here, re-sealed below with the secrets).
        run(ensure_master_key(store, sealer))
        check_all(store.engine, sealer)
        current, nxt, resumed = prepare_rotation(path)
        count = reseal_all(store.engine, Sealer(nxt, also=(current,)), Sealer(nxt))
    except (SealError, WrongMasterKey):
        raise click.ClickException(
            f"a stored secret does not open with {path} (nor with a pending rotation's key): "
            "it is not the data directory's master key; nothing was changed"
        ) from None
    except DBAPIError as exc:
        raise click.ClickException(
            f"the database is unavailable ({type(exc.orig).__name__}); nothing was re-sealed, "
            "run the command again to finish"
        ) from None
    finally:
        store.close()
    finish_rotation(path)
    if as_json:
        emit_json({"master_key": str(path), "resealed": count, "resumed": resumed})
        return
    verb = "Finished an interrupted rotation" if resumed else "Master key rotated"
    success(f"{verb}: {count} stored secret(s) re-sealed; {path} holds the new key.")
    click.echo("  Restart running instances so that they use it for new secrets.")
