"""Alembic environment for restguard's schema.

``restguard.store.sql.migrate`` passes an open connection in ``config.attributes["connection"]``
(it holds the migration lock on it); otherwise an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from restguard.store.sql.engine import make_engine, parse_url
from restguard.store.sql.tables import metadata

config = context.config


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise ValueError("set sqlalchemy.url or pass a connection in config.attributes")
    return url


if context.is_offline_mode():
    context.configure(
        url=parse_url(_url()),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=parse_url(_url()).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _run_on(given)
    else:
        engine = make_engine(_url())
        try:
            with engine.connect() as connection:
                _run_on(connection)
        finally:
            engine.dispose()
