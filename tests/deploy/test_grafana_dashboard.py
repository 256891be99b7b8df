"""The Grafana dashboard deploy/grafana/escalator-dashboard.json queries only exported metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.exported_metrics import exported_metric_names, metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "escalator-dashboard.json"


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return data


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))  # rows may hold collapsed panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield (
                f"variable {variable['name']}",
                query.get("query", "") if isinstance(query, dict) else query,
            )


def test_every_query_names_only_metrics_the_code_exports() -> None:
    exported = exported_metric_names()
    found = list(queries(load()))
    assert len(found) >= 20
    for where, expr in found:
        used = metric_names(expr)
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= exported, f"{where}: not exported: {sorted(used - exported)}"


def test_the_dashboard_covers_the_worker_metrics_of_the_alerts() -> None:
    used = set().union(*(metric_names(expr) for _, expr in queries(load())))
    for name in (
        "escalator_escalations_total",
        "escalator_sla_breaches_total",
        "escalator_sla_clocks_total",
        "escalator_detection_latency_seconds_bucket",
        "escalator_event_lag_seconds_bucket",
        "escalator_dlq_events_total",
        "escalator_consumer_lag",
        "escalator_clock_last_tick_timestamp_seconds",
        "escalator_tickets_open",
        "escalator_tickets_at_risk",
        "escalator_build_info",
        "escalator_ops_stats_total",
        "escalator_ops_alerts_sent_total",
    ):
        assert name in used, name


def test_dashboard_is_grafana_json_with_a_templated_datasource() -> None:
    dashboard = load()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
