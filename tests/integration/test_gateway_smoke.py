"""The gateway end to end over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import GatewayProcess


def test_read_key_reads_and_cannot_write(gateway_on: GatewayProcess) -> None:
    gw = gateway_on
    key_id, key = gw.issue_key("notes:read", name="reader")
    r = httpx.get(gw.url + "/notes/7?x=1", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    seen = gw.upstream.last()
    assert seen.target == b"/notes/7?x=1"
    assert seen.header("X-Restguard-Subject") == "reader"
    assert seen.header("X-Restguard-Client-Id") == key_id
    assert seen.header("X-Restguard-Auth-Method") == "api_key"
    assert seen.header("X-Restguard-Scopes") == "notes:read"
    assert seen.header("X-API-Key") is None
    before = len(gw.upstream.requests)
    r = httpx.post(gw.url + "/notes/7", headers={"Authorization": "ApiKey " + key}, json={})
    assert r.status_code == 403
    assert r.json() == {
        "error": "insufficient_scope",
        "error_description": "The credential lacks a scope this route requires.",
        "scope": "notes:write",
    }
    assert len(gw.upstream.requests) == before


def test_refused_paths_are_audited_without_secrets(gateway: GatewayProcess) -> None:
    from tests.harness import raw_request, status_of

    _, key = gateway.issue_key("notes:read")
    response = raw_request(
        gateway.port,
        b"GET /notes/a%2Fb HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\n\r\n",
    )
    assert status_of(response) == 400
    assert gateway.upstream.requests == []
    events = gateway.audit_events()
    assert events[-1]["path"] == "/notes/a%2Fb"
    assert events[-1]["outcome"] == "deny"
    assert events[-1]["status"] == 400
    assert key not in gateway.settings.audit_path.read_text()  # type: ignore[union-attr]


def test_an_unexpected_error_is_a_500_json_not_a_hung_connection(
    gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from restguard.guard import Guard
    from tests.harness import raw_request, status_of

    async def broken(self: Guard, view: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(Guard, "decide", broken)
    monkeypatch.setattr(logging.getLogger("restguard.gateway"), "disabled", True)
    response = raw_request(gateway.port, b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 500
    assert b'"error": "server_error"' in response
    assert b"boom" not in response
    assert gateway.upstream.requests == []


def test_http_parse_errors_are_audited(gateway: GatewayProcess) -> None:
    from tests.harness import raw_request, status_of

    response = raw_request(
        gateway.port, b"GET /public/x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
    )
    assert status_of(response) == 400
    response = raw_request(gateway.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 414
    statuses = [e["status"] for e in gateway.audit_events()]
    assert statuses[-2:] == [400, 414]
    assert gateway.upstream.requests == []


def test_a_refused_request_keeps_its_query_out_of_the_audit_log(gateway: GatewayProcess) -> None:
    from tests.harness import raw_request, status_of

    _, key = gateway.issue_key("notes:read")
    target = b"/notes/a%2Fb?api_key=" + key.encode()
    response = raw_request(gateway.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 400
    events = gateway.audit_events()
    assert events[-1]["path"] == "/notes/a%2Fb"
    assert key not in gateway.settings.audit_path.read_text()  # type: ignore[union-attr]
