"""Unit checks of bench/pipeline.py's helpers: the steady load never escalates, so the only
breaches the latency bench reads are its own; a worker's compiled modules are seen; a
group's figures span all its workers (no services)."""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import cimpl

from bench import pipeline
from bench.pipeline import BENCH_POLICY, REPO, Drain, mapped_under
from bench.steady_load import LOAD_TICKETS, load_event
from streams.sla.actions import Escalation
from streams.sla.engine import Engine
from streams.sla.events import EventType
from streams.sla.policy import parse_policy
from streams.sla.state import TicketState


def test_load_at_5000_per_second_never_escalates_under_the_bench_policy() -> None:
    """Three passes over the pool at 5,000 events/s (4 s between a ticket's events), the
    clock advanced past each event and 2 minutes past the last: no escalation, and each
    ticket got CREATED, an agent reply, then a customer reply."""
    engine = Engine(parse_policy(BENCH_POLICY))
    states: dict[str, TicketState] = {}
    fired = []
    start, rate = 1_800_000_000_000, 5_000
    for count in range(3 * LOAD_TICKETS):
        now = start + count * 1000 // rate
        event = load_event(count, now)
        state, actions = engine.apply(states.get(event.ticket_id), event, now)
        states[event.ticket_id] = state
        fired += [a for a in actions if isinstance(a, Escalation)]
    end = start + 3 * LOAD_TICKETS * 1000 // rate + 120_000
    for state in states.values():
        fired += [a for a in engine.advance(state, end)[1] if isinstance(a, Escalation)]
    assert len(states) == LOAD_TICKETS and fired == []
    kinds = [load_event(c, 0).type for c in (7, LOAD_TICKETS + 7, 2 * LOAD_TICKETS + 7)]
    assert kinds == [EventType.CREATED, EventType.AGENT_REPLIED, EventType.CUSTOMER_REPLIED]


def test_load_without_replies_would_escalate() -> None:
    """The check above can fail: CREATED alone, 2 minutes later, breaches first response."""
    engine = Engine(parse_policy(BENCH_POLICY))
    state, _ = engine.apply(None, load_event(0, 1_800_000_000_000), 1_800_000_000_000)
    actions = engine.advance(state, 1_800_000_120_000)[1]
    assert any(isinstance(a, Escalation) for a in actions)


def test_mapped_under_names_the_extension_modules_loaded_from_a_tree() -> None:
    """How --compiled-cost tells a compiled worker: confluent-kafka's extension is mapped
    from site-packages, and nothing from the plain-Python tree."""
    site = Path(cimpl.__file__).resolve().parents[1]
    mapped = mapped_under(os.getpid(), site)
    assert f"confluent_kafka/{Path(cimpl.__file__).name}" in mapped
    assert mapped_under(os.getpid(), REPO / "streams") == []
    assert mapped_under(2**22 + 1, site) == []  # no such process


def test_a_backlog_done_by_the_first_commit_seen_has_no_rate() -> None:
    """The rate counts from the first commit seen; a small backlog may be whole by then,
    which would print 0 events/s for a fast worker."""
    run = Drain("p-", "w", total=1_000, first=(10.0, 1_000, 2.0), last=(10.5, 2.5), done=1_000)
    with pytest.raises(SystemExit, match="whole backlog"):
        run.rates()
    run.first = (10.0, 400, 2.0)
    assert run.rates() == pytest.approx((1_200.0, 1_200.0))


def test_with_the_sink_the_figures_span_worker_and_sink() -> None:
    """--with-sink: events/s run until the sink caught up, and the CPU is both processes'
    from the worker's first commit."""
    run = Drain("p-", "w", total=1_000, first=(10.0, 100, 2.0), last=(14.0, 6.0), done=1_000)
    run.sink_first, run.sink_done = 1.5, (19.0, 3.0)
    assert run.rates() == (900 / 4.0, 900 / 4.0)  # the worker alone
    assert run.whole() == (900 / 9.0, 900 / 5.5)  # 4 worker + 1.5 sink CPU-s


SETTINGS = types.SimpleNamespace(app_id="app", partitions=6)


class _Worker:
    def __init__(self, pid: int, code: int | None = None) -> None:
        self.pid, self.code = pid, code

    def poll(self) -> int | None:
        return self.code


