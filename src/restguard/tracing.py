"""Optional OpenTelemetry tracing of the gateway (``[tracing] enabled = true`` with the
``restguard[otel]`` extra installed).

One span per request through the gateway (``SERVER`` kind, named ``restguard <METHOD>``), from
the decision to the end of the client's answer, with the route, the auth method, the outcome,
the status sent and the request id (``X-Request-Id``) as attributes; the path is redacted as in
the audit log and the query is never recorded. The upstream receives the W3C ``traceparent``
(and ``tracestate``) of that span, in place of any the client sent, so its own spans join the
trace. A parent context is taken only from a trusted proxy (``[server] trusted_proxies``): a
stranger does not choose which trace a request joins.

With tracing off (the default) nothing here runs on the hot path (the gateway holds ``None``),
and a client's ``traceparent`` passes to the upstream as any other header. ``configure``
installs an SDK tracer provider exporting over OTLP/HTTP (the standard ``OTEL_EXPORTER_OTLP_*``
and ``OTEL_SERVICE_NAME`` variables apply) unless the process already has one (for instance
under ``opentelemetry-instrument``).
"""

from __future__ import annotations

from typing import Any

from restguard.tokens import redact
from restguard.types import RequestView

try:  # (the restguard[otel] extra)
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - exercised by the packaging test's plain install
    propagate = trace = None  # type: ignore[assignment]

MISSING = "tracing needs the OpenTelemetry packages: pip install 'restguard[otel]'"
_TRACE_HEADERS = (b"traceparent", b"tracestate")


def available() -> bool:
    return trace is not None


def configure() -> None:
    """Export spans over OTLP/HTTP unless a tracer provider is set already (an SDK the
    process configured itself). Needs ``opentelemetry-sdk`` and the OTLP/HTTP exporter."""
    if trace is None:
        raise RuntimeError(MISSING)
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "restguard"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class Tracing:
    """Starts and ends the gateway's request spans (only built when tracing is on)."""

    def __init__(self) -> None:
        if trace is None:
            raise RuntimeError(MISSING)
        from restguard import __version__

        self._tracer = trace.get_tracer("restguard", __version__)

    def start(self, view: RequestView) -> Any:
        """The span of the request ``view`` (the parent is a trusted proxy's, if it sent one)."""
        parent = None
        if view.via_trusted_proxy:
            carrier = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in view.headers
                if k in _TRACE_HEADERS
            }
            parent = propagate.extract(carrier) if carrier else None
        return self._tracer.start_span(
            f"restguard {view.method}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": view.method,
                "url.path": redact(view.path),
                "url.scheme": view.scheme,
                "client.address": view.client,
                "restguard.request_id": view.request_id,
            },
        )

    @staticmethod
    def headers(span: Any) -> bytes:
        """The ``traceparent`` (and ``tracestate``) lines that make the upstream's spans
        children of ``span``."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return b"".join(
            b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in carrier.items()
            if k.encode("latin-1") in _TRACE_HEADERS
        )

    @staticmethod
    def end(
        span: Any, status: int, route: str | None, auth_method: str | None, outcome: str
    ) -> None:
        if route is not None:
            span.set_attribute("http.route", route)
        if auth_method:
            span.set_attribute("restguard.auth_method", auth_method)
        span.set_attribute("restguard.outcome", outcome)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        span.end()
