"""TicketProcessor (streams.runtime.processor) without Kafka: a dict store, real codecs,
the default policy."""

from __future__ import annotations

import dataclasses
import marshal
import tracemalloc
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from schemas.codec import codec_for
from streams.runtime.partition_store import PartitionStore
from streams.runtime.processor import (
    COMPACT_SLACK,
    SHADOW_KEYS,
    TICK_HEADER,
    Out,
    StateCache,
    SteadyClock,
    TicketProcessor,
    decode_state,
    decode_tick,
    encode_state,
    encode_tick,
    is_tick,
)
from streams.runtime.worker_metrics import WorkerStats, category
from streams.sla.engine import Engine
from streams.sla.events import Status, parse_ts
from streams.sla.policy import Policy, Tracking, load_policy
from streams.sla.state import TicketState
from streams.tools.generator import generate_history
from tests.support.events import DAY, HOUR, MINUTE, NOW, T0, event
from tests.support.processor import (
    CLOSED_RETENTION_MS,
    CODEC_NAMES,
    TOPICS,
    index_of,
    raw,
    send,
    with_horizon,
)
from tests.support.stores import DictStore

OUTPUT_CODECS = {
    TOPICS.escalations: "Escalation",
    TOPICS.priority_bumps: "PriorityBump",
    TOPICS.reminders: "Reminder",
    TOPICS.dlq: "DeadLetter",
}