def test_a_group_is_measured_from_its_first_commit_over_all_its_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--group: events and CPU count from the first commit seen, and the CPU is every
    worker's (pipeline.follow, as for one worker)."""
    committed = iter([0, 1_000, 5_000, 9_000])
    cpu = {1: iter([1.0, 2.0, 3.0, 4.0]), 2: iter([0.5, 1.5, 2.5, 3.5])}
    monkeypatch.setattr(pipeline, "committed_total", lambda *_: next(committed))
    monkeypatch.setattr(pipeline, "cpu_seconds", lambda pid: next(cpu[pid]))
    workers = [_Worker(1), _Worker(2)]
    run = Drain("p-", "g", 9_000, worker=workers[0], others=workers[1:])  # type: ignore[arg-type]
    pipeline.follow(SETTINGS, [run])  # type: ignore[arg-type]
    rate, per_cpu = run.rates()
    # first commit at 1,000 events with 2 + 1.5 CPU-s; the end at 9,000 with 4 + 3.5
    assert per_cpu == 8_000 / 4.0
    assert 0 < rate < 8_000 / (2 * pipeline.FOLLOW_S * 0.9)  # two polls at least


def test_a_group_run_stops_when_a_worker_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "committed_total", lambda *_: 10)
    monkeypatch.setattr(pipeline, "cpu_seconds", lambda _: 1.0)
    run = Drain("p-", "g", 100, worker=_Worker(1), others=[_Worker(2, code=1)])  # type: ignore[arg-type]
    with pytest.raises(SystemExit, match="worker g exited"):
        pipeline.follow(SETTINGS, [run])  # type: ignore[arg-type]


class _OffsetReader:
    made: list[_OffsetReader] = []

    def __init__(self, config: dict[str, object]) -> None:
        self.group, self.closed, self.reads = config["group.id"], False, 0
        _OffsetReader.made.append(self)

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        self.reads += 1
        return [types.SimpleNamespace(offset=10 * self.reads if p.partition else -1001)
                for p in partitions]  # fmt: skip

    def close(self) -> None:
        self.closed = True


def test_committed_offsets_are_read_by_one_consumer_per_group_closed_after_the_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer per reading delayed the reading that sees a drain's end."""
    monkeypatch.setattr(pipeline, "Consumer", _OffsetReader)
    monkeypatch.setattr(_OffsetReader, "made", [])
    settings = types.SimpleNamespace(kafka=types.SimpleNamespace(confluent=dict))
    totals = [pipeline.committed_total(settings, g, "t", 3) for g in ("a", "a", "b")]  # type: ignore[arg-type]
    assert totals == [20, 40, 20]  # partitions 1 and 2; partition 0 has no offset yet
    assert [r.group for r in _OffsetReader.made] == ["a", "b"]
    pipeline.close_readers()
    assert all(r.closed for r in _OffsetReader.made)
    pipeline.committed_total(settings, "a", "t", 3)  # type: ignore[arg-type]
    assert len(_OffsetReader.made) == 3  # a new drain, a new reader
    pipeline.close_readers()


class _Future:
    def result(self) -> None:
        return None


class _Admin:
    deleted: list[str] = []

    def __init__(self, config: dict[str, object]) -> None:
        pass

    def list_topics(self, timeout: float) -> Any:
        names = ["a1-ticket-events", "a1-escalations", "a10-ticket-events", "b-ticket-events"]
        return types.SimpleNamespace(topics=dict.fromkeys(names))

    def delete_topics(self, names: list[str], operation_timeout: float) -> dict[str, _Future]:
        _Admin.deleted.extend(names)
        return {name: _Future() for name in names}


def test_a_drain_leaves_no_topic_of_its_prefix_and_touches_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline, "AdminClient", _Admin)
    monkeypatch.setattr(_Admin, "deleted", [])
    monkeypatch.setattr(pipeline.kafka_config, "admin", lambda settings: {})
    pipeline.drop_topics(types.SimpleNamespace(), "a1-")  # type: ignore[arg-type]
    assert sorted(_Admin.deleted) == ["a1-escalations", "a1-ticket-events"]
