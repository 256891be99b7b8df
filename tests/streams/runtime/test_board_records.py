"""ticket-board records from the processor (streams.runtime.processor, streams.sla.board.follow):
one per change of what the board shows, a tombstone when the ticket leaves the store, and the
latest record of each ticket equal to the offline board (BoardBuilder) of the same history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import codec_for
from schemas.records import ticket_board_from_avro
from streams.runtime.processor import Out, TicketProcessor
from streams.sla.board import BoardBuilder, BoardRecord, Fired, clockless
from streams.sla.engine import Engine
from streams.sla.policy import Policy, load_policy
from streams.tools.generator import generate_history
from tests.support.events import DAY, HOUR, MINUTE, NOW, T0, event
from tests.support.processor import CLOSED_RETENTION_MS, TOPICS, send, with_horizon
from tests.support.stores import DictStore

CODEC_NAMES = ("TicketEvent", "Escalation", "PriorityBump", "Reminder", "DeadLetter", "TicketBoard")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="module")
def codecs() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)  # ids.json's ids
        yield {name: codec_for(name) for name in CODEC_NAMES}


def build(policy: Policy, codecs: dict[str, Any], event_time: bool = False) -> TicketProcessor:
    return TicketProcessor(
        Engine(with_horizon(policy, 365 * DAY)), TOPICS, codecs, 100_000,
        event_time=event_time, wall_clock=lambda: NOW,
    )  # fmt: skip


def board(codecs: dict[str, Any], outs: list[Out]) -> list[BoardRecord | None]:
    """The ticket-board records of `outs` (None: a tombstone), each keyed by its ticket."""
    found: list[BoardRecord | None] = []
    for o in outs:
        if o.topic != TOPICS.board:
            continue
        if o.value is None:
            found.append(None)
            continue
        record = ticket_board_from_avro(codecs["TicketBoard"].decode(o.value))
        assert o.key == record.view.ticket_id.encode()
        found.append(record)
    return found


def test_a_record_only_when_what_the_board_shows_changes(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    proc, store = build(policy, codecs), DictStore()
    # a ticket that never escalates gets no record, whatever happens to it
    quiet = send(proc, store, codecs, event("Q", "q1", T0, customer_tier="standard"))
    quiet += send(proc, store, codecs, event("Q", "q2", T0 + MINUTE, "AGENT_REPLIED"), offset=1)
    assert board(codecs, quiet) == []

    [first] = board(codecs, send(proc, store, codecs, event("A", "a1", T0, tags_added=("legal",))))
    assert first is not None and first.view.entry is not None and not first.view.resolved
    assert first.view.entry.reason == "LEGAL_THREAT" and first.view.entry.priority == "URGENT"
    assert [n.type for n in first.news()] == ["escalation", "priority_bump"]
    # an event that changes nothing the board shows: no record
    same = send(proc, store, codecs, event("A", "a2", T0 + MINUTE, "TAGS_CHANGED"), offset=2)
    assert board(codecs, same) == []
    # the same event again (a redelivery): nothing
    assert board(codecs, send(proc, store, codecs, event("A", "a1", T0), offset=3)) == []

    [closed] = board(codecs, send(proc, store, codecs, event("A", "a3", T0 + HOUR, "CLOSED")))
    assert closed is not None and closed.view.resolved and closed.view.entry is None
    # (the wall clock is days later: what fell due before the close fires with it)
    resolved = ("resolved", first.view.entry.escalation_id, T0 + HOUR)
    assert resolved in [(n.type, n.escalation_id, n.at) for n in closed.news()]


def test_a_tick_that_fires_publishes_and_the_store_leaving_is_a_tombstone(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    proc, store = build(policy, codecs), DictStore()
    assert board(codecs, send(proc, store, codecs, event("A", "a1", T0))) == []
    fired = board(codecs, proc.on_tick(store, 0, T0 + 70 * MINUTE))
    assert len(fired) == 1 and fired[0] is not None
    assert {n.type for n in fired[0].news()} >= {"warning", "escalation"}
    assert fired[0].view.warning is not None and fired[0].view.entry is not None
    assert board(codecs, proc.on_tick(store, 0, T0 + 70 * MINUTE)) == []  # nothing new

    [closed] = board(codecs, send(proc, store, codecs, event("A", "a2", T0 + 2 * HOUR, "CLOSED")))
    assert closed is not None and closed.view.resolved
    assert closed.view.entry is None and closed.view.warning is None
    assert board(codecs, proc.on_tick(store, 0, T0 + 2 * HOUR + CLOSED_RETENTION_MS - 1)) == []
    assert board(codecs, proc.on_tick(store, 0, T0 + 2 * HOUR + CLOSED_RETENTION_MS)) == [None]
    assert store.get(b"A") is None


def test_a_ticket_never_on_the_board_leaves_without_a_tombstone(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    proc, store = build(policy, codecs), DictStore()
    outs = send(proc, store, codecs, event("Q", "q1", T0, customer_tier="standard"))
    outs += send(proc, store, codecs, event("Q", "q2", T0 + MINUTE, "CLOSED"), offset=1)
    outs += proc.on_tick(store, 0, T0 + MINUTE + CLOSED_RETENTION_MS)
    assert store.get(b"Q") is None and board(codecs, outs) == []


def test_the_shadow_policy_publishes_no_board_records(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    proc = TicketProcessor(
        Engine(policy), TOPICS, codecs, 100_000, event_time=True, wall_clock=lambda: NOW,
        shadow=Engine(policy),
    )  # fmt: skip
    store = DictStore()
    outs = send(proc, store, codecs, event("A", "a1", T0, tags_added=("legal",)))
    assert proc.shadow is not None and proc.shadow.board_codec is None
    assert len(board(codecs, outs)) == 1  # production's only
    assert all(o.topic != TOPICS.shadow_escalations or o.value for o in outs)


def test_the_latest_record_of_each_ticket_is_the_offline_board(
    policy: Policy, codecs: dict[str, Any]
) -> None:
    """The worker's board (the last record per ticket) equals BoardBuilder's over the same
    escalations, bumps and events: one definition, live and offline."""
    history = generate_history(
        agents=6, days=2, seed=7, start=datetime.fromtimestamp(T0 / 1000, UTC)
    )
    proc, store = build(policy, codecs, event_time=True), DictStore()
    outs: list[Out] = []
    for offset, e in enumerate(history):
        outs += send(proc, store, codecs, e, offset=offset)
    offline = BoardBuilder()
    for e in history:
        offline.event(e)
    latest: dict[bytes, BoardRecord | None] = {}
    published = 0
    for o in outs:
        if o.topic == TOPICS.escalations:
            offline.escalation(Fired.from_record(codecs["Escalation"].decode(o.value)))
        elif o.topic == TOPICS.priority_bumps:
            bump = codecs["PriorityBump"].decode(o.value)
            offline.bump(bump["ticket_id"], bump["escalation_id"], bump["new_priority"])
        elif o.topic == TOPICS.board:
            published += 1
            [latest[o.key]] = board(codecs, [o])
    views = [r.view for r in latest.values() if r is not None]
    entries = {v.ticket_id: v.entry for v in views if v.entry is not None}
    warnings = {v.ticket_id: v.warning for v in views if v.warning is not None}
    assert entries and warnings and published < len(history) / 2
    assert clockless(entries) == clockless(offline.entries(policy))
    assert clockless(warnings) == clockless(offline.warnings())
