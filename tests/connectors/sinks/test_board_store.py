"""The Redis board on the real Redis: a projection of the ticket-board records that equals the
backtest's board, whatever the partitions' interleaving and batch sizes, and that a batch read
again (a crash between the Redis write and the offset commit) or a replay leaves as it is."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from connectors.sinks.board_store import BoardKeys, BoardReader, BoardWriter, Update
from schemas.codec import codec_for
from schemas.records import ticket_board_from_avro, ticket_event_to_avro
from streams.runtime.processor import CODECS, TicketProcessor
from streams.runtime.topics import Topics
from streams.sla.board import BoardEntry, BoardRecord, BoardView, Fired, Left, clockless
from streams.sla.engine import Engine
from streams.sla.policy import Policy, load_policy
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_history

pytestmark = pytest.mark.integration

TOPICS = Topics()
PARTITIONS = 3
T0 = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefixes: list[str] = []
    client.test_prefixes = prefixes  # type: ignore[attr-defined]
    yield client
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def new_keys(client: redis.Redis) -> BoardKeys:
    keys = BoardKeys(f"test:board:{uuid.uuid4().hex[:10]}:")
    client.test_prefixes.append(keys.prefix)  # type: ignore[attr-defined]
    return keys


class Store(dict[bytes, bytes]):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def delete(self, key: bytes) -> None:
        self.pop(key, None)


@pytest.fixture(scope="module")
def history() -> tuple[Policy, dict[int, list[Update]], Any]:
    """The ticket-board records an event-time processor publishes for a generated history, by
    partition in offset order, and the backtest's report of the same history."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)
    codecs = {name: codec_for(name) for name in CODECS}
    monkeypatch.undo()
    policy = load_policy()
    events = generate_history(agents=6, days=2, seed=31, start=T0)
    end = events[-1].occurred_at
    proc = TicketProcessor(Engine(policy), TOPICS, codecs, 100_000, event_time=True,
                           wall_clock=lambda: end)  # fmt: skip
    stores = {p: Store() for p in range(PARTITIONS)}
    by_partition: dict[int, list[Update]] = {p: [] for p in range(PARTITIONS)}
    for i, e in enumerate(events):
        p = hash(e.ticket_id) % PARTITIONS
        raw = codecs["TicketEvent"].encode(ticket_event_to_avro(e))
        for out in proc.on_event(stores[p], raw, e.ticket_id.encode(), p, i, e.occurred_at):
            if out.topic != TOPICS.board:
                continue
            record = None
            if out.value is not None:
                record = ticket_board_from_avro(codecs["TicketBoard"].decode(out.value))
            updates = by_partition[p]
            updates.append(Update(TOPICS.board, p, len(updates), out.key.decode(), record))
    (report,) = backtest_events([policy], events, board=True)
    return policy, by_partition, report


def interleaved(by_partition: dict[int, list[Update]], seed: int) -> list[list[Update]]:
    """The records as a sink may read them: each partition in order, the partitions
    interleaved at random, in batches of random sizes."""
    rng = random.Random(seed)
    cursors = {p: 0 for p in by_partition}
    order: list[Update] = []
    while any(cursors[p] < len(u) for p, u in by_partition.items()):
        p = rng.choice([p for p, u in by_partition.items() if cursors[p] < len(u)])
        order.append(by_partition[p][cursors[p]])
        cursors[p] += 1
    batches, i = [], 0
    while i < len(order):
        size = rng.choice((1, 7, 50, 400))
        batches.append(order[i : i + size])
        i += size
    return batches


