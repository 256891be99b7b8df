"""The Redis board on the real Redis: any read order and any replay give the core's board."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.sinks.board_store import Batch, BoardKeys, BoardReader, BoardWriter, BumpRecord
from streams.sla.actions import Escalation, PriorityBump
from streams.sla.board import BoardEntry, Fired, Lifecycle
from streams.sla.events import TicketEvent
from streams.sla.policy import Policy, load_policy
from streams.tools.backtest import BacktestRun
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history

pytestmark = pytest.mark.integration

Record = tuple[str, Any]


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


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Policy, list[Record], dict[str, BoardEntry]]:
    """The records of a generated history and the board the core computes from them."""
    path: Path = tmp_path_factory.mktemp("board") / "history.jsonl"
    generate_to_file(path, agents=6, days=2, seed=31)
    policy = load_policy()
    run = BacktestRun.start(policy, board=True)
    records: list[Record] = []
    for item in read_history(path):
        assert isinstance(item, TicketEvent)
        before = len(records)
        actions = run.driver.feed(item)
        run.record(actions)
        assert run.board is not None
        run.board.event(item)
        records.append(("event", item))
        records[before:before] = _records(actions)
    assert run.driver.watermark is not None
    actions = run.driver.advance(run.driver.watermark)
    run.record(actions)
    records += _records(actions)
    run.finish(None)
    assert run.report.board is not None
    return policy, records, run.report.board


def _records(actions: list[Any]) -> list[Record]:
    out: list[Record] = []
    for action in actions:
        if isinstance(action, Escalation):
            out.append(("esc", Fired.from_record(action.to_dict())))
        elif isinstance(action, PriorityBump):
            out.append(("bump", BumpRecord.from_record(action.to_dict())))
    return out


def apply_all(writer: BoardWriter, records: list[Record], seed: int) -> dict[str, int]:
    """Apply records shuffled into batches of random sizes; returns what was counted."""
    rng = random.Random(seed)
    shuffled = records[:]
    rng.shuffle(shuffled)
    totals = {"escalations": 0, "escalation_duplicates": 0, "bumps": 0, "bump_duplicates": 0}
    i = 0
    while i < len(shuffled):
        size = rng.choice((1, 7, 50, 400))
        batch = Batch()
        for kind, record in shuffled[i : i + size]:
            if kind == "esc":
                batch.escalations.append(record)
            elif kind == "bump":
                batch.bumps.append(record)
            else:
                seen = Lifecycle()
                if seen.observe(record):
                    batch.lifecycles.setdefault(record.ticket_id, Lifecycle()).merge(seen)
        applied = writer.apply(batch)
        for name in totals:
            totals[name] += getattr(applied, name)
        i += size
    return totals


def board_state(client: redis.Redis, keys: BoardKeys) -> dict[str, Any]:
    return BoardReader(client, keys).dump()


def test_any_order_gives_the_cores_board_and_a_replay_changes_nothing(
    client: redis.Redis, history: tuple[Policy, list[Record], dict[str, BoardEntry]]
) -> None:
    policy, records, expected = history
    escalations = {r.escalation_id for kind, r in records if kind == "esc"}
    bumps = sum(1 for kind, _ in records if kind == "bump")
    assert len(expected) > 10 and bumps > 0
    keys = new_keys(client)
    writer = BoardWriter(client, keys, policy, stream_maxlen=1_000_000)
    first = apply_all(writer, records, seed=1)
    assert first["escalations"] == len(escalations) and first["escalation_duplicates"] == 0
    state = board_state(client, keys)
    assert state["entries"] == expected
    # The team and level sets hold exactly the tickets whose entry names them.
    for team, tickets in state["teams"].items():
        assert tickets == {t for t, e in expected.items() if e.target == team}
    for level, tickets in state["levels"].items():
        assert tickets == {t for t, e in expected.items() if str(e.level) == level}
    assert sum(map(len, state["teams"].values())) == len(expected)
    assert state["due"] == sorted(
        ((t, float(e.climbs_at)) for t, e in expected.items() if e.climbs_at is not None),
        key=lambda pair: (pair[1], pair[0]),
    )
    resolved = int(state["stats"].get("resolved", 0))
    warnings = {r.escalation_id for kind, r in records if kind == "esc" and r.warning}
    assert warnings and int(state["stats"]["warnings"]) == len(warnings)
    assert int(state["stats"]["escalations"]) == len(escalations - warnings)
    assert int(state["stats"]["bumps"]) == bumps
    assert state["stream"] == len(escalations) + bumps + resolved
    # A replay in another order: everything is a duplicate, nothing moves.
    again = apply_all(writer, records, seed=2)
    assert again["escalations"] == 0 and again["bumps"] == 0
    assert again["escalation_duplicates"] == len(escalations)
    assert board_state(client, keys) == state


def test_two_boards_fed_in_different_orders_converge(
    client: redis.Redis, history: tuple[Policy, list[Record], dict[str, BoardEntry]]
) -> None:
    policy, records, expected = history
    boards = []
    for seed in (3, 4):
        keys = new_keys(client)
        apply_all(BoardWriter(client, keys, policy), records, seed)
        boards.append(BoardReader(client, keys).entries())
    assert boards[0] == boards[1] == expected


def test_a_closed_ticket_leaves_the_board_and_its_inputs_expire(client: redis.Redis) -> None:
    policy = load_policy()
    keys = new_keys(client)
    writer = BoardWriter(client, keys, policy, retention_s=600)
    fired = Fired("e1", "T-1", "HIERARCHICAL", 2, 1, "support-manager", "FIRST_RESPONSE_BREACH",
                  "sla:first_response:breach", 1_000, 1_000)  # fmt: skip
    assert writer.apply(Batch(escalations=[fired])).added == 1
    assert client.hgetall(keys.ticket("T-1"))["target"] == "support-manager"
    assert client.sismember(keys.team("support-manager"), "T-1")
    assert client.ttl(keys.inputs("T-1")) == -1  # on the board: kept
    closed = Batch(lifecycles={"T-1": Lifecycle(closed_at=5_000)})
    assert writer.apply(closed).removed == 1
    assert not client.exists(keys.ticket("T-1"))
    assert client.zcard(keys.open) == 0 and not client.sismember(
        keys.team("support-manager"), "T-1"
    )
    assert 0 < client.ttl(keys.inputs("T-1")) <= 600
    last = client.xrevrange(keys.events, count=1)[0][1]
    assert last == {"type": "resolved", "ticket_id": "T-1", "escalation_id": "e1"}
    # Reopened after the close: the old escalation stays resolved, a new one shows.
    writer.apply(Batch(lifecycles={"T-1": Lifecycle(open_at=6_000)}))
    assert client.zcard(keys.open) == 0
    later = Fired("e2", "T-1", "AUTOMATIC", 1, 1, "frontline-representative", "CHURN_RISK",
                  "trigger:churn", 7_000, 7_000)  # fmt: skip
    writer.apply(Batch(escalations=[later]))
    assert client.hgetall(keys.ticket("T-1"))["escalation_id"] == "e2"
    assert client.ttl(keys.inputs("T-1")) == -1


def test_a_ticket_removed_between_listing_and_reading_is_left_out(client: redis.Redis) -> None:
    """The board is read while the sink writes it: a ticket still listed whose entry is gone
    is not an error (bench/chaos.py hit it)."""
    keys = new_keys(client)
    writer = BoardWriter(client, keys, load_policy(), retention_s=600)
    for n in (1, 2):
        fired = Fired(f"e{n}", f"T-{n}", "HIERARCHICAL", 2, 1, "support-manager",
                      "FIRST_RESPONSE_BREACH", "sla:first_response:breach", 1_000,
                      1_000)  # fmt: skip
        writer.apply(Batch(escalations=[fired]))
    client.delete(keys.ticket("T-1"))  # as between the sink's two writes: listed, no entry
    assert set(BoardReader(client, keys).entries()) == {"T-2"}


def test_warnings_show_apart_and_count_as_no_open_escalation(client: redis.Redis) -> None:
    """A ticket warned only is not an open escalation; a warning to a ticket at L4 is at no
    level; both are listed as warnings."""
    keys = new_keys(client)
    writer = BoardWriter(client, keys, load_policy())
    warned = Fired("w1", "T-1", "AUTOMATIC", 1, 1, "agent-7", "SLA_WARNING",
                   "sla:first_response:warn75", 1_000, 1_000)  # fmt: skip
    breach = Fired("b2", "T-2", "HIERARCHICAL", 2, 1, "support-manager",
                   "FIRST_RESPONSE_BREACH", "sla:first_response:breach", 2_000, 2_000)  # fmt: skip
    late = Fired("w2", "T-2", "AUTOMATIC", 4, 4, "account-manager", "SLA_WARNING",
                 "sla:resolution:warn90", 3_000, 3_000)  # fmt: skip
    writer.apply(Batch(escalations=[warned, breach, late]))
    snap = BoardReader(client, keys).snapshot()
    assert snap["open"] == 1
    assert snap["by_level"] == {"2": 1}
    assert [(e["ticket_id"], e["level"]) for e in snap["tickets"]] == [("T-2", 2)]
    assert snap["warnings"]["open"] == 2
    assert {w["ticket_id"]: w["escalation_id"] for w in snap["warnings"]["tickets"]} == {
        "T-1": "w1", "T-2": "w2",
    }  # fmt: skip
    assert snap["totals"] == {"escalations": 1, "warnings": 2}
    assert snap["last_hour"]["escalations"] == 1 and snap["last_hour"]["warnings"] == 2
    # Closing the warned ticket takes its warning away; it was never on the board.
    writer.apply(Batch(lifecycles={"T-1": Lifecycle(closed_at=5_000)}))
    snap = BoardReader(client, keys).snapshot()
    assert snap["warnings"]["open"] == 1 and snap["open"] == 1
    assert "resolved" not in snap["totals"]


def test_latest_events_are_in_event_time_order_whatever_the_read_order(
    client: redis.Redis,
) -> None:
    """The sink reads partitions in no time order: the feed is still latest first."""
    keys = new_keys(client)
    writer = BoardWriter(client, keys, load_policy())
    times = [5_000, 1_000, 9_000, 3_000, 7_000]  # the order the sink reads them
    for i, at in enumerate(times):
        fired = Fired(f"e{i}", f"T-{i}", "HIERARCHICAL", 2, 1, "support-manager",
                      "FIRST_RESPONSE_BREACH", "sla:first_response:breach", at, at)  # fmt: skip
        writer.apply(Batch(escalations=[fired]))
    writer.apply(Batch(lifecycles={"T-2": Lifecycle(closed_at=8_000)}))
    recent = BoardReader(client, keys).snapshot()["recent"]
    assert [(r["type"], r["at"]) for r in recent] == [
        ("escalation", 9_000), ("resolved", 8_000), ("escalation", 7_000),
        ("escalation", 5_000), ("escalation", 3_000), ("escalation", 1_000),
    ]  # fmt: skip
