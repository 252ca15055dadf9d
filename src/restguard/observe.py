"""Prometheus metrics: decisions by auth method and outcome, decision and upstream latency."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from restguard.audit import DecisionEvent

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """One registry per process; ``observe_decision`` is a decision-event sink."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "restguard_decisions",
            "Decisions by auth method and outcome.",
            ("auth_method", "outcome", "status"),
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "restguard_decision_seconds",
            "Time to decide a request.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        self.upstream_seconds = Histogram(
            "restguard_upstream_seconds",
            "Time from forwarding to the end of the upstream answer.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_decision(self, event: DecisionEvent) -> None:
        key = (event.auth_method or "none", event.outcome, event.status)
        child = self._children.get(key)
        if child is None:  # labels() costs a lock and a lookup; keep the few children found
            child = self._children[key] = self.decisions.labels(key[0], key[1], str(key[2]))
        child.inc()
        self.decision_seconds.observe(event.duration_ms / 1000)

    def observe_upstream(self, seconds: float) -> None:
        self.upstream_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