def test_the_projection_is_the_backtests_board_and_reading_again_changes_nothing(
    client: redis.Redis, history: tuple[Policy, dict[int, list[Update]], Any]
) -> None:
    _, by_partition, report = history
    records = [u.record for updates in by_partition.values() for u in updates if u.record]
    expected: dict[str, BoardEntry] = report.board
    assert len(expected) > 10 and report.priority_bumps > 0
    keys = new_keys(client)
    writer = BoardWriter(client, keys, stream_maxlen=1_000_000)
    batches = interleaved(by_partition, seed=1)
    for batch in batches:
        writer.apply(batch)
    state = BoardReader(client, keys).dump()
    assert clockless(state["entries"]) == clockless(expected)
    latest = {u.ticket_id: u.record for us in by_partition.values() for u in us}
    shown = [r.view.warning for r in latest.values() if r is not None and r.view.warning]
    assert state["warnings"] == {w.ticket_id: w for w in shown}
    for team, tickets in state["teams"].items():
        assert tickets == {t for t, e in expected.items() if e.target == team}
    for level, tickets in state["levels"].items():
        assert tickets == {t for t, e in expected.items() if str(e.level) == level}
    assert sum(map(len, state["teams"].values())) == len(expected)
    assert state["due"] == sorted(
        ((t, float(e.climbs_at)) for t, e in expected.items() if e.climbs_at is not None),
        key=lambda pair: (pair[1], pair[0]),
    )
    fired = [f for r in records for f in r.fired]
    warnings = sum(1 for f in fired if f.warning)
    bumps = sum(len(r.bumps) for r in records)
    assert warnings and bumps
    assert int(state["stats"]["warnings"]) == warnings
    assert int(state["stats"]["escalations"]) == len(fired) - warnings
    assert int(state["stats"]["bumps"]) == bumps
    resolved = sum(1 for r in records if r.left is not None)
    assert resolved and int(state["stats"]["resolved"]) == resolved
    assert state["stream"] == len(fired) + bumps + resolved
    # A crash between the Redis write and the commit: batches read again, in other sizes.
    total = sum(len(u) for u in by_partition.values())
    again = [writer.apply(batch) for batch in interleaved(by_partition, seed=2)]
    assert sum(a.duplicates for a in again) == total
    assert sum(a.records + a.tombstones for a in again) == 0
    assert BoardReader(client, keys).dump() == state


def test_any_interleaving_of_the_partitions_gives_the_same_board(
    client: redis.Redis, history: tuple[Policy, dict[int, list[Update]], Any]
) -> None:
    _, by_partition, _ = history
    boards = []
    for seed in (3, 4):
        keys = new_keys(client)
        writer = BoardWriter(client, keys)
        for batch in interleaved(by_partition, seed):
            writer.apply(batch)
        dump = BoardReader(client, keys).dump()
        del dump["stream"]  # read order
        boards.append(dump)
    assert boards[0] == boards[1]


def entry(ticket: str, escalation: str, at: int, target: str = "support-manager") -> BoardEntry:
    return BoardEntry(ticket, escalation, "HIERARCHICAL", 2, target, "FIRST_RESPONSE_BREACH",
                      "sla:first_response:breach", at, at, 1, None, None)  # fmt: skip


def fired(ticket: str, escalation: str, at: int, reason: str = "FIRST_RESPONSE_BREACH") -> Fired:
    return Fired(escalation, ticket, "HIERARCHICAL", 2, 1, "support-manager", reason,
                 "sla:first_response:breach", at, at)  # fmt: skip


def test_a_ticket_leaves_the_board_resolved_and_a_tombstone_removes_what_is_left(
    client: redis.Redis,
) -> None:
    keys = new_keys(client)
    writer = BoardWriter(client, keys)
    on = BoardRecord(BoardView("T-1", False, entry("T-1", "e1", 1_000), None),
                     (fired("T-1", "e1", 1_000),))  # fmt: skip
    assert writer.apply([Update("tb", 0, 0, "T-1", on)]).added == 1
    assert client.hgetall(keys.ticket("T-1"))["target"] == "support-manager"
    assert client.sismember(keys.team("support-manager"), "T-1")
    closed = BoardRecord(BoardView("T-1", True, None, None), left=Left("e1", 5_000))
    assert writer.apply([Update("tb", 0, 1, "T-1", closed)]).removed == 1
    assert not client.exists(keys.ticket("T-1")) and client.zcard(keys.open) == 0
    assert not client.sismember(keys.team("support-manager"), "T-1")
    last = client.xrevrange(keys.events, count=1)[0][1]
    assert last == {"type": "resolved", "ticket_id": "T-1", "escalation_id": "e1"}
    assert client.hget(keys.stats, "resolved") == "1"
    # Reopened and escalated again, then a tombstone (the worker's store dropped the ticket)
    again = BoardRecord(BoardView("T-1", False, entry("T-1", "e2", 7_000, "billing"), None),
                        (fired("T-1", "e2", 7_000),))  # fmt: skip
    writer.apply([Update("tb", 0, 2, "T-1", again), Update("tb", 0, 3, "T-1", None)])
    assert client.zcard(keys.open) == 0 and not client.exists(keys.ticket("T-1"))
    assert not client.sismember(keys.team("billing"), "T-1")
    assert client.hget(keys.stats, "escalations") == "2"
    assert client.hget(keys.applied, "tb:0") == "4"


