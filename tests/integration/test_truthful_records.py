"""Truthful records (issue 7, item 7): the audit log and ``restguard_decisions_total`` hold the
status the client actually received -- the upstream's own (201, 404 ...), 502 when it failed,
504 when it was late, 499 when the client left first -- and what became of the upstream
exchange (``"upstream"``). With ``[audit] required = true`` the allowed request's line is
written before it is forwarded (``"upstream": "pending"``) and an outcome line follows when the
upstream did not answer."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.attacks.wire import request
from tests.harness import GatewayProcess
from tests.raw_upstream import Conn, RawUpstream, Seen, UpConn, get

Start = Callable[..., GatewayProcess]


def lines_for(gw: GatewayProcess, target: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in gw.audit_events() if e["path"] == target]
        if found or time.monotonic() > deadline:
            return found


def decisions_total(gw: GatewayProcess) -> dict[tuple[str, str], float]:
    """{(outcome, status): count} from the admin listener's /metrics."""
    text = httpx.get(gw.admin_url + "/metrics", timeout=5).text
    out: dict[tuple[str, str], float] = {}
    for m in re.finditer(r"restguard_decisions_total\{([^}]*)\} ([0-9.e+]+)", text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels["outcome"], labels["status"])
        out[key] = out.get(key, 0) + float(m.group(2))
    return out


def test_the_status_sent_and_the_upstream_outcome_are_recorded(
    raw: RawUpstream, start: Start
) -> None:
    gw = start(raw, **{"upstream.timeout": '"1s"'})
    _, key = gw.issue_key("notes:read")

    async def answer(conn: UpConn, seen: Seen) -> None:
        if seen.target == b"/notes/created":
            conn.answer(201, b"made")
        elif seen.target == b"/notes/broken":
            conn.close()  # no answer at all: 502
        elif seen.target == b"/notes/late":
            await asyncio.sleep(3)  # past the 1 s deadline: 504
        else:
            conn.answer(404, b"no such note")

    raw.handler = answer  # type: ignore[assignment]
    expected = {
        "/notes/created": (201, "ok"),
        "/notes/missing": (404, "ok"),
        "/notes/broken": (502, "error"),
        "/notes/late": (504, "timeout"),
    }
    for target, (status, _) in expected.items():
        with Conn(gw.port, timeout=5) as c:
            c.send(get(key, target.encode()))
            assert c.response().status == status
    for target, (status, upstream) in expected.items():
        [line] = lines_for(gw, target)
        assert (line["outcome"], line["status"], line["upstream"]) == ("allow", status, upstream)
        assert line["auth_method"] == "api_key" and line["error"] is None
    # a refusal has no upstream outcome
    with Conn(gw.port, timeout=5) as c:
        c.send(request(b"/notes/nokey"))
        assert c.response().status == 401
    [line] = lines_for(gw, "/notes/nokey")
    assert (line["outcome"], line["status"], line["upstream"]) == ("deny", 401, None)
    totals = decisions_total(gw)
    for status in ("201", "404", "502", "504"):
        assert totals.get(("allow", status)) == 1, totals
    assert ("allow", "200") not in totals


def test_a_client_that_leaves_before_the_answer_is_a_499(raw: RawUpstream, start: Start) -> None:
    gw = start(raw)
    _, key = gw.issue_key("notes:read")
    answered = asyncio.Event()

    async def slow(conn: UpConn, seen: Seen) -> None:
        await asyncio.sleep(1.0)
        if not conn.closed:
            conn.answer(200, b"too late")
        answered.set()

    raw.handler = slow  # type: ignore[assignment]
    with Conn(gw.port, timeout=5) as c:
        c.send(get(key, b"/notes/gone"))
        time.sleep(0.3)
        # gone for good (a reset), not a half-close (that one is still answered)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    [line] = lines_for(gw, "/notes/gone")
    assert (line["status"], line["upstream"]) == (499, "client_gone")


def test_a_required_audit_log_records_before_forwarding_and_then_the_failure(
    raw: RawUpstream, start: Start
) -> None:
    gw = start(raw, **{"audit.required": "true"})
    _, key = gw.issue_key("notes:read")
    seen_lines: list[int] = []

    async def answer(conn: UpConn, seen: Seen) -> None:
        # the line is in the file before the request reaches the upstream
        path = gw.settings.audit_path
        assert path is not None
        seen_lines.append(path.read_text().count('"upstream":"pending"'))
        if seen.target == b"/notes/broken":
            conn.close()
        else:
            conn.answer(200, b"fine")

    raw.handler = answer  # type: ignore[assignment]
    for target, status in ((b"/notes/fine", 200), (b"/notes/broken", 502)):
        with Conn(gw.port, timeout=5) as c:
            c.send(get(key, target))
            assert c.response().status == status
    # (the broken one is tried twice: a reused keep-alive connection closed early is retried)
    assert seen_lines[0] == 1 and set(seen_lines[1:]) == {2}
    fine = lines_for(gw, "/notes/fine")
    assert [(e["status"], e["upstream"]) for e in fine] == [(200, "pending")]
    broken = lines_for(gw, "/notes/broken")
    assert [(e["status"], e["upstream"]) for e in broken] == [(200, "pending"), (502, "error")]