class CountingStore(DictStore):
    """A DictStore that records reads and writes (each write is a changelog record)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[bytes] = []
        self.puts: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.gets.append(key)
        return super().get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.puts.append(key)
        super().put(key, value)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="module")
def codecs() -> dict[str, Any]:
    return {name: codec_for(name) for name in CODEC_NAMES}


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)


@pytest.fixture
def make(policy: Policy, codecs: dict[str, Any]) -> Any:
    # The wall clock (NOW) is days past the events: a horizon beyond it lets them page.
    def build(
        event_time: bool = False, max_event_bytes: int = 100_000, horizon: int = 365 * DAY
    ) -> TicketProcessor:
        return TicketProcessor(
            Engine(with_horizon(policy, horizon)), TOPICS, codecs, max_event_bytes,
            event_time=event_time, wall_clock=lambda: NOW,
        )  # fmt: skip

    return build


def decoded(codecs: dict[str, Any], outs: list[Out], topic: str) -> list[dict[str, Any]]:
    return [codecs[OUTPUT_CODECS[topic]].decode(o.value) for o in outs if o.topic == topic]


def escalated(codecs: dict[str, Any], outs: list[Out]) -> list[tuple[str, str, int]]:
    return [
        (r["ticket_id"], r["reason"], r["due_at"])
        for r in decoded(codecs, outs, TOPICS.escalations)
    ]


def state_of(store: DictStore, ticket: str) -> tuple[int, TicketState]:
    value = store.get(ticket.encode())
    assert value is not None, f"{ticket} not in the store"
    return decode_state(value)


# --------------------------------------------------------------------------- good events


def test_good_event_stores_state_with_its_partition_and_encodes_outputs(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(), DictStore()
    outs = send(proc, store, codecs, event("T1", "e1", T0, tags_added=("legal",)), partition=3)

    partition, state = state_of(store, "T1")
    assert partition == 3
    assert state.ticket_id == "T1" and "e1" in state.seen and state.next_due is not None
    assert set(proc.due) == {3} and proc.due[3][0] == (state.next_due, b"T1")

    [esc] = decoded(codecs, outs, TOPICS.escalations)
    assert esc["ticket_id"] == "T1" and esc["reason"] == "LEGAL_THREAT"
    assert esc["level"] == 5 and esc["event_id"] == "e1" and esc["emitted_at"] == NOW
    assert esc["due_at"] == T0
    [bump] = decoded(codecs, outs, TOPICS.priority_bumps)
    assert (bump["old_priority"], bump["new_priority"]) == ("NORMAL", "URGENT")
    assert bump["escalation_id"] == esc["escalation_id"]
    for out in outs:
        if out.topic in (TOPICS.escalations, TOPICS.priority_bumps):
            assert out.key == b"T1"
    assert {o.topic for o in outs} <= {
        TOPICS.escalations, TOPICS.priority_bumps, TOPICS.queue_stats
    }  # fmt: skip
    assert proc.counters.events == 1 and proc.counters.escalations == 1
    assert proc.counters.bumps == 1 and proc.counters.rejected == {}


def test_an_acknowledgement_on_the_topic_stops_the_climb_it_names(
    make: Any, codecs: dict[str, Any]
) -> None:
    """Through the Avro path a worker reads: the acknowledgement travels as TAGS_CHANGED with
    the carrier attribute and reaches the engine as ESCALATION_ACKNOWLEDGED. (In event time:
    the wall clock here is days past the events, so the climb would have gone on already.)"""
    proc, store = make(event_time=True), DictStore()
    outs = send(proc, store, codecs, event("T1", "e1", T0, tags_added=("legal",)))
    [esc] = decoded(codecs, outs, TOPICS.escalations)
    assert state_of(store, "T1")[1].awaiting_since == T0
    ack = event(
        "T1", "e2", T0 + HOUR // 12, "ESCALATION_ACKNOWLEDGED",
        attributes={"escalation_id": esc["escalation_id"], "acknowledged_by": "lead-1"},
    )  # fmt: skip
    assert codecs["TicketEvent"].decode(raw(codecs, ack))["type"] == "TAGS_CHANGED"
    assert send(proc, store, codecs, ack, offset=1) is not None
    _, state = state_of(store, "T1")
    assert state.awaiting_since is None and "e2" in state.seen


def test_reminder_is_encoded_on_the_reminders_topic(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    pending = event("T9", "e1", T0, "STATUS_CHANGED", status=Status.PENDING)
    send(proc, store, codecs, pending)
    outs = proc.on_tick(store, 0, T0 + 49 * HOUR)
    [reminder] = decoded(codecs, outs, TOPICS.reminders)
    assert reminder["ticket_id"] == "T9" and reminder["reason"] == "PENDING_TOO_LONG"
    assert proc.counters.reminders == 1


def test_duplicate_event_gives_no_outputs(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    e = event("T1", "e1", T0, tags_added=("legal",))
    assert escalated(codecs, send(proc, store, codecs, e))
    before = dict(store.data)

    outs = send(proc, store, codecs, e, offset=1)

    assert [o for o in outs if o.topic != TOPICS.queue_stats] == []
    assert proc.counters.duplicates == 1 and proc.counters.events == 2
    assert store.data == before


def test_duplicate_event_writes_no_changelog_record(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), CountingStore()
    e = event("T1", "e1", T0)
    send(proc, store, codecs, e)
    assert store.puts == [b"T1"]
    send(proc, store, codecs, e, offset=1)
    assert store.puts == [b"T1"]


# --------------------------------------------------------------------------- state cache


def test_a_state_changed_in_the_store_is_read_from_the_store(
    make: Any, codecs: dict[str, Any]
) -> None:
    # As after a restore from the changelog: the cached state no longer matches the bytes.
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("T1", "e1", T0))
    partition, state = state_of(store, "T1")
    state.remember("e-from-elsewhere")
    store.put(b"T1", encode_state(partition, state))

    send(proc, store, codecs, event("T1", "e-from-elsewhere", T0 + MINUTE), offset=1)

    assert proc.counters.duplicates == 1


def test_encoded_states_take_no_more_memory_than_their_bytes() -> None:
    """The store's front and the cache hold thousands of these for as long as a ticket lives."""
    state = TicketState(ticket_id="T1", first_seen_at=T0, clock_at=T0, seen={"e1", "e2"})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_state(0, state) for _ in range(200)]
        per_state = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert decode_state(kept[0]) == (0, state)
    assert per_state < len(kept[0]) + 100  # the bytes plus the object header, no spare buffer


def test_cache_keeps_the_most_recently_saved_states() -> None:
    cache, store = StateCache(limit=2), DictStore()
    states = {k: TicketState(ticket_id=k.decode(), first_seen_at=T0, clock_at=T0) for k in
              (b"a", b"b", b"c")}  # fmt: skip
    for key, state in states.items():
        cache.save(store, key, 0, state)
    assert list(cache.entries) == [b"b", b"c"]
    assert cache.take(b"c", store.data[b"c"]) is states[b"c"]
    assert cache.take(b"a", store.data[b"a"]) == states[b"a"]  # decoded, not cached
    assert cache.take(b"a", store.data[b"a"]) is not states[b"a"]


