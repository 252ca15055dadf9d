"""``X-Request-Id`` through the real gateway: every request gets one (a trusted proxy's, when it
sent a well-formed one; else restguard's own), the upstream receives it, the client's answer
carries it (refusals too), and the audit line names it. A client's own id is never taken."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import GatewayProcess, RecordingUpstream, Reply

OWN = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def proxied(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    """A gateway that trusts 127.0.0.1 as its proxy (X-Forwarded-For, X-Request-Id)."""
    upstream.clear()
    gw = GatewayProcess(
        tmp_path / "gw", upstream, extra={"server.trusted_proxies": '["127.0.0.1/32"]'}
    ).start()
    yield gw
    gw.stop()


def logged(gw: GatewayProcess, *ids: str) -> bool:
    """Whether the audit log names every id in ``ids`` (lines reach the file within a quarter
    of a second of their exchange's end: waits up to 5 s)."""
    path = gw.settings.audit_path
    assert path is not None
    deadline = time.monotonic() + 5
    while True:
        text = path.read_text() if path.exists() else ""
        found = {json.loads(x)["request_id"] for x in text.splitlines()}
        if set(ids) <= found or time.monotonic() > deadline:
            return set(ids) <= found
        time.sleep(0.05)


def test_each_request_gets_its_own_id_end_to_end(
    gateway: GatewayProcess, upstream: RecordingUpstream
) -> None:
    _, key = gateway.issue_key("notes:read")
    ids = []
    for _ in range(3):
        r = httpx.get(gateway.url + "/notes/1", headers={"X-API-Key": key})
        assert r.status_code == 200
        sent = upstream.last().header("X-Request-Id")
        assert sent is not None and OWN.fullmatch(sent)
        assert r.headers["x-request-id"] == sent
        ids.append(sent)
    assert len(set(ids)) == 3
    assert logged(gateway, *ids)


def test_a_clients_own_id_is_replaced(gateway: GatewayProcess, upstream: RecordingUpstream) -> None:
    r = httpx.get(gateway.url + "/public/x", headers={"X-Request-Id": "forged-by-client"})
    assert r.status_code == 200
    sent = upstream.last().header("X-Request-Id")
    assert sent is not None and OWN.fullmatch(sent)
    assert r.headers["x-request-id"] == sent
    assert "forged-by-client" not in (gateway.settings.audit_path or Path("/")).read_text()


def test_refusals_carry_the_id_too(gateway: GatewayProcess, upstream: RecordingUpstream) -> None:
    upstream.clear()
    r = httpx.get(gateway.url + "/notes/1")
    assert r.status_code == 401
    assert OWN.fullmatch(r.headers["x-request-id"])
    assert not upstream.requests
    assert logged(gateway, r.headers["x-request-id"])


def test_the_upstreams_own_id_does_not_reach_the_client(
    gateway: GatewayProcess, upstream: RecordingUpstream
) -> None:
    upstream.reply = Reply(headers=[("Content-Type", "text/plain"), ("X-Request-Id", "theirs")])
    try:
        r = httpx.get(gateway.url + "/public/x")
    finally:
        upstream.reply = Reply()
    assert r.headers.get_list("x-request-id") == [upstream.last().header("X-Request-Id")]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        ("edge-1/req:42@lb", True),
        ("has space", False),
        ("x" * 129, False),
        ("bad\u00e9", False),
    ],
)
def test_a_trusted_proxys_well_formed_id_is_kept(
    proxied: GatewayProcess, upstream: RecordingUpstream, sent: str, kept: bool
) -> None:
    r = httpx.get(proxied.url + "/public/x", headers={"X-Request-Id": sent.encode("utf-8")})
    assert r.status_code == 200
    forwarded = upstream.last().header("X-Request-Id")
    if kept:
        assert forwarded == sent and r.headers["x-request-id"] == sent
        assert logged(proxied, sent)
    else:
        assert forwarded is not None and OWN.fullmatch(forwarded)


def test_two_ids_from_a_trusted_proxy_are_ambiguous_and_replaced(
    proxied: GatewayProcess, upstream: RecordingUpstream
) -> None:
    r = httpx.get(
        proxied.url + "/public/x", headers=[("X-Request-Id", "a1"), ("X-Request-Id", "b2")]
    )
    assert r.status_code == 200
    forwarded = upstream.last().header("X-Request-Id")
    assert forwarded is not None and OWN.fullmatch(forwarded)
