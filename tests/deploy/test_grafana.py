"""Grafana, checked without Grafana (not installable here): the dashboard JSON and the provisioning YAML.

What a Grafana server would reject or show broken: a missing or changing ``uid``, duplicate panel ids, a
panel or query pointing at a datasource other than the provisioned one, a query without PromQL, a panel
without a unit. The PromQL itself is checked by ``promtool`` (test_prometheus) and against a real
Prometheus fed by the running services (test_live_prometheus).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.needs import unavailable

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "speck-edge.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "speck-edge.yml"
DATASOURCE_UID = "speck-prometheus"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
LAYOUT_PANELS = {"row", "text"}
"""Panel types without queries (section headers, the explanation at the top)."""


def yaml_module() -> ModuleType:
    """PyYAML, or skip (fail under CI=true) when it is not installed."""
    try:
        import yaml
    except ImportError:
        unavailable("PyYAML is not installed (pip install pyyaml)")
    return yaml


def load_yaml(path: Path) -> Any:
    return yaml_module().safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(doc) if p["type"] not in LAYOUT_PANELS]


def panel_queries(doc: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(panel title / refId, PromQL)`` of every query of the dashboard."""
    doc = dashboard() if doc is None else doc
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in query_panels(doc) for t in p["targets"]]


def test_dashboard_identity() -> None:
    doc = dashboard()
    assert doc["uid"] == "speck-edge"
    assert doc["title"].startswith("speck-edge")
    assert 39 <= doc["schemaVersion"] <= 41
    assert "id" not in doc or doc["id"] is None, "a provisioned dashboard must not carry a database id"


def test_panel_ids_are_unique_and_every_panel_is_placed() -> None:
    ids = [p["id"] for p in panels(dashboard())]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for p in panels(dashboard()):
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys(), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in panels(dashboard()):
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_sections_have_titles_and_panels_explain_themselves() -> None:
    doc = dashboard()
    rows = [p for p in doc["panels"] if p["type"] == "row"]
    assert len(rows) >= 4 and all(r["title"] for r in rows)
    for p in query_panels(doc):
        assert p["title"] and p.get("description"), f"panel {p['id']} lacks a title or description"


def test_every_query_uses_the_provisioned_datasource() -> None:
    for p in query_panels(dashboard()):
        assert p["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, (p["title"], t["refId"])


def test_every_query_has_promql_and_a_unique_ref() -> None:
    for p in query_panels(dashboard()):
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), (p["title"], t["refId"])
            assert "speck_" in t["expr"] or t["expr"].startswith("up{"), (p["title"], t["expr"])


def test_every_panel_has_a_unit() -> None:
    known = {"watt", "joule", "s", "percentunit", "eps", "mps", "cps", "cpm", "none"}
    for p in query_panels(dashboard()):
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit in known, f"{p['title']}: unit {unit!r}"


def test_the_dashboard_shows_what_operators_ask_for() -> None:
    exprs = " ".join(e for _, e in panel_queries())
    for needle in (
        'speck_power_watts{state="resting"}', 'speck_power_watts{state="active"}', "speck_energy_joules_total",
        "histogram_quantile(0.5, sum by (le) (rate(speck_chip_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(speck_pipeline_latency_seconds_bucket",
        "sum by (label) (rate(speck_predictions_total", "rate(speck_events_total[1m])", "speck_input_masked_ratio",
        "speck_events_dropped_total", "speck_messages_dropped_total", "speck_service_up",
    ):  # fmt: skip
        assert needle in exprs, needle
    stacked = [p for p in query_panels(dashboard()) if "power by rail" in p["title"]]
    assert len(stacked) == 2
    assert all(p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal" for p in stacked)
    assert any(p["type"] == "stat" and "speck_service_up" in p["targets"][0]["expr"] for p in query_panels(dashboard()))


def test_datasource_provisioning() -> None:
    doc = load_yaml(DATASOURCES)
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["uid"] == DATASOURCE_UID
    assert ds["url"] == "http://prometheus:9090"
    assert ds["access"] == "proxy"
    assert ds["name"]


def test_dashboard_provisioning() -> None:
    doc = load_yaml(PROVIDERS)
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["name"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_PATH
