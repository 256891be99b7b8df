"""The event-time driver's due queue, and the backtest's pause of the garbage collector."""

from __future__ import annotations

import dataclasses
import gc
import heapq
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import streams.sla
from streams.sla.events import EventType, Priority, TicketEvent, event_to_dict
from streams.sla.policy import load_policy, parse_policy
from streams.sla.report import compare
from streams.tools.backtest import DueQueue, backtest_events, run_backtest
from streams.tools.generator import generate_history
from streams.tools.history import LineError, read_history, write_history

MINUTE = 60_000
T0 = 1_790_000_000_000

# Pushes relative to the current `now` (before it too: a late event's due work), and steps of
# `now` forward after which everything due is taken out.
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(-3 * MINUTE, 5 * MINUTE) | st.sampled_from([0, 1, MINUTE, -1]),
            st.sampled_from(["T1", "T2", "T3"]),
        ),
        st.tuples(st.just("take"), st.integers(0, 3 * MINUTE) | st.just(0), st.just("")),
        st.tuples(st.just("compact"), st.just(0), st.sampled_from(["T1", "T2", "T3"])),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_due_queue_takes_out_what_is_due_in_the_order_of_a_heap(
    ops: list[tuple[str, int, str]],
) -> None:
    queue = DueQueue()
    model: list[tuple[int, str]] = []
    now = T0
    for op, amount, ticket in ops:
        if op == "push":
            queue.push(now + amount, ticket)
            heapq.heappush(model, (now + amount, ticket))
            continue
        if op == "compact":  # drops a ticket's entries, as if superseded
            queue.compact(lambda at, t, dropped=ticket: t != dropped)
            model = [entry for entry in model if entry[1] != ticket]
            heapq.heapify(model)
            assert queue.waiting <= len(model)
            continue
        now += amount
        taken = []
        while (entry := queue.pop(now)) is not None:
            taken.append(entry)
        expected = []
        while model and model[0][0] <= now:
            expected.append(heapq.heappop(model))
        assert taken == expected
        assert all(queue.due_from <= at for at, _ in model)  # a lower bound: nothing missed
    rest = []
    while (entry := queue.pop(now + 10**9)) is not None:
        rest.append(entry)
    assert rest == sorted(model)


def test_due_queue_orders_one_instant_by_ticket_and_keeps_what_is_not_due() -> None:
    queue = DueQueue()
    for ticket in ("T3", "T1", "T2"):
        queue.push(T0 + 5, ticket)
    queue.push(T0 + 6, "T0")
    assert queue.pop(T0 + 4) is None
    assert [queue.pop(T0 + 5) for _ in range(4)] == [(T0 + 5, "T1"), (T0 + 5, "T2"),
                                                      (T0 + 5, "T3"), None]  # fmt: skip
    assert queue.pop(T0 + 6) == (T0 + 6, "T0")


def _events(enabled: list[bool]) -> Iterator[TicketEvent | LineError]:
    enabled.append(gc.isenabled())
    yield from ()


def test_backtest_pauses_the_collector_and_restores_it() -> None:
    assert gc.isenabled()
    during: list[bool] = []
    backtest_events([load_policy()], _events(during))
    assert during == [False]
    assert gc.isenabled()


def test_backtest_leaves_a_disabled_collector_disabled_and_restores_it_on_errors() -> None:
    def failing() -> Iterator[TicketEvent | LineError]:
        raise RuntimeError("bad input")
        yield  # pragma: no cover

    gc.disable()
    try:
        backtest_events([load_policy()], _events([]))
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError):
        backtest_events([load_policy()], failing())
    assert gc.isenabled()


# ----------------------------------------------------------------------------- time order


def _history() -> list[TicketEvent]:
    return generate_history(agents=4, days=2, seed=11)


def _run(items: object, **kwargs: Any) -> tuple[str, str]:
    out = io.StringIO()
    (report,) = backtest_events([load_policy()], items, [out], board=True, **kwargs)  # type: ignore[arg-type]
    return out.getvalue(), report.format()


def _interleave(events: list[TicketEvent], order: list[str]) -> list[TicketEvent]:
    """The tickets' events in `order` of tickets, one after another: each keeps its order."""
    queues: dict[str, list[TicketEvent]] = {}
    for e in events:
        queues.setdefault(e.ticket_id, []).append(e)
    for queue in queues.values():
        queue.reverse()
    return [queues[t].pop() for t in order]


HISTORY = _history()
BASELINE = _run(HISTORY)


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False))
def test_a_backtest_does_not_depend_on_how_the_file_interleaves_tickets(rnd: Any) -> None:
    order = [e.ticket_id for e in HISTORY]
    rnd.shuffle(order)  # any interleaving that keeps each ticket's own order
    shuffled = _interleave(HISTORY, order)
    assume(shuffled != HISTORY)
    assert _run(shuffled) == BASELINE


