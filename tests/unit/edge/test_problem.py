"""edge/problem.py: the one translator from AuthError to status, headers and JSON body."""

from __future__ import annotations

import json

import pytest

from restguard.edge.asgi_send import send_problem
from restguard.edge.problem import problem
from restguard.errors import (
    AuthError,
    BackendUnavailable,
    HeadersTooLarge,
    InsufficientScope,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    UpstreamError,
    UpstreamTimeout,
    VersionNotSupported,
)

CASES = [
    (InvalidRequest(), 400, "invalid_request"),
    (HeadersTooLarge(), 431, "invalid_request"),
    (PayloadTooLarge(), 413, "invalid_request"),
    (MissingCredential(), 401, "unauthorized"),
    (InvalidCredential(), 401, "invalid_token"),
    (InsufficientScope(("a",)), 403, "insufficient_scope"),
    (NotFound(), 404, "not_found"),
    (RateLimited(5), 429, "rate_limited"),
    (BackendUnavailable(), 503, "temporarily_unavailable"),
    (UpstreamError(), 502, "bad_gateway"),
    (UpstreamTimeout(), 504, "gateway_timeout"),
    (RequestTimeout(), 408, "invalid_request"),
    (VersionNotSupported(), 505, "invalid_request"),
    (Overloaded(), 503, "temporarily_unavailable"),
]


@pytest.mark.parametrize(("err", "status", "code"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_status_and_body(err: AuthError, status: int, code: str) -> None:
    got_status, headers, body = problem(err)
    assert got_status == status
    data = json.loads(body)
    assert data["error"] == code
    assert data["error_description"] == type(err).default_description
    assert set(data) <= {"error", "error_description", "scope"}
    h = dict(headers)
    assert h[b"content-type"] == b"application/json"
    assert h[b"content-length"] == str(len(body)).encode()
    assert h[b"cache-control"] == b"no-store"


def test_debug_detail_is_never_shown() -> None:
    err = InvalidCredential(debug="api key secret mismatch for rg_ak_secret")
    _, headers, body = problem(err)
    assert b"mismatch" not in body and b"rg_ak_secret" not in body
    assert all(b"mismatch" not in v for _, v in headers)


def test_custom_description() -> None:
    _, _, body = problem(InvalidRequest("Send one credential per request."))
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "Send one credential per request.",
    }


def test_insufficient_scope_names_every_required_scope() -> None:
    _, _, body = problem(InsufficientScope(("notes:read", "notes:write"), debug="missing x"))
    assert json.loads(body) == {
        "error": "insufficient_scope",
        "error_description": "The credential lacks a scope this route requires.",
        "scope": "notes:read notes:write",
    }


def test_one_www_authenticate_header_per_challenge() -> None:
    err = MissingCredential().with_challenges(
        ('ApiKey realm="restguard"', 'Bearer realm="restguard", error="invalid_token"')
    )
    _, headers, _ = problem(err)
    assert [v for k, v in headers if k == b"www-authenticate"] == [
        b'ApiKey realm="restguard"',
        b'Bearer realm="restguard", error="invalid_token"',
    ]


def test_no_challenge_header_without_challenges() -> None:
    _, headers, _ = problem(InsufficientScope(("a",)))
    assert b"www-authenticate" not in dict(headers)


@pytest.mark.parametrize(("given", "shown"), [(0, "1"), (1, "1"), (37, "37"), (-5, "1")])
def test_rate_limited_has_retry_after(given: int, shown: str) -> None:
    err = RateLimited(given)
    assert err.retry_after == int(shown)
    _, headers, _ = problem(err)
    assert dict(headers)[b"retry-after"] == shown.encode()


async def test_send_problem_over_asgi() -> None:
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await send_problem(send, NotFound())
    start, body = sent
    assert start["type"] == "http.response.start" and start["status"] == 404
    assert json.loads(body["body"])["error"] == "not_found"  # type: ignore[arg-type]

    sent.clear()
    await send_problem(send, NotFound(), head=True)
    start, body = sent
    assert body["body"] == b""
    assert dict(start["headers"])[b"content-length"] != b"0"  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("err", "header"),
    [
        (RequestTimeout(debug="head not complete"), (b"connection", b"close")),
        (Overloaded(debug="pool queue"), (b"retry-after", b"1")),
    ],
)
def test_slow_client_and_overload_answers_carry_their_header(
    err: AuthError, header: tuple[bytes, bytes]
) -> None:
    _, headers, body = problem(err)
    assert header in headers
    assert err.debug.encode() not in body
