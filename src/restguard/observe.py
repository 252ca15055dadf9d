"""Prometheus metrics: decisions by auth method and outcome, decision and upstream latency.

The hot path only bumps plain integers (a labelled ``prometheus_client`` counter plus a
histogram cost ~4 us per request on the gateway, measured in bench/); the values are turned
into metric families when ``/metrics`` is scraped. Everything runs on the one event loop.

With ``restguard serve --workers N`` each worker without the admin listener writes a
``snapshot`` to a shared directory every second (``publish_snapshots``); the admin process adds
them to its own when scraped (``Metrics(peers=...)``), so ``/metrics`` covers every worker.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from restguard.audit import DecisionEvent

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip


class _Histogram:
    """Cumulative-on-read histogram: one slot per bucket, plus +Inf."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, counts: list[int], total: float) -> None:
        if len(counts) == len(self.counts):
            self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
            self.total += total

    def copy(self) -> _Histogram:
        other = _Histogram(self.bounds)
        other.add(self.counts, self.total)
        return other

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


class Metrics(Collector):
    """One per process; ``observe_decision`` is a decision-event sink."""

    def __init__(self, peers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.peers = peers
        self.decisions: dict[tuple[str, str, int], int] = {}
        self.decision_seconds = _Histogram(LATENCY_BUCKETS)
        self.upstream_seconds = _Histogram(LATENCY_BUCKETS)
        # Counters kept elsewhere (dropped bookkeeping and audit lines ...), read when scraped.
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count_from(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Expose ``read()`` as the counter ``name`` (``_total`` is added by the format)."""
        self.counters[name] = (documentation, read)

    def _counter_values(self) -> dict[str, float]:
        return {name: float(read()) for name, (_, read) in self.counters.items()}

    def observe_decision(self, event: DecisionEvent) -> None:
        key = (event.auth_method or "none", event.outcome, event.status)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self.decision_seconds.observe(event.duration_ms / 1000)

    def observe_upstream(self, seconds: float) -> None:
        self.upstream_seconds.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """This process's values, JSON-ready, for the admin process to add up."""
        return {
            "decisions": [[*key, count] for key, count in self.decisions.items()],
            "decision_seconds": [self.decision_seconds.counts, self.decision_seconds.total],
            "upstream_seconds": [self.upstream_seconds.counts, self.upstream_seconds.total],
            "counters": self._counter_values(),
        }

    def _totals(
        self,
    ) -> tuple[dict[tuple[str, str, int], int], _Histogram, _Histogram, dict[str, float]]:
        decisions = dict(self.decisions)
        decided, upstream = self.decision_seconds.copy(), self.upstream_seconds.copy()
        counters = self._counter_values()
        for snap in self.peers() if self.peers else []:
            try:
                for method, outcome, status, count in snap["decisions"]:
                    key = (str(method), str(outcome), int(status))
                    decisions[key] = decisions.get(key, 0) + int(count)
                decided.add(*snap["decision_seconds"])
                upstream.add(*snap["upstream_seconds"])
                for name, value in dict(snap.get("counters", {})).items():
                    if name in counters:
                        counters[name] += float(value)
            except (KeyError, TypeError, ValueError):
                continue  # a snapshot from another version: left out, never fatal
        return decisions, decided, upstream, counters

    def decision_totals(self) -> dict[tuple[str, str, int], int]:
        """Decisions so far by (auth method, outcome, status), every worker's included."""
        return self._totals()[0]

    def collect(self) -> Iterator[Metric]:
        decisions, decided, upstream, counters = self._totals()
        counter = CounterMetricFamily(
            "restguard_decisions",
            "Decisions by auth method and outcome.",
            labels=("auth_method", "outcome", "status"),
        )
        for (method, outcome, status), count in sorted(decisions.items()):
            counter.add_metric((method, outcome, str(status)), count)
        yield counter
        yield decided.family("restguard_decision_seconds", "Time to decide a request.")
        yield upstream.family(
            "restguard_upstream_seconds",
            "Time from forwarding to the end of the upstream answer.",
        )
        for name, value in sorted(counters.items()):
            yield CounterMetricFamily(name, self.counters[name][0], value=value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def write_snapshot(metrics: Metrics, directory: Path) -> None:
    """Replace this process's snapshot file in ``directory`` (atomically)."""
    final = directory / f"{os.getpid()}.json"
    temp = final.with_suffix(".tmp")
    temp.write_text(json.dumps(metrics.snapshot()), encoding="utf-8")
    os.replace(temp, final)


SNAPSHOT_STALE = 5.0  # seconds: a worker that has not published for this long is gone


def read_snapshots(directory: Path) -> list[dict[str, Any]]:
    """Every other live process's latest snapshot in ``directory`` (a snapshot not refreshed
    for ``SNAPSHOT_STALE`` seconds belongs to a dead worker: it is removed, not added)."""
    own = f"{os.getpid()}.json"
    snaps = []
    now = time.time()
    for path in directory.glob("*.json"):
        if path.name == own:
            continue
        with contextlib.suppress(OSError, ValueError):
            if now - path.stat().st_mtime > SNAPSHOT_STALE:
                path.unlink()
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                snaps.append(data)
    return snaps
