"""Metrics: plain counters on the hot path, the Prometheus text format when scraped."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from restguard.audit import DecisionEvent
from restguard.observe import Metrics


def _event(outcome: str, status: int, ms: float, method: str | None = "api_key") -> DecisionEvent:
    return DecisionEvent("t", "GET", "/", "r", outcome, status, None, method, None, "c", None, ms)


def test_counts_and_histograms_render_as_prometheus_text() -> None:
    m = Metrics()
    m.observe_decision(_event("allow", 200, 0.1))  # 0.0001 s: exactly on a bucket bound
    m.observe_decision(_event("allow", 200, 3.0))
    m.observe_decision(_event("deny", 401, 0.2, None))
    m.observe_upstream(20.0)  # beyond the last bound: only +Inf
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    allow = (("auth_method", "api_key"), ("outcome", "allow"), ("status", "200"))
    deny = (("auth_method", "none"), ("outcome", "deny"), ("status", "401"))
    assert samples[("restguard_decisions_total", allow)] == 2
    assert samples[("restguard_decisions_total", deny)] == 1
    assert samples[("restguard_decision_seconds_bucket", (("le", "0.0001"),))] == 1
    assert samples[("restguard_decision_seconds_bucket", (("le", "0.0025"),))] == 2
    assert samples[("restguard_decision_seconds_bucket", (("le", "0.005"),))] == 3
    assert samples[("restguard_decision_seconds_count", ())] == 3
    assert abs(samples[("restguard_decision_seconds_sum", ())] - 0.0033) < 1e-12
    assert samples[("restguard_upstream_seconds_bucket", (("le", "10.0"),))] == 0
    assert samples[("restguard_upstream_seconds_bucket", (("le", "+Inf"),))] == 1
