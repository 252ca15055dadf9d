"""OpenTelemetry tracing through the real gateway (``[tracing] enabled = true``): one SERVER span
per request with the route, auth method, outcome, status and request id; the upstream gets the
span's ``traceparent``; a parent is taken from a trusted proxy only. Spans are read with the
SDK's in-memory exporter, installed as the process's tracer provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from restguard import config as config_module
from restguard.cli.init import write_data_dir
from restguard.config import ConfigError, load
from tests.faults import wait_until
from tests.harness import GatewayProcess, RecordingUpstream

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    """The SDK provider, once per process (OpenTelemetry allows setting it once)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(sdk)
    else:
        current.add_span_processor(SimpleSpanProcessor(EXPORTER))


def traced(tmp_path: Path, upstream: RecordingUpstream, **extra: str) -> GatewayProcess:
    upstream.clear()
    EXPORTER.clear()
    return GatewayProcess(
        tmp_path / "gw", upstream, extra={"tracing.enabled": "true", **extra}
    ).start()


@pytest.fixture
def gw(tmp_path: Path, upstream: RecordingUpstream) -> Iterator[GatewayProcess]:
    gateway = traced(tmp_path, upstream)
    yield gateway
    gateway.stop()


def span_named(request_id: str) -> object:
    wait_until(
        lambda: any(
            s.attributes.get("restguard.request_id") == request_id
            for s in EXPORTER.get_finished_spans()
        ),
        5,
        "the request's span",
    )
    (span,) = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.attributes.get("restguard.request_id") == request_id
    ]
    return span


def test_an_allowed_request_is_one_span_and_the_upstream_joins_its_trace(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    _, key = gw.issue_key("notes:read")
    r = httpx.get(gw.url + "/notes/7?secret=1", headers={"X-API-Key": key})
    assert r.status_code == 200
    span = span_named(r.headers["x-request-id"])
    assert span.name == "restguard GET"
    assert span.kind == trace.SpanKind.SERVER
    attrs = span.attributes
    assert attrs["http.route"] == "/notes/{id}"
    assert attrs["url.path"] == "/notes/7" and "secret" not in str(dict(attrs))
    assert attrs["restguard.auth_method"] == "api_key"
    assert attrs["restguard.outcome"] == "allow"
    assert attrs["http.response.status_code"] == 200
    assert key[19:] not in str(dict(attrs))
    ctx = span.get_span_context()
    traceparent = upstream.last().header("traceparent")
    assert traceparent is not None
    assert traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")


def test_a_refusal_is_a_span_too(gw: GatewayProcess, upstream: RecordingUpstream) -> None:
    r = httpx.get(gw.url + "/notes/7")
    assert r.status_code == 401
    attrs = span_named(r.headers["x-request-id"]).attributes
    assert attrs["restguard.outcome"] == "deny"
    assert attrs["http.response.status_code"] == 401


def test_a_clients_traceparent_is_not_a_parent_and_does_not_reach_the_upstream(
    gw: GatewayProcess, upstream: RecordingUpstream
) -> None:
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = httpx.get(gw.url + "/public/x", headers={"traceparent": theirs})
    span = span_named(r.headers["x-request-id"])
    assert span.parent is None
    sent = upstream.last().header("traceparent")
    assert sent is not None and "0af7651916cd43dd8448eb211c80319c" not in sent


def test_a_trusted_proxys_traceparent_is_the_parent(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    gateway = traced(tmp_path, upstream, **{"server.trusted_proxies": '["127.0.0.1/32"]'})
    try:
        theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = httpx.get(gateway.url + "/public/x", headers={"traceparent": theirs})
        span = span_named(r.headers["x-request-id"])
        assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
        assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        sent = upstream.last().header("traceparent")
        assert sent is not None and sent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    finally:
        gateway.stop()


def test_without_tracing_a_traceparent_passes_as_any_header(
    gateway: GatewayProcess, upstream: RecordingUpstream
) -> None:
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    EXPORTER.clear()
    r = httpx.get(gateway.url + "/public/x", headers={"traceparent": theirs})
    assert r.status_code == 200
    assert upstream.last().header("traceparent") == theirs
    assert not EXPORTER.get_finished_spans()


def test_tracing_without_the_packages_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_data_dir(tmp_path / "d")
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    assert load(config).tracing is True
    monkeypatch.setattr(config_module, "tracing_available", lambda: False)
    with pytest.raises(ConfigError, match=r"tracing.enabled.*restguard\[otel\]"):
        load(config)
