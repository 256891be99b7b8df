"""The board server's own arithmetic: breach rate from counter samples, worker figures, health."""

from __future__ import annotations

from connectors.sinks.board_store import BoardKeys
from streams.runtime.settings import Settings
from streams.tools.board_web import BoardApp, BoardConfig, BreachRate, worker_figures

EXPOSITION = """\
# HELP escalator_sla_breaches_total SLA targets breached
# TYPE escalator_sla_breaches_total counter
escalator_sla_breaches_total{policy="standard",metric="first_response"} 4.0
escalator_sla_breaches_total{policy="premium",metric="resolution"} 2.0
# HELP escalator_consumer_lag Messages behind
# TYPE escalator_consumer_lag gauge
escalator_consumer_lag{topic="ticket-events",partition="0"} 3.0
escalator_consumer_lag{topic="ticket-events",partition="1"} 4.0
# HELP escalator_other_total not shown
# TYPE escalator_other_total counter
escalator_other_total 9.0
"""


def test_worker_figures_sum_over_labels_and_find_the_breach_counter() -> None:
    figures, breaches = worker_figures(EXPOSITION)
    assert figures == {"consumer lag": 7.0}
    assert breaches == 6.0
    assert worker_figures("") == ({}, None)


def test_breach_rate_is_per_hour_over_the_last_hour_and_survives_a_restart() -> None:
    rate = BreachRate()
    assert rate.add(0.0, 10) is None  # one sample: no rate yet
    assert rate.add(30.0, 11) is None  # under a minute of samples
    assert rate.add(600.0, 20) == 10 * 3600 / 600
    assert rate.add(4200.0, 50) == (50 - 20) * 3600 / 3600  # samples older than 1 h dropped
    assert rate.add(4300.0, 1) is None  # the counter went back: the worker restarted


def test_sink_health_from_heartbeat_age_and_healthz() -> None:
    app = BoardApp(Settings(), BoardConfig(BoardKeys("t:")))
    now = 1_000_000
    assert app._sink({}, now, None) == {"status": "unknown"}
    assert app._sink({}, now, "down") == {"status": "down"}
    fresh = {"updated_at": now - 2_000, "lag": 0}
    assert app._sink(fresh, now, None)["status"] == "up"
    assert app._sink(fresh, now, "unhealthy")["status"] == "unhealthy"
    assert app._sink({"updated_at": now - 60_000, "lag": 5}, now, "up")["status"] == "down"


def test_shadow_figures_set_production_beside_the_shadow_by_reason_and_level() -> None:
    from streams.tools.board_web import shadow_figures
    from tests.support.shadow import shadow_exposition

    text, production, shadow, only = shadow_exposition()
    figures = shadow_figures(text)
    assert figures is not None
    rows = figures["by_reason_level"]
    assert sum(r["production"] for r in rows) == production > 0
    assert sum(r["shadow"] for r in rows) == shadow > 0
    assert any(r["production"] != r["shadow"] for r in rows)
    assert [(r["reason"], r["level"]) for r in rows] == sorted(
        (r["reason"], r["level"]) for r in rows
    )
    assert figures["only"] == only
    assert shadow_figures(EXPOSITION) is None  # a worker without a shadow policy