def test_a_history_grouped_by_ticket_gives_the_same_output(tmp_path: Path) -> None:
    tickets = sorted({e.ticket_id for e in HISTORY})
    grouped = [e for t in tickets for e in HISTORY if e.ticket_id == t]
    path = tmp_path / "grouped.jsonl"
    write_history(path, grouped)
    errors = io.StringIO()
    out = io.StringIO()
    (report,) = backtest_events(
        [load_policy()], lambda: read_history(path, numbered=True), [out], board=True,
        errors=errors,
    )  # fmt: skip
    assert (out.getvalue(), report.format()) == BASELINE
    assert "not in time order" in errors.getvalue()
    # and a time-ordered file streams without the note
    write_history(path, HISTORY)
    errors = io.StringIO()
    backtest_events([load_policy()], lambda: read_history(path, numbered=True), errors=errors)
    assert "not in time order" not in errors.getvalue()


def test_every_time_based_action_fires_at_its_due_instant() -> None:
    text, _ = BASELINE
    records = [json.loads(line) for line in text.splitlines()]
    timed = [r for r in records if r["action"] in ("escalation", "reminder")]
    timed = [r for r in timed if r.get("event_id") is None]
    assert len(timed) > 20
    assert all(r["fired_at"] == r["due_at"] for r in timed)


def test_arrival_order_keeps_late_events_late() -> None:
    # one ticket's reply arrives a day late: in arrival order the breach is sent before it
    created = TicketEvent("e1", "T1", EventType.CREATED, T0, priority=Priority.URGENT,
                          customer_tier="vip", channel="email")  # fmt: skip
    reply = TicketEvent("e2", "T1", EventType.AGENT_REPLIED, T0 + 5 * MINUTE)
    other = TicketEvent("e3", "T2", EventType.CREATED, T0 + 86_400_000, customer_tier="vip")
    in_time, _ = _run([created, reply, other])
    late, _ = _run([created, other, reply], arrival_order=True)
    assert "FIRST_RESPONSE_BREACH" not in in_time
    assert "FIRST_RESPONSE_BREACH" in late
    assert _run([created, other, reply])[0] == in_time  # the default orders by event time


def test_arrival_order_keeps_a_clock_per_partition_as_the_worker_does() -> None:
    """T1 is on partition 0 of 2, T2 on partition 1 (the producers' murmur2). T2's event
    passes T1's first-response deadline before T1's reply arrives, but the reply is on time
    for its own partition, whose clock the worker goes by: no breach. One clock fired it."""
    created = TicketEvent("e1", "T1", EventType.CREATED, T0, priority=Priority.URGENT,
                          customer_tier="vip", channel="email")  # fmt: skip
    other = TicketEvent("e3", "T2", EventType.CREATED, T0 + 3 * 3_600_000, customer_tier="vip")
    reply = TicketEvent("e2", "T1", EventType.AGENT_REPLIED, T0 + 5 * MINUTE)
    one_clock, _ = _run([created, other, reply], arrival_order=True)
    assert "FIRST_RESPONSE_BREACH" in one_clock
    two, report = _run([created, other, reply], arrival_order=True, partitions=2)
    assert "FIRST_RESPONSE_BREACH" not in two
    assert (two, report) == _run([created, reply, other])  # each partition in time order
    # a late event is late behind its own partition's clock only
    late = TicketEvent("e4", "T3", EventType.CREATED, T0, tags_added=("legal",))  # partition 1
    text, _ = _run([created, other, reply, late], arrival_order=True, partitions=2)
    assert "LEGAL_THREAT" in text  # 3 h behind T2 on its partition: within the horizon


def test_arrival_order_drops_a_queue_stat_late_behind_its_own_partition_only() -> None:
    """T1 and T5 are on partition 0 of 2, T2 and T3 on partition 1. T5's creation comes
    after T2's and T3's, 3 h later in event time: on time for partition 0, whose clock the
    alerts process judges it by, as the worker sent it (T1's time); late on one clock."""
    lateness = load_policy().ops_alerts.allowed_lateness
    events = [
        TicketEvent("a", "T1", EventType.CREATED, T0, channel="email"),
        TicketEvent("b", "T2", EventType.CREATED, T0 + 3 * 3_600_000, channel="email"),
        TicketEvent("c", "T3", EventType.CREATED, T0 + 3 * 3_600_000 + MINUTE, channel="email"),
        TicketEvent("d", "T5", EventType.CREATED, T0 + 3_600_000, channel="email"),
    ]
    late = {}
    for partitions in (1, 2):
        (report,) = backtest_events(
            [load_policy()], enumerate(events, 1), arrival_order=True, partitions=partitions
        )
        assert report.ops is not None
        late[partitions] = (report.ops_late, report.ops.added)
        text = report.format()
        assert ("1 queue stats came later than allowed_lateness" in text) == (partitions == 1)
        assert report.to_dict()["ops_late"] == report.ops_late
    assert late == {1: (1, 3), 2: (0, 4)}
    # one partition's own clock: the stat of an event as late as that is dropped there too
    again = [*events[:3], dataclasses.replace(events[3], ticket_id="T4", event_id="e")]
    (report,) = backtest_events(
        [load_policy()], enumerate(again, 1), arrival_order=True, partitions=2
    )  # T4 is on partition 1: behind its clock before T4 (T3's time) less the lateness
    assert events[2].occurred_at - lateness > events[3].occurred_at
    assert report.ops_late == 1


