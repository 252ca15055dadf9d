"""The fake Redis server the attack tests use closes every connection it accepted when it stops,
also one accepted in its loop's last turn (its socket once stayed open until collected, and the
collector's ResourceWarning failed whichever test ran then: test_review_batching's flake)."""

from __future__ import annotations

import gc
import socket
import warnings

from tests.attacks.fake_redis import FakeRedis


def test_a_connection_made_just_before_stop_is_closed_by_stop() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(10):
            fake = FakeRedis()
            client = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
            fake.stop()  # at once: the accept is still in the fake's loop
            client.close()
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == [], [str(w.message) for w in unclosed]