def test_cache_and_due_index_change_nothing_but_speed(make: Any, codecs: dict[str, Any]) -> None:
    # A day of generated history through a processor that caches and one that never does:
    # the same outputs, the same stored bytes.
    history = generate_history(agents=6, days=1, seed=5)
    now = max(e.occurred_at for e in history) + HOUR
    runs = []
    for limit in (20_000, 0):
        proc, store = make(event_time=True), DictStore()
        proc.clock.wall = lambda: now
        proc.cache = StateCache(limit)
        outs = [o for i, e in enumerate(history) for o in send(proc, store, codecs, e, 0, i)]
        outs += proc.on_tick(store, 0, now)
        runs.append((outs, store.data))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) > 50 and escalated(codecs, runs[0][0])


def test_memory_holds_only_the_tickets_the_store_keeps(make: Any, codecs: dict[str, Any]) -> None:
    """Six weeks of history through a worker's store (a small front, so it turns over): once
    tickets close and their retention passes, nothing in memory still refers to them (the
    soak's flat worker, in seconds). A structure that kept closed tickets would hold most of
    the history's tickets here, not the few the store keeps."""
    history = generate_history(agents=1, days=42, seed=5)
    proc, store = make(event_time=True), PartitionStore({}, front=128)
    now = max(e.occurred_at for e in history) + HOUR
    proc.clock.wall = lambda: now
    proc.metrics = WorkerStats(["vip-enterprise", "premium", "realtime-channels", "standard"],
                               live=False)  # fmt: skip
    for i, e in enumerate(history):
        send(proc, store, codecs, e, 0, i)
        store.pending.clear()
        store.commit()  # as the worker's transaction after each event
    stored = {key: decode_state(value)[1] for key, value in store.items()}
    tickets = {e.ticket_id for e in history}
    assert len(stored) < len(tickets) / 3  # most tickets closed and left
    mark = proc.watermark[0]
    for state in stored.values():  # each stored ticket is still open or within its retention
        leaves = proc._leaves_at(state)
        assert leaves is None or leaves > mark - DAY  # (left at the next due instant it reaches)
    assert set(proc.cache.entries) <= set(stored)
    assert set(proc.scheduled[0]) <= set(stored)
    assert len(proc.due[0]) <= 2 * len(proc.scheduled[0]) + COMPACT_SLACK
    assert len(store.young) + len(store.old) <= 2 * 128
    assert set(store.data) <= set(stored) | set(store.young) | set(store.old)
    assert proc.metrics.keys == {0: len(stored)}
    open_now = sum(1 for state in stored.values() if category(state) is not None)
    assert sum(proc.metrics.by_policy(None).values()) == open_now


def test_superseded_due_entries_do_not_touch_the_store(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), CountingStore()
    send(proc, store, codecs, event("T1", "c0", T0))
    for i, status in enumerate((Status.PENDING, Status.OPEN, Status.PENDING, Status.OPEN)):
        at = T0 + (i + 1) * MINUTE
        send(proc, store, codecs, event("T1", f"s{i}", at, "STATUS_CHANGED", status=status), 0, i)
    assert len(proc.due[0]) > 1  # older entries of T1 are still in the heap
    store.gets.clear()

    proc.on_tick(store, 0, T0 + 30 * 86_400_000)

    assert store.gets == [b"T1"]


def test_superseded_due_entries_do_not_pile_up(make: Any, codecs: dict[str, Any]) -> None:
    # Each pause and resume moves T1's due time; what is superseded is dropped once it
    # outnumbers the live entries, not kept until its instant passes.
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("T1", "c0", T0))
    for i in range(3000):
        status = Status.PENDING if i % 2 == 0 else Status.OPEN
        at = T0 + (i + 1) * 1000
        send(proc, store, codecs, event("T1", f"s{i}", at, "STATUS_CHANGED", status=status), 0, i)
    assert len(proc.scheduled[0]) == 1
    assert 1 <= len(proc.due[0]) <= 2 + 1024
    _, state = state_of(store, "T1")
    assert (state.next_due, b"T1") in proc.due[0]


# --------------------------------------------------------------------------- DLQ


