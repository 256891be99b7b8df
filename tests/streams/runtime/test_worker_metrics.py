"""Worker metrics (streams.runtime.worker_metrics): counts taken by the processor, read as
/metrics."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.processor import CODECS, TicketProcessor
from streams.runtime.topics import Topics
from streams.runtime.worker_metrics import Buckets, WorkerStats
from streams.sla.engine import Engine
from streams.sla.events import EventType, Status, TicketEvent, parse_ts
from streams.sla.policy import Tracking, parse_policy
from tests.support.metrics import Samples, scrape, value
from tests.support.stores import DictStore

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = parse_ts("2026-03-02T15:00:00Z")
NOW = T0 + 3 * HOUR  # the processor's wall clock
POLICY = parse_policy(
    """
version: 1
sla_policies:
  - name: fast
    match: {tier: [vip]}
    targets: {first_response: 1h, resolution: 8h}
    warn_at: [0.5]
  - name: slow
    targets: {first_response: 4h, resolution: 2d}
    warn_at: [0.5]
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: team-lead}
  executive: {contact: exec}
triggers:
  - name: legal
    when: {tags_added: [legal]}
    actions: [{escalate: {kind: PRIORITY, reason: LEGAL_THREAT, level: 2}},
              {bump_priority: {to: URGENT}}]
