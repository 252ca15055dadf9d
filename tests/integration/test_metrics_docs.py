"""docs/metrics.md and docs/grafana-dashboard.json against what ``GET /metrics`` really exposes:
every metric family in the output is in the doc's table (with its type and labels) and every
one in the table is in the output; every metric name the doc's queries and the dashboard's
panels use is one of them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from restguard.admin.app import AdminApp
from restguard.cli.init import bootstrap_admin_key, write_data_dir
from restguard.cli.serve import count_losses
from restguard.config import load
from restguard.errors import AuthError
from restguard.observe import Metrics
from restguard.types import RequestView
from restguard.wiring import open_runtime

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRICS_DOC = DOCS / "metrics.md"
DASHBOARD = DOCS / "grafana-dashboard.json"
NAME = re.compile(r"restguard_[a-z_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Documented:
    type: str
    labels: frozenset[str]


@dataclass
class Scrape:
    text: str
    families: dict[str, str]  # name -> type, from the "# TYPE" lines
    labels: dict[str, set[str]]  # family -> label names seen on its samples (less "le")
    values: dict[str, set[str]]  # label name -> values seen


def documented() -> dict[str, Documented]:
    """The rows of the doc's metrics table: | `name` | type | `label`, ... | ... |"""
    text = METRICS_DOC.read_text(encoding="utf-8")
    section = text.split("## The metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Documented] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"`restguard_[a-z_]+`", cells[0]):
            continue
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is in the table twice"
        rows[name] = Documented(cells[1], frozenset(re.findall(r"`([a-z_]+)`", cells[2])))
    assert rows, "no metrics table found in docs/metrics.md"
    return rows


def family_of(series: str, docs: dict[str, Documented]) -> str | None:
    """The documented family a series name belongs to (``x_bucket`` -> histogram ``x``)."""
    if series in docs:
        return series
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and docs.get(base, Documented("", frozenset())).type == "histogram":
            return base
    return None


def parse(text: str) -> Scrape:
    families: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    values: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            families[name] = kind
            labels[name] = set()
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
            assert m, line
            family = next(
                f for f in families if m.group(1) in (f, *(f + s for s in HISTOGRAM_SERIES))
            )
            for key, value in re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""):
                if key != "le":
                    labels[family].add(key)
                    values.setdefault(key, set()).add(value)
    return Scrape(text, families, labels, values)


@pytest.fixture
async def scrape(tmp_path: Path) -> AsyncIterator[Scrape]:
    """A runtime wired as ``restguard serve`` wires it (the metrics as a decision sink, the
    dropped counters registered), a few decisions, then ``GET /metrics`` on the admin app."""
    config = write_data_dir(tmp_path / "d")
    admin_key = bootstrap_admin_key(config)["key"]
    metrics = Metrics()
    runtime = await open_runtime(load(config), sinks=[metrics.observe_decision])
    try:
        count_losses(metrics, runtime)
        await runtime.guard.decide(RequestView("GET", "/health", client="127.0.0.1"))
        refused = [
            RequestView("GET", "/notes/1", client="127.0.0.1"),  # no credential: 401
            RequestView("GET", "/nowhere", client="127.0.0.1"),  # no route: 404
            RequestView(  # an admin key lacks notes:read: 403
                "GET", "/notes/1", headers=((b"x-api-key", admin_key.encode()),), client="::1"
            ),
        ]
        for view in refused:
            with pytest.raises(AuthError):
                await runtime.guard.decide(view)
        metrics.observe_upstream(0.004)
        app = AdminApp(runtime.store, metrics)
        transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            r = await client.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            for path in ("/healthz", "/readyz"):  # the doc's health endpoints answer as told
                health = await client.get(path)
                assert (health.status_code, health.json()) == (200, {"status": "ok"}), path
        yield parse(r.text)
    finally:
        await runtime.close()


async def test_every_exposed_family_is_documented_and_every_documented_one_exposed(
    scrape: Scrape,
) -> None:
    docs = documented()
    assert set(scrape.families) == set(docs), (
        f"undocumented: {sorted(set(scrape.families) - set(docs))}; "
        f"documented but not exposed: {sorted(set(docs) - set(scrape.families))}"
    )
    for name, kind in scrape.families.items():
        assert docs[name].type == kind, name
        assert scrape.labels[name] == set(docs[name].labels), name


async def test_the_decisions_made_show_with_documented_label_values(scrape: Scrape) -> None:
    counts = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in scrape.text.splitlines()
        if line.startswith("restguard_decisions_total{")
    }
    assert counts == {
        'restguard_decisions_total{auth_method="api_key",outcome="deny",status="403"}': 1.0,
        'restguard_decisions_total{auth_method="none",outcome="allow",status="200"}': 1.0,
        'restguard_decisions_total{auth_method="none",outcome="deny",status="401"}': 1.0,
        'restguard_decisions_total{auth_method="none",outcome="deny",status="404"}': 1.0,
    }
    assert "restguard_decision_seconds_count 4.0" in scrape.text
    assert "restguard_upstream_seconds_count 1.0" in scrape.text
    doc = METRICS_DOC.read_text(encoding="utf-8")
    for key in ("auth_method", "outcome"):
        for value in scrape.values[key]:
            assert f"`{value}`" in doc, (key, value)
    for value in scrape.values["status"]:
        assert re.search(rf"\b{value}\b", doc), ("status", value)


async def test_workers_snapshots_add_up_to_the_same_families() -> None:
    """``--workers N``: the admin process adds the others' snapshots; nothing new appears."""
    worker, admin = Metrics(), Metrics()
    for m in (worker, admin):
        m.count_from("restguard_audit_dropped", "lost", lambda: 2)
    worker.decisions[("jwt", "allow", 200)] = 3
    worker.decision_seconds.observe(0.001)
    admin.decisions[("jwt", "allow", 200)] = 1
    admin.peers = lambda: [worker.snapshot()]
    text = admin.render().decode()
    assert 'restguard_decisions_total{auth_method="jwt",outcome="allow",status="200"} 4.0' in text
    assert "restguard_audit_dropped_total 4.0" in text
    assert "restguard_decision_seconds_count 1.0" in text
    assert set(parse(text).families) <= set(documented())


def test_every_metric_the_doc_names_is_a_documented_family() -> None:
    docs = documented()
    names = set(NAME.findall(METRICS_DOC.read_text(encoding="utf-8")))
    unknown = sorted(n for n in names if family_of(n, docs) is None)
    assert unknown == [], unknown


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    panels = list(dashboard["panels"])
    for panel in list(panels):
        panels.extend(panel.get("panels", []))  # rows may hold panels
    exprs = [t["expr"] for p in panels for t in p.get("targets", []) if "expr" in t]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def test_the_grafana_dashboard_imports_and_uses_only_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] == 39
    (source,) = [i for i in dashboard["__inputs"] if i["type"] == "datasource"]
    assert (source["name"], source["pluginId"]) == ("DS_PROMETHEUS", "prometheus")
    docs = documented()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    for expr in _exprs(dashboard):
        for name in NAME.findall(expr):
            family = family_of(name, docs)
            assert family is not None, f"{name} (in {expr}) is not a documented metric"
            used.add(family)
    assert used == set(docs), f"no panel shows {sorted(set(docs) - used)}"