def test_duplicates_are_counted_over_every_partition() -> None:
    events = [
        TicketEvent("a", "T1", EventType.CREATED, T0, channel="email"),
        TicketEvent("b", "T2", EventType.CREATED, T0 + MINUTE, channel="email"),
    ]
    arrival = [events[0], events[1], events[1], events[0], events[1]]
    reports = backtest_events(
        [load_policy()], enumerate(arrival, 10), arrival_order=True, partitions=2
    )  # lines 10..14; T1's copies on partition 0, T2's on 1
    assert (reports[0].duplicates, reports[0].duplicate_lines) == (3, [12, 13, 14])


def test_reused_event_ids_and_far_ahead_events_are_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    events = HISTORY[:40]
    write_history(path, [*events, events[3], events[5]])
    far = event_to_dict(dataclasses.replace(events[0], event_id="far", occurred_at=T_2150))
    with path.open("a") as f:
        f.write(json.dumps(far) + "\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    (report,) = run_backtest(load_policy(), path, stdout=stdout, stderr=stderr)
    assert report.duplicates == 2 and report.duplicate_lines == [41, 42]
    assert report.rejected_lines == [43] and report.events == 42
    assert "lines 41, 42" in stderr.getvalue()
    assert "skipped line 43" in stderr.getvalue() and "days past the history's clock" in (
        stderr.getvalue()
    )
    assert "duplicate event ids at lines: 41, 42" in stdout.getvalue()


T_2150 = 5_680_281_600_000  # 2150-01-01: valid, but far past a 2026 history


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**70), 2**70),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from(
                [
                    "9999-12-31T23:59:59Z",
                    "2199-12-31T23:59:59Z",
                    "0001-01-01T00:00Z",
                    "2026-03-02T10:00:00+14:00",
                    "",
                    "1e400",
                ]
            ),  # fmt: skip
        ),
        min_size=1,
        max_size=6,
    ),
    st.binary(max_size=64),
)
def test_extreme_timestamps_and_bytes_never_raise_out_of_a_backtest(
    stamps: list[object], garbage: bytes
) -> None:
    import tempfile

    base = event_to_dict(HISTORY[0])
    lines = [json.dumps({**base, "event_id": f"x{i}", "occurred_at": s}) for i, s in
             enumerate(stamps)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.jsonl"
        path.write_bytes(("\n".join(lines) + "\n").encode() + garbage + b"\n")
        (report,) = run_backtest(load_policy(), path, stdout=io.StringIO(), stderr=io.StringIO())
    assert report.events + report.bad_lines >= 1


def test_a_metric_with_no_target_counts_neither_met_nor_missed() -> None:
    policy = parse_policy(NO_NEXT_RESPONSE, "p.yaml")
    events = [
        TicketEvent("e1", "T1", EventType.CREATED, T0),
        TicketEvent("e2", "T1", EventType.AGENT_REPLIED, T0 + MINUTE),
        TicketEvent("e3", "T1", EventType.CUSTOMER_REPLIED, T0 + 2 * MINUTE),
        TicketEvent("e4", "T1", EventType.AGENT_REPLIED, T0 + 3 * MINUTE),
        TicketEvent("e5", "T1", EventType.RESOLVED, T0 + 4 * MINUTE),
    ]
    (report,) = backtest_events([policy], events)
    metrics = {metric for (_, metric) in report.attainment}
    assert "next_response" not in metrics and "first_response" in metrics
    assert "next_response" not in report.format()


NO_NEXT_RESPONSE = """\
version: 1
sla_policies:
  - name: all
    targets: {first_response: 1h, resolution: 1d}
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
"""


def test_compare_lists_escalations_that_moved_in_time() -> None:
    text = (Path(streams.sla.__file__).parent / "default_policy.yaml").read_text()
    old, new = (
        "{URGENT: 1h, HIGH: 2h, NORMAL: 4h, LOW: 8h}",
        "{URGENT: 45m, HIGH: 1h30m, NORMAL: 3h}",
    )
    faster = text.replace(f"first_response: {old}", f"first_response: {new[:-1]}, LOW: 6h}}")
    assert faster != text
    base, other = backtest_events([load_policy(), parse_policy(faster, "faster.yaml")], HISTORY)
    text = compare(base, other)
    assert "escalations sent by both at different times:" in text
    moved = [eid for eid, at in base.due.items() if eid in other.due and other.due[eid] != at]
    assert moved and f"at different times: {len(moved):,} ({len(moved):,} earlier" in text
    assert "median shift -" in text


def test_only_a_what_if_keeps_each_escalation_for_the_comparison() -> None:
    (alone,) = backtest_events([load_policy()], HISTORY)
    assert sum(alone.by_reason.values()) > 20
    assert not alone.outcomes and not alone.due  # bytes per escalation nobody reads
    base, other = backtest_events([load_policy(), load_policy()], HISTORY)
    assert len(base.due) == sum(base.by_reason.values()) and base.outcomes
    assert base.to_dict() == alone.to_dict() and other.due == base.due