def test_a_ticket_removed_between_listing_and_reading_is_left_out(client: redis.Redis) -> None:
    """The board is read while the sink writes it: a ticket still listed whose entry is gone
    is not an error (bench/chaos.py hit it)."""
    keys = new_keys(client)
    writer = BoardWriter(client, keys)
    for n in (1, 2):
        t = f"T-{n}"
        record = BoardRecord(BoardView(t, False, entry(t, f"e{n}", 1_000), None))
        writer.apply([Update("tb", 0, n, t, record)])
    client.delete(keys.ticket("T-1"))  # as between the sink's two writes: listed, no entry
    assert set(BoardReader(client, keys).entries()) == {"T-2"}


def test_warnings_show_apart_and_count_as_no_open_escalation(client: redis.Redis) -> None:
    """A ticket warned only is not an open escalation; both warnings are listed apart."""
    from streams.sla.board import WarningEntry

    keys = new_keys(client)
    writer = BoardWriter(client, keys)
    w1 = WarningEntry("T-1", "w1", "agent-7", "sla:first_response:warn75", 1_000, 1_000, 1)
    w2 = WarningEntry("T-2", "w2", "account-manager", "sla:resolution:warn90", 3_000, 3_000, 1)
    warned = (fired("T-1", "w1", 1_000, "SLA_WARNING"),)
    both = (fired("T-2", "b2", 2_000), fired("T-2", "w2", 3_000, "SLA_WARNING"))
    writer.apply([
        Update("tb", 0, 0, "T-1", BoardRecord(BoardView("T-1", False, None, w1), warned)),
        Update("tb", 1, 0, "T-2",
               BoardRecord(BoardView("T-2", False, entry("T-2", "b2", 2_000), w2), both)),
    ])  # fmt: skip
    snap = BoardReader(client, keys).snapshot()
    assert snap["open"] == 1 and snap["by_level"] == {"2": 1}
    assert [(e["ticket_id"], e["level"]) for e in snap["tickets"]] == [("T-2", 2)]
    assert snap["warnings"]["open"] == 2
    assert {w["ticket_id"]: w["escalation_id"] for w in snap["warnings"]["tickets"]} == {
        "T-1": "w1", "T-2": "w2",
    }  # fmt: skip
    assert snap["totals"] == {"escalations": 1, "warnings": 2}
    assert snap["last_hour"]["escalations"] == 1 and snap["last_hour"]["warnings"] == 2
    writer.apply([Update("tb", 0, 1, "T-1", BoardRecord(BoardView("T-1", True, None, None)))])
    snap = BoardReader(client, keys).snapshot()
    assert snap["warnings"]["open"] == 1 and snap["open"] == 1
    assert "resolved" not in snap["totals"]


def test_latest_events_are_in_event_time_order_whatever_the_read_order(
    client: redis.Redis,
) -> None:
    """The sink reads partitions in no time order: the feed is still latest first."""
    keys = new_keys(client)
    writer = BoardWriter(client, keys)
    times = [5_000, 1_000, 9_000, 3_000, 7_000]  # the order the sink reads them
    for i, at in enumerate(times):
        t = f"T-{i}"
        record = BoardRecord(
            BoardView(t, False, entry(t, f"e{i}", at), None), (fired(t, f"e{i}", at),)
        )
        writer.apply([Update("tb", i, 0, t, record)])
    closed = BoardRecord(BoardView("T-2", True, None, None), left=Left("e2", 8_000))
    writer.apply([Update("tb", 2, 1, "T-2", closed)])
    recent = BoardReader(client, keys).snapshot()["recent"]
    assert [(r["type"], r["at"]) for r in recent] == [
        ("escalation", 9_000), ("resolved", 8_000), ("escalation", 7_000),
        ("escalation", 5_000), ("escalation", 3_000), ("escalation", 1_000),
    ]  # fmt: skip
