"""A closed client connection is freed by reference counting, at once: no reference cycle
leaves it (its transport, parser, exchanges and buffers) to the collector, which runs rarely in
``restguard serve`` (``settle_garbage_collector``). Found by bench/soak.py: memory climbed ~8 %
over five minutes of fresh connections before the first full collection."""

from __future__ import annotations

import collections
import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, RecordingUpstream


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    up = RecordingUpstream()
    gateway = GatewayProcess(tmp_path / "gw", up).start()
    yield gateway
    gateway.stop()
    up.stop()


def _exchange(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        while s.recv(65536):  # until the gateway closes
            pass


def test_closed_connections_leave_no_garbage_cycles(gw: GatewayProcess) -> None:
    _, key = gw.issue_key("notes:read")
    kinds = {
        "allowed": b"GET /notes/1 HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
        b"Connection: close\r\n\r\n" % key.encode(),
        "refused": b"GET /notes/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "malformed": b"POST /notes/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
        "cut": b"GET /notes/1 HTTP/1.1\r\nHost: x\r\n",
    }
    for data in kinds.values():  # warm: caches and pools filled
        _exchange_or_cut(gw.port, data)
    time.sleep(0.3)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for data in kinds.values():
            for _ in range(10):
                _exchange_or_cut(gw.port, data)
        time.sleep(0.5)  # every connection_lost has run
        gc.collect()
        found = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert found["ClientConnection"] == 0, found.most_common(10)
    assert found["Exchange"] == 0, found.most_common(10)


def _exchange_or_cut(port: int, data: bytes) -> None:
    if data.endswith(b"\r\n\r\n") or b"hello" in data:
        _exchange(port, data)
        return
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # cut mid-head
        s.sendall(data)
        time.sleep(0.01)