def dlq_cases(codecs: dict[str, Any]) -> list[tuple[str, bytes | None, str, str | None]]:
    big = event("T-big", "b1", T0, attributes={"note": "x" * 5000})
    future = event("T-future", "f1", NOW + 48 * HOUR)
    return [
        ("garbage", b"not avro at all", "UNDECODABLE", None),
        ("tombstone", None, "UNDECODABLE", None),
        ("oversized", raw(codecs, big), "OVERSIZED", None),
        ("future", raw(codecs, future), "TIMESTAMP_OUT_OF_RANGE", "occurred_at"),
    ]


@pytest.mark.parametrize("case", ["garbage", "tombstone", "oversized", "future"])
def test_rejected_input_goes_to_the_dlq_and_leaves_state_alone(
    make: Any, codecs: dict[str, Any], case: str
) -> None:
    proc, store = make(max_event_bytes=2048), DictStore()
    send(proc, store, codecs, event("T1", "e1", T0))
    before = dict(store.data)
    due_before = {p: list(h) for p, h in proc.due.items()}
    [(_, value, kind, field)] = [c for c in dlq_cases(codecs) if c[0] == case]

    outs = proc.on_event(store, value, b"K1", 2, 41, 1234)

    assert len(outs) == 1
    [out] = outs
    assert out.topic == TOPICS.dlq and out.key == b"K1"
    letter = codecs["DeadLetter"].decode(out.value)
    assert letter["error_kind"] == kind
    assert letter["field"] == field
    assert letter["source_topic"] == TOPICS.ticket_events
    assert (letter["partition"], letter["offset"], letter["timestamp"]) == (2, 41, 1234)
    assert letter["original_key"] == b"K1"
    assert letter["original"] == (value or b"")
    assert letter["dead_lettered_at"] == NOW
    assert store.data == before
    assert proc.due == due_before
    assert proc.counters.rejected == {kind: 1}
    assert proc.counters.events == 1


def test_dead_letter_without_key_has_an_empty_message_key(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc = make()
    [out] = proc.on_event(DictStore(), b"junk", None, 0, 0, None)
    assert out.key == b""
    letter = codecs["DeadLetter"].decode(out.value)
    assert letter["original_key"] is None and letter["timestamp"] is None


# --------------------------------------------------------------------------- clock


def test_event_time_fires_due_work_of_other_tickets_on_the_same_partition_only(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(event_time=True), DictStore()
    send(proc, store, codecs, event("A", "a1", T0), partition=0)
    send(proc, store, codecs, event("C", "c1", T0), partition=1)
    c_before = store.get(b"C")

    outs = send(proc, store, codecs, event("B", "b1", T0 + 70 * MINUTE), partition=0)

    fired = escalated(codecs, outs)
    assert {t for t, _, _ in fired} == {"A"}, fired
    assert ("A", "FIRST_RESPONSE_BREACH", T0 + HOUR) in fired
    assert all(due <= T0 + 70 * MINUTE for _, _, due in fired)
    assert proc.watermark == {0: T0 + 70 * MINUTE, 1: T0}
    assert store.get(b"C") == c_before  # partition 1 did not move

    later = proc.on_tick(store, 1, T0 + 70 * MINUTE)
    assert {t for t, _, _ in escalated(codecs, later)} == {"C"}
    assert escalated(codecs, later) == [("C", reason, due) for _, reason, due in fired]


def test_event_time_tick_never_moves_the_clock_back(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(event_time=True), DictStore()
    send(proc, store, codecs, event("A", "a1", T0 + HOUR))
    assert proc.on_tick(store, 0, T0) is not None
    assert proc.watermark[0] == T0 + HOUR


def test_wall_clock_events_do_not_fire_other_tickets(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0))
    outs = send(proc, store, codecs, event("B", "b1", T0 + 70 * MINUTE))
    assert escalated(codecs, outs) == []
    assert proc.watermark == {}


def test_tick_fires_due_work(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0))
    assert escalated(codecs, proc.on_tick(store, 0, T0 + 29 * MINUTE)) == []

    outs = proc.on_tick(store, 0, T0 + 70 * MINUTE)

    reasons = [r for _, r, _ in escalated(codecs, outs)]
    assert "SLA_WARNING" in reasons and "FIRST_RESPONSE_BREACH" in reasons
    _, state = state_of(store, "A")
    assert state.next_due is not None and state.next_due > T0 + 70 * MINUTE
    assert proc.due[0][0][0] == state.next_due
    assert escalated(codecs, proc.on_tick(store, 0, T0 + 70 * MINUTE)) == []  # fired once
    assert proc.on_tick(store, 0, None) == []
    assert proc.counters.escalations == len(reasons)


def test_tick_on_another_partition_fires_nothing(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0), partition=0)
    assert escalated(codecs, proc.on_tick(store, 1, T0 + 5 * HOUR)) == []


