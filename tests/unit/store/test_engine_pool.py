"""The PostgreSQL pool holds a connection for every store thread, so none is opened and closed
per operation under load."""

from restguard.store.sql.engine import PG_POOL_SIZE
from restguard.store.sql.runner import READ_THREADS, WRITE_THREADS


def test_the_pool_has_a_connection_per_store_thread() -> None:
    assert PG_POOL_SIZE >= READ_THREADS + WRITE_THREADS