"""
)
CLOSED_RETENTION_MS = Tracking().closed_retention


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)


@pytest.fixture(scope="module")
def codecs() -> dict[str, Any]:
    return {name: codec_for(name) for name in CODECS}


def processor(codecs: dict[str, Any], live: bool = True, metrics: bool = True) -> TicketProcessor:
    stats = WorkerStats(["fast", "slow"], live=live) if metrics else None
    return TicketProcessor(Engine(POLICY), Topics(), codecs, 100_000, event_time=not live,
                           wall_clock=lambda: NOW, metrics=stats)  # fmt: skip


def send(proc: TicketProcessor, store: DictStore, codecs: dict[str, Any], ticket: str, eid: str,
         at: int, type_: str = "CREATED", partition: int = 0, **fields: Any) -> None:  # fmt: skip
    e = TicketEvent(eid, ticket, EventType(type_), at, **fields)
    raw = codecs["TicketEvent"].encode(ticket_event_to_avro(e))
    proc.on_event(store, raw, ticket.encode(), partition, 0, at)


def build_info(samples: Samples) -> dict[str, float]:
    return {dict(labels)["component"]: v
            for (n, labels), v in samples.items() if n == "escalator_build_info"}  # fmt: skip


def test_events_escalations_sla_clocks_and_tickets_by_policy(codecs: dict[str, Any]) -> None:
    proc, store = processor(codecs), DictStore()
    send(proc, store, codecs, "A", "a1", T0, customer_tier="vip")
    send(proc, store, codecs, "B", "b1", T0, tags_added=("legal",))
    send(proc, store, codecs, "B", "b1", T0, tags_added=("legal",))  # duplicate
    proc.on_event(store, b"junk", b"X", 0, 9, None)

    m = scrape(proc)
    assert value(m, "escalator_events_processed_total", type="CREATED") == 2  # not the duplicate
    assert value(m, "escalator_events_processed_total", type="RESOLVED") == 0
    assert value(m, "escalator_duplicate_events_total") == 1
    assert value(m, "escalator_dlq_events_total", reason="UNDECODABLE") == 1
    assert value(m, "escalator_dlq_events_total", reason="OVERSIZED") == 0
    assert value(m, "escalator_escalations_total", kind="PRIORITY", reason="LEGAL_THREAT",
                 level="2") == 1  # fmt: skip
    assert value(m, "escalator_priority_bumps_total", reason="LEGAL_THREAT") == 1
    assert value(m, "escalator_sla_clocks_total", policy="fast", sla_metric="first_response") == 1
    assert value(m, "escalator_sla_clocks_total", policy="slow", sla_metric="resolution") == 1
    assert value(m, "escalator_sla_clocks_total", policy="slow", sla_metric="next_response") == 0
    assert value(m, "escalator_tickets_open", policy="fast") == 1
    assert value(m, "escalator_tickets_open", policy="slow") == 1
    assert value(m, "escalator_tickets_at_risk", policy="fast") == 0
    assert value(m, "escalator_table_keys", table="tickets") == 2
    assert value(m, "escalator_due_index_entries") == 2
    # Event lag: wall clock (NOW) minus occurred_at, for the 2 applied events.
    assert value(m, "escalator_event_lag_seconds_count") == 2
    assert value(m, "escalator_event_lag_seconds_sum") == pytest.approx(2 * 3 * 3600)
    assert value(m, "escalator_event_lag_seconds_bucket", le="3600.0") == 0
    assert value(m, "escalator_event_lag_seconds_bucket", le="86400.0") == 2
    assert build_info(m)["worker"] == 1  # other components may share this test process


def test_ticks_warnings_breaches_detection_latency_and_at_risk(codecs: dict[str, Any]) -> None:
    proc, store = processor(codecs), DictStore()
    send(proc, store, codecs, "A", "a1", T0, customer_tier="vip")
    proc.rebuild(store, [0])

    proc.on_tick(store, 0, T0 + 40 * MINUTE)  # first response warned at 30 min
    m = scrape(proc)
    assert value(m, "escalator_sla_warnings_total", policy="fast", sla_metric="first_response") == 1
    assert value(m, "escalator_tickets_at_risk", policy="fast") == 1
    assert value(m, "escalator_tickets_breached", policy="fast") == 0
    assert value(m, "escalator_clock_last_tick_timestamp_seconds") == NOW / 1000
    assert value(m, "escalator_clock_tick_lag_seconds_sum") == (NOW - T0 - 40 * MINUTE) / 1000

    proc.on_tick(store, 0, T0 + 70 * MINUTE)  # breached at 60 min
    m = scrape(proc)
    assert value(m, "escalator_sla_breaches_total", policy="fast", sla_metric="first_response") == 1
    assert value(m, "escalator_sla_breaches_total", policy="slow", sla_metric="first_response") == 0
    assert value(m, "escalator_tickets_at_risk", policy="fast") == 0
    assert value(m, "escalator_tickets_breached", policy="fast") == 1
    # Detection latency: emitted_at (NOW) - due_at of the two time-driven escalations.
    assert value(m, "escalator_detection_latency_seconds_count") == 2
    expected = (NOW - (T0 + 30 * MINUTE)) + (NOW - (T0 + HOUR))
    assert value(m, "escalator_detection_latency_seconds_sum") == expected / 1000
    escalations = sum(v for (n, _), v in m.items() if n == "escalator_escalations_total")
    assert escalations == proc.counters.escalations == 2

    send(proc, store, codecs, "A", "a2", T0 + 80 * MINUTE, "AGENT_REPLIED")
    send(proc, store, codecs, "A", "a3", T0 + 90 * MINUTE, "RESOLVED", status=Status.SOLVED)
    m = scrape(proc)
    ended = {(dict(key)["sla_metric"], dict(key)["outcome"]): v
             for (n, key), v in m.items() if n == "escalator_sla_clocks_ended_total"}  # fmt: skip
    assert ended == {("first_response", "breached"): 1, ("resolution", "met"): 1}
    assert value(m, "escalator_tickets_open", policy="fast") == 0
    assert value(m, "escalator_tickets_breached", policy="fast") == 0
    assert value(m, "escalator_table_keys", table="tickets") == 1


def test_rebuild_forget_and_retention_keep_ticket_gauges_right(codecs: dict[str, Any]) -> None:
    live, store = processor(codecs), DictStore()
    send(live, store, codecs, "A", "a1", T0, partition=0)
    send(live, store, codecs, "B", "b1", T0, partition=1)
    send(live, store, codecs, "C", "c1", T0, partition=1)

    restarted = processor(codecs)
    restarted.rebuild(store, [0, 1])
    m = scrape(restarted)
    assert value(m, "escalator_tickets_open", policy="slow") == 3
    assert value(m, "escalator_table_keys", table="tickets") == 3
    restarted.rebuild(store, [1])  # a second rebuild of a partition does not double count
    restarted.forget([0])
    m = scrape(restarted)
    assert value(m, "escalator_tickets_open", policy="slow") == 2
    assert value(m, "escalator_table_keys", table="tickets") == 2

    send(restarted, store, codecs, "B", "b2", T0 + HOUR, "CLOSED", partition=1,
         status=Status.CLOSED)  # fmt: skip
    assert value(scrape(restarted), "escalator_tickets_open", policy="slow") == 1
    restarted.on_tick(store, 1, T0 + HOUR + CLOSED_RETENTION_MS)  # B leaves the table
    m = scrape(restarted)
    assert store.get(b"B") is None
    assert value(m, "escalator_table_keys", table="tickets") == 1


def test_event_time_worker_reports_no_wall_clock_figures(codecs: dict[str, Any]) -> None:
    proc, store = processor(codecs, live=False), DictStore()
    send(proc, store, codecs, "A", "a1", T0, customer_tier="vip")
    proc.on_tick(store, 0, T0 + 2 * HOUR)
    m = scrape(proc)
    names = {name for name, _ in m}
    assert value(m, "escalator_sla_breaches_total", policy="fast", sla_metric="first_response") == 1
    assert not any(n.startswith("escalator_detection_latency_seconds") for n in names)
    assert not any(n.startswith("escalator_clock_") for n in names)
    assert "escalator_event_lag_seconds_count" in names


def test_metrics_off_exposes_only_build_info(codecs: dict[str, Any]) -> None:
    proc, store = processor(codecs, metrics=False), DictStore()
    send(proc, store, codecs, "A", "a1", T0)
    m = scrape(proc)
    assert build_info(m)["worker"] == 1  # other components may share this test process
    # The registry is per process: other components' metrics may be registered in it by
    # other tests, so check that none of the worker's own families is exposed.
    on = processor(codecs, metrics=True)
    send(on, DictStore(), codecs, "A", "a1", T0)
    worker_names = {n for n, _ in scrape(on)} - {n for n, _ in m}
    assert "escalator_events_processed_total" in worker_names
    off_names = {n for n, _ in m}
    assert not off_names & {"escalator_escalations_total", "escalator_tickets_open",
                            "escalator_sla_clocks_total", "escalator_table_keys"}  # fmt: skip
    assert proc.counters.events == 1


def test_buckets_count_a_value_on_a_bound_in_that_bucket() -> None:
    buckets = Buckets([0.1, 1.0])
    for ms in (100, 101, 1000, 5000):
        buckets.observe(ms)
    family = buckets.family("x_seconds", "x")
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert got[("x_seconds_bucket", "0.1")] == 1
    assert got[("x_seconds_bucket", "1.0")] == 3
    assert got[("x_seconds_bucket", "+Inf")] == 4
    assert got[("x_seconds_count", None)] == 4
    assert got[("x_seconds_sum", None)] == pytest.approx(6.201)


def test_restarted_clocks_count_as_started_again(codecs: dict[str, Any]) -> None:
    proc, store = processor(codecs), DictStore()
    steps = [("a1", "CREATED", {}), ("a2", "AGENT_REPLIED", {}), ("a3", "CUSTOMER_REPLIED", {}),
             ("a4", "AGENT_REPLIED", {}), ("a5", "CUSTOMER_REPLIED", {}),
             ("a6", "RESOLVED", {"status": Status.SOLVED}), ("a7", "REOPENED", {})]  # fmt: skip
    for i, (eid, type_, fields) in enumerate(steps):
        send(proc, store, codecs, "A", eid, T0 + i * MINUTE, type_, customer_tier="vip", **fields)
    m = scrape(proc)
    started = {dict(key)["sla_metric"]: v for (n, key), v in m.items()
               if n == "escalator_sla_clocks_total" and dict(key)["policy"] == "fast"}  # fmt: skip
    # next_response: two customer replies and the reopen; resolution: creation and the reopen
    # (the policy sets no target for the other metrics: their series stay at zero)
    assert {k: v for k, v in started.items() if v} == {
        "first_response": 1,
        "next_response": 3,
        "resolution": 2,
    }
    assert set(started) == {"first_response", "next_response", "resolution", "periodic_update",
                            "pausable_update", "requester_wait", "agent_work"}  # fmt: skip
    assert value(m, "escalator_tickets_open", policy="fast") == 1