def test_rebuild_restores_the_due_index(make: Any, codecs: dict[str, Any]) -> None:
    history = [
        (event("A", "a1", T0), 0),
        (event("B", "b1", T0 + 5 * MINUTE, tags_added=("churn_risk",)), 0),
        (event("C", "c1", T0 + 2 * MINUTE, customer_tier="premium", channel="chat"), 1),
        (event("A", "a2", T0 + 6 * MINUTE, "AGENT_REPLIED"), 0),
        (event("D", "d1", T0, customer_tier="standard"), 0),
    ]
    live, live_store = make(), DictStore()
    for offset, (e, p) in enumerate(history):
        send(live, live_store, codecs, e, partition=p, offset=offset)

    restarted, store = make(), DictStore(live_store.data)
    assert restarted.rebuild(store, [0]) == 3  # A, B, D on partition 0 (C is on 1)
    assert restarted.rebuild(store, [0, 1]) == 4

    for tick in (T0 + 70 * MINUTE, T0 + 3 * HOUR, T0 + 2 * 86_400_000):
        for p in (0, 1):
            expected = live.on_tick(live_store, p, tick)
            got = restarted.on_tick(store, p, tick)
            assert escalated(codecs, got) == escalated(codecs, expected)
            assert got == expected
        assert store.data == live_store.data
    assert live.counters.escalations > 0


def test_forget_drops_the_index_of_revoked_partitions(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(event_time=True), DictStore()
    send(proc, store, codecs, event("A", "a1", T0), partition=0)
    send(proc, store, codecs, event("C", "c1", T0), partition=1)
    proc.forget([0])
    assert set(proc.due) == {1} and set(proc.watermark) == {1}
    assert escalated(codecs, proc.on_tick(store, 0, T0 + HOUR)) == []
    assert proc.rebuild(store, [0]) == 1
    assert {t for t, _, _ in escalated(codecs, proc.on_tick(store, 0, T0 + HOUR))} == {"A"}


def test_closed_ticket_is_deleted_after_the_retention(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0))
    send(proc, store, codecs, event("A", "a2", T0 + 4 * HOUR, "CLOSED"), offset=1)
    _, state = state_of(store, "A")
    assert state.closed and state.next_due is None
    closed_at = state.clock_at
    assert closed_at == T0 + 4 * HOUR

    proc.on_tick(store, 0, closed_at + CLOSED_RETENTION_MS - 1)
    assert store.get(b"A") is not None  # a late duplicate is still recognised
    outs = send(proc, store, codecs, event("A", "a2", T0 + 4 * HOUR, "CLOSED"), offset=2)
    assert escalated(codecs, outs) == [] and proc.counters.duplicates == 1

    proc.on_tick(store, 0, closed_at + CLOSED_RETENTION_MS)
    assert store.get(b"A") is None


def test_closed_ticket_retention_survives_a_rebuild(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0))
    send(proc, store, codecs, event("A", "a2", T0 + HOUR, "CLOSED"), offset=1)
    restarted = make()
    assert restarted.rebuild(store, [0]) == 1
    restarted.on_tick(store, 0, T0 + HOUR + CLOSED_RETENTION_MS)
    assert store.data == {}


def test_open_ticket_is_never_deleted(make: Any, codecs: dict[str, Any]) -> None:
    proc, store = make(), DictStore()
    send(proc, store, codecs, event("A", "a1", T0))
    proc.on_tick(store, 0, T0 + 2 * CLOSED_RETENTION_MS)
    assert store.get(b"A") is not None


# --------------------------------------------------------------------------- encodings


def test_state_round_trip() -> None:
    state = TicketState(ticket_id="T1", first_seen_at=T0, clock_at=T0, seen={"e1"}, next_due=5)
    assert decode_state(encode_state(7, state)) == (7, state)


def test_states_of_the_first_format_still_read_and_are_twice_the_size() -> None:
    """Changelogs written before the row format (a rolling upgrade restores from them)."""
    engine = Engine(load_policy())
    state, _ = engine.apply(None, event("T1", "e1", T0, tags_added=("vip_contact",)))
    state, _ = engine.apply(state, event("T1", "e2", T0 + 60_000, "AGENT_REPLIED"))
    old = orjson.dumps({"p": 4, "s": state.to_dict()})
    assert decode_state(old) == (4, state)
    new = encode_state(4, state)
    assert decode_state(new) == (4, state) and len(new) < 0.6 * len(old)


def test_a_state_of_an_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ticket state format 9, this version reads 1 and 2"):
        decode_state(b"[9, 0, []]")
    with pytest.raises(ValueError, match="has 39 fields, got 2"):
        decode_state(b'[2, 0, ["T1", 1]]')


def test_tick_round_trip() -> None:
    assert decode_tick(encode_tick(T0)) == T0
    assert decode_tick(None) is None
    assert decode_tick(b"") is None
    assert decode_tick(b"soon") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, False),
        ([], False),
        ({}, False),
        ([(TICK_HEADER, b"1")], True),
        ([("trace-id", b"x"), (TICK_HEADER, b"1")], True),
        ([("trace-id", b"x")], False),
        ({TICK_HEADER: b"1"}, True),
        ({"trace-id": b"x"}, False),
        ((("trace-id", b"x"), (TICK_HEADER, b"")), True),
    ],
)
def test_is_tick(headers: object, expected: bool) -> None:
    assert is_tick(headers) is expected


# --------------------------------------------------------------------------- time (issue 17)


def dead_letters(codecs: dict[str, Any], outs: list[Out]) -> list[dict[str, Any]]:
    return [codecs["DeadLetter"].decode(o.value) for o in outs if o.topic == TOPICS.dlq]


def test_a_wall_clock_worker_refuses_events_beyond_its_clock_skew(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(), DictStore()
    assert send(proc, store, codecs, event("T1", "e1", NOW + 4 * MINUTE)) != []  # within 5 min
    [letter] = dead_letters(codecs, send(proc, store, codecs, event("T2", "e2", NOW + 6 * MINUTE)))
    assert letter["error_kind"] == "TIMESTAMP_OUT_OF_RANGE" and letter["field"] == "occurred_at"
    assert letter["error"].startswith("future_timestamp:")
    assert store.get(b"T2") is None


def test_an_event_from_2001_updates_state_but_pages_nobody(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(horizon=DAY), DictStore()
    old = parse_ts("2001-05-04T10:00:00Z")
    outs = send(proc, store, codecs, event("T1", "e1", old, tags_added=("legal",)))
    outs += proc.on_tick(store, 0, NOW)
    assert decoded(codecs, outs, TOPICS.escalations) == []
    assert decoded(codecs, outs, TOPICS.priority_bumps) == []
    assert {"LEGAL_THREAT", "FIRST_RESPONSE_BREACH"} <= set(proc.counters.silenced)
    _, state = state_of(store, "T1")
    assert state.clocks["first_response"].breached_at is not None  # a miss, on the record
    assert state.level == 1


def test_tick_messages_are_honoured_only_in_event_time_and_in_range(
    make: Any, codecs: dict[str, Any]
) -> None:
    wall, store = make(), DictStore()
    send(wall, store, codecs, event("T1", "e1", NOW - HOUR))
    [letter] = dead_letters(codecs, wall.on_tick_message(store, b"%d" % (NOW + 30 * DAY), None,
                                                         0, 7, None))  # fmt: skip
    assert "wall clock" in letter["error"] and letter["offset"] == 7
    timed, store = make(event_time=True), DictStore()
    send(timed, store, codecs, event("T1", "e1", T0))
    for bad in (b"%d" % 2**70, b"-5", b"soon"):
        [letter] = dead_letters(codecs, timed.on_tick_message(store, bad, None, 0, 1, None))
        assert letter["error_kind"] == "TIMESTAMP_OUT_OF_RANGE", bad
    assert escalated(codecs, timed.on_tick_message(store, b"%d" % (T0 + DAY), None, 0, 2, None))


def test_a_state_over_the_record_limit_goes_to_the_dlq_and_the_ticket_stays_as_it_was(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    proc = TicketProcessor(Engine(policy), TOPICS, codecs, 1_000_000, event_time=True,
                           wall_clock=lambda: NOW, max_record_bytes=65_536)  # fmt: skip
    store = DictStore()
    send(proc, store, codecs, event("T1", "e1", T0))
    before = store.get(b"T1")
    long_ids = [event("T1", "x" * 2000 + str(i), T0 + i, "CUSTOMER_REPLIED") for i in range(40)]
    letters = [d for e in long_ids for d in dead_letters(codecs, send(proc, store, codecs, e))]
    assert letters and all(d["error_kind"] == "OVERSIZED" for d in letters)
    assert "'T1'" in letters[0]["error"] and "record limit" in letters[0]["error"]
    value = store.get(b"T1")
    assert value is not None and len(value) <= 65_536 and value != before
    assert proc.counters.rejected == {"OVERSIZED": len(letters)}


def test_the_steady_clock_counts_a_jump_and_catches_up_gradually() -> None:
    wall = [T0]
    mono = [100.0]
    clock = SteadyClock(lambda: wall[0], lambda: mono[0], slew_ms=1000)
    assert clock() == T0
    mono[0] += 0.125
    wall[0] += 125 + DAY  # the system clock jumps a day ahead
    first = clock()
    assert first == T0 + 125 + 1000 and clock.jumps == 1
    for _ in range(10):
        mono[0] += 0.125
        wall[0] += 125
        clock()
    assert clock.jumps == 1 and clock.last < wall[0]
    wall[0] -= 2 * DAY  # and back: the clock holds rather than run backwards
    assert clock() == clock.last >= first and clock.jumps == 2


def test_solved_tickets_that_never_close_leave_after_the_retention(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(event_time=True), DictStore()
    send(proc, store, codecs, event("T1", "e1", T0))
    send(proc, store, codecs, event("T1", "e2", T0 + HOUR, "RESOLVED"))
    retention = Tracking().solved_retention
    proc.on_tick(store, 0, T0 + HOUR + retention - 1)
    assert store.get(b"T1") is not None
    proc.on_tick(store, 0, T0 + HOUR + retention)
    assert store.get(b"T1") is None


def test_a_spam_ticket_stops_its_clocks_and_leaves_after_the_closed_retention(
    make: Any, codecs: dict[str, Any]
) -> None:
    proc, store = make(event_time=True), DictStore()
    send(proc, store, codecs, event("T1", "e1", T0))
    spam = event("T1", "e2", T0 + MINUTE, "CLOSED", attributes={"removed": "spam"})
    outs = send(proc, store, codecs, spam)
    outs += proc.on_tick(store, 0, T0 + MINUTE + CLOSED_RETENTION_MS)
    assert escalated(codecs, outs) == []
    assert store.get(b"T1") is None


# --------------------------------------------------------------------------- saved due index


def with_metrics(proc: TicketProcessor) -> TicketProcessor:
    proc.metrics = WorkerStats([s.name for s in proc.engine.policy.sla_policies], live=True)
    return proc


class Unreadable(DictStore):
    def items(self) -> Iterable[tuple[bytes, bytes]]:
        raise AssertionError("the store was read")


def filled(make: Any, codecs: dict[str, Any]) -> tuple[TicketProcessor, DictStore]:
    """Open, solved, closed and replied tickets on partition 0, one on partition 1."""
    live, store = with_metrics(make()), DictStore()
    history = [
        (event("A", "a1", T0), 0), (event("B", "b1", T0 + MINUTE), 0),
        (event("C", "c1", T0 + 2 * MINUTE), 0), (event("D", "d1", T0), 1),
        (event("B", "b2", T0 + 5 * MINUTE, "STATUS_CHANGED", status=Status.SOLVED), 0),
        (event("C", "c2", T0 + 6 * MINUTE, "CLOSED"), 0),
        (event("A", "a2", T0 + 7 * MINUTE, "AGENT_REPLIED"), 0),
    ]  # fmt: skip
    for offset, (e, p) in enumerate(history):
        send(live, store, codecs, e, partition=p, offset=offset)
    live.on_tick(store, 0, T0 + 3 * HOUR)  # superseded heap entries and fired escalations
    return live, store


def test_a_saved_due_index_restores_without_reading_the_store(
    make: Any, codecs: dict[str, Any]
) -> None:
    live, store = filled(make, codecs)
    saved = marshal.loads(marshal.dumps(live.saved_index(0)))  # as the file holds it
    restarted = with_metrics(make())
    assert restarted.load_index(0, saved) == len(live.scheduled[0])
    rebuilt = with_metrics(make())
    rebuilt.rebuild(store, [0])
    assert index_of(restarted, 0) == index_of(rebuilt, 0) == index_of(live, 0)
    unreadable = Unreadable(store.data)
    for tick in (T0 + 5 * HOUR, T0 + 3 * DAY, T0 + 30 * DAY):
        expected = rebuilt.on_tick(store, 0, tick)
        assert restarted.on_tick(unreadable, 0, tick) == expected
    assert unreadable.data == store.data


def test_changelog_records_after_the_checkpoint_update_a_loaded_index(
    make: Any, codecs: dict[str, Any]
) -> None:
    live, store = filled(make, codecs)
    saved = marshal.loads(marshal.dumps(live.saved_index(0)))
    before = dict(store.data)
    # the tail: a new ticket, an update, a deletion and a shadow state with no shadow running
    send(live, store, codecs, event("E", "e1", T0 + HOUR), offset=10)
    send(live, store, codecs, event("A", "a3", T0 + 2 * HOUR, "CUSTOMER_REPLIED"), offset=11)
    store.delete(b"B")
    store.put(SHADOW_KEYS + b"A", store.data[b"A"])
    restarted, replay = with_metrics(make()), DictStore(before)
    assert restarted.load_index(0, saved) is not None
    for key in sorted(set(before) | set(store.data)):
        if before.get(key) != store.data.get(key):
            restarted.reindex(0, key, replay.data.get(key), store.data.get(key))
    rebuilt = with_metrics(make())
    rebuilt.rebuild(store, [0])
    assert index_of(restarted, 0) == index_of(rebuilt, 0)
    assert restarted.orphans[0] == [SHADOW_KEYS + b"A"]


def test_a_saved_index_of_another_setup_is_refused(make: Any, codecs: dict[str, Any]) -> None:
    live, _ = filled(make, codecs)
    saved = marshal.loads(marshal.dumps(live.saved_index(0)))
    without_metrics = make()
    assert without_metrics.load_index(0, saved) is None and 0 not in without_metrics.due
    other_policy = with_metrics(make())
    other_policy.closed_retention += 1  # the retention decides when a ticket is due to leave
    assert other_policy.load_index(0, saved) is None and 0 not in other_policy.due
    assert with_metrics(make()).load_index(0, {"lanes": "torn"}) is None


def test_the_outputs_and_stats_of_the_hot_path_are_the_frozen_records() -> None:
    """Outs and queue stats built by the fast constructors are the frozen dataclasses,
    equal to and as immutable as those built by their own __init__; compiled, the typed
    builders are the constructors (streams.sla.frozen)."""
    from streams.runtime.processor import _build_out, _build_stat, _new_out, _new_stat
    from streams.sla.queues import QueueStat, StatKind

    native = hasattr(Out, "__mypyc_attrs__")
    assert (_new_out is _build_out) == native and (_new_stat is _build_stat) == native

    out = _new_out("t-escalations", b"T-1", b"v")
    assert type(out) is Out and out == Out("t-escalations", b"T-1", b"v")
    assert hash(out) == hash(Out("t-escalations", b"T-1", b"v"))
    stat = _new_stat("email/billing", StatKind.CREATED, 5, "c:e1")
    assert type(stat) is QueueStat and stat == QueueStat(
        "email/billing", StatKind.CREATED, 5, "c:e1"
    )
    for record, field in ((out, "value"), (stat, "at")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, None)


def test_a_queue_stat_message_is_the_documented_json() -> None:
    """The queue-stats format (streams.runtime.queue_stats): the kind as its text, byte for
    byte, and read back by the alerts process's decoder."""
    from streams.runtime.queue_stats import decode_stat, encode_stat
    from streams.sla.queues import QueueStat, StatKind

    for kind in StatKind:
        stat = QueueStat("email/billing", kind, 1_800_000_000_000, f"{kind.value[0]}:e1")
        raw = encode_stat(stat, 1_800_000_000_500)
        assert raw == (
            b'{"v":1,"kind":"' + kind.value.encode() + b'","queue":"email/billing",'
            b'"at":1800000000000,"wm":1800000000500,"id":"' + stat.id.encode() + b'"}'
        )
        assert decode_stat(raw).stat == stat
