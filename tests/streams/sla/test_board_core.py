"""The board's definition: what is open, which escalation shows, and agreement with the engine."""

from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.sla.actions import Escalation, Kind, Reason
from streams.sla.board import BoardBuilder, Fired, Lifecycle, TicketInputs, climb_due, follow
from streams.sla.durations import HOUR, MINUTE
from streams.sla.events import EventType, Status, TicketEvent
from streams.sla.policy import Policy, load_policy
from streams.tools.backtest import BacktestRun
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history


def utc(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


T0 = utc(2026, 2, 25, 6, 13)  # a Wednesday, 01:13 in New York


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def event(type_: str, at: int, status: Status | None = None, n: int = 0) -> TicketEvent:
    return TicketEvent(f"T1-{type_}-{at}-{n}", "T1", EventType(type_), at, status=status)


def fired(eid: str, due: int, level: int = 2, from_level: int = 1, kind: str = "HIERARCHICAL",
          reason: str = "FIRST_RESPONSE_BREACH") -> Fired:  # fmt: skip
    return Fired(eid, "T1", kind, level, from_level, f"L{level}-team", reason, f"rule-{eid}",
                 due, due)  # fmt: skip


def test_latest_status_in_event_time_decides_closed_whatever_the_arrival_order() -> None:
    events = [
        event("CREATED", T0, Status.NEW),
        event("RESOLVED", T0 + 10),
        event("REOPENED", T0 + 20),
        event("STATUS_CHANGED", T0 + 30, Status.CLOSED),
        event("CSAT_RECEIVED", T0 + 40),  # no status: says nothing about the lifecycle
    ]
    for order in itertools.permutations(events):
        life = Lifecycle()
        for e in order:
            life.observe(e)
        assert (life.closed_at, life.open_at, life.closed) == (T0 + 30, T0 + 20, True)
    reopened = Lifecycle(closed_at=T0 + 30, open_at=T0 + 20)
    assert reopened.observe(event("CUSTOMER_REPLIED", T0 + 50, Status.OPEN))
    assert not reopened.closed
    assert reopened.observe(event("AGENT_REPLIED", T0 + 45, Status.OPEN))  # answered moved
    assert (reopened.open_at, reopened.answered_at) == (T0 + 50, T0 + 45)
    assert Lifecycle(closed_at=T0, open_at=T0).closed  # a tie counts as closed


def test_merge_is_a_maximum_and_reports_movement() -> None:
    a = Lifecycle(closed_at=5, open_at=1)
    assert a.merge(Lifecycle(open_at=7, answered_at=3))
    assert (a.closed_at, a.open_at, a.answered_at) == (5, 7, 3)
    assert not a.merge(Lifecycle(closed_at=4, open_at=6, answered_at=2))


def test_only_escalations_after_the_last_close_are_open(policy: Policy) -> None:
    ticket = TicketInputs("T1")
    ticket.add_escalation(fired("old", T0 + 10))
    ticket.life.closed_at = T0 + 10  # due exactly at the close: it fired before the close
    ticket.life.open_at = T0 + 20
    assert ticket.entry(policy) is None
    ticket.add_escalation(fired("new", T0 + 30, level=1, from_level=1, kind="AUTOMATIC",
                                reason="CHURN_RISK"))  # fmt: skip
    entry = ticket.entry(policy)
    assert entry is not None
    assert (entry.escalation_id, entry.open_escalations, entry.climbs_at) == ("new", 1, None)
    ticket.life.closed_at = T0 + 40
    assert ticket.entry(policy) is None


def test_the_latest_escalation_shows_with_the_highest_open_bump(policy: Policy) -> None:
    ticket = TicketInputs("T1")
    assert ticket.add_escalation(fired("a", T0, level=2))
    assert not ticket.add_escalation(fired("a", T0, level=2))
    ticket.add_escalation(fired("c", T0 + MINUTE, level=3, from_level=2))
    ticket.add_escalation(fired("b", T0 + MINUTE, level=3, from_level=2))
    assert ticket.add_bump("a", "URGENT") and ticket.add_bump("c", "HIGH")
    assert not ticket.add_bump("a", "LOW")
    entry = ticket.entry(policy)
    assert entry is not None
    assert (entry.escalation_id, entry.level, entry.open_escalations, entry.priority) == (
        "c", 3, 3, "URGENT",
    )  # fmt: skip


def test_climbs_at_follows_the_matrix_until_an_agent_answers(policy: Policy) -> None:
    ticket = TicketInputs("T1")
    ticket.add_escalation(fired("breach", T0, level=2))  # support-manager: 1h on 24x7
    entry = ticket.entry(policy)
    assert entry is not None and entry.climbs_at == T0 + HOUR
    # A later warning does not raise the level: the climb deadline stays the breach's.
    ticket.add_escalation(fired("warn", T0 + MINUTE, level=2, from_level=2, kind="AUTOMATIC",
                                reason="SLA_WARNING"))  # fmt: skip
    entry = ticket.entry(policy)
    assert entry is not None and (entry.escalation_id, entry.climbs_at) == ("breach", T0 + HOUR)
    ticket.life.answered_at = T0  # a reply at the escalation instant stops the climb
    entry = ticket.entry(policy)
    assert entry is not None and entry.climbs_at is None
    top = policy.matrix.top
    assert climb_due(policy, top, T0) is None
    # Account manager (level 3) has 2h on the business calendar (09:00-17:00 New York):
    # escalated at 01:13 New York, it climbs at 11:00 New York (16:00 UTC).
    assert climb_due(policy, 3, T0) == utc(2026, 2, 25, 16)


def warning(eid: str, due: int, level: int = 1) -> Fired:
    return Fired(eid, "T1", "AUTOMATIC", level, level, f"L{level}-owner", "SLA_WARNING",
                 f"sla:first_response:warn{eid}", due, due)  # fmt: skip


def test_a_warning_is_not_an_open_escalation(policy: Policy) -> None:
    """A heads-up to the owner: on its own the ticket is not on the board, and next to an
    escalation it does not count among the open escalations."""
    ticket = TicketInputs("T1")
    ticket.add_escalation(warning("50", T0))
    ticket.add_escalation(warning("75", T0 + MINUTE))
    assert ticket.entry(policy) is None
    shown = ticket.warning()
    assert shown is not None
    assert (shown.escalation_id, shown.target, shown.open_warnings) == ("75", "L1-owner", 2)
    ticket.add_escalation(fired("breach", T0 + 2 * MINUTE, level=2))
    entry = ticket.entry(policy)
    assert entry is not None and (entry.escalation_id, entry.open_escalations) == ("breach", 1)
    builder = BoardBuilder()
    for f in ticket.escalations.values():
        builder.escalation(f)
    builder.escalation(Fired("w", "T2", "AUTOMATIC", 1, 1, "owner", "SLA_WARNING",
                             "sla:resolution:warn90", T0, T0))  # fmt: skip
    assert set(builder.entries(policy)) == {"T1"}
    assert set(builder.warnings()) == {"T1", "T2"}
    ticket.life.closed_at = T0 + HOUR  # closing ends the warnings with the escalations
    assert ticket.warning() is None and ticket.entry(policy) is None


def test_a_warning_never_shows_at_a_level(policy: Policy) -> None:
    """A warning to a ticket already at L4 names level 4 (the owner's); the board still shows
    the L2 escalation, with the L2 climb."""
    ticket = TicketInputs("T1")
    ticket.add_escalation(fired("breach", T0, level=2))
    ticket.add_escalation(warning("90", T0 + MINUTE, level=4))
    entry = ticket.entry(policy)
    assert entry is not None
    assert (entry.escalation_id, entry.level) == ("breach", 2)
    assert entry.reason == "FIRST_RESPONSE_BREACH"
    assert entry.climbs_at == T0 + HOUR


def test_board_entries_and_warnings_survive_pickle(policy: Policy) -> None:
    """`backtest --jobs` sends each process's board to the parent by pickle; compiled with
    mypyc, a frozen record refuses pickle's default attribute stores (scripts/test runs this
    against the compiled copy too)."""
    ticket = TicketInputs("T1")
    ticket.add_escalation(fired("breach", T0, level=2))
    ticket.add_escalation(warning("90", T0 + MINUTE, level=4))
    entry, shown = ticket.entry(policy), ticket.warning()
    assert entry is not None and shown is not None
    for record in (entry, shown):
        copy = pickle.loads(pickle.dumps(record))
        assert type(copy) is type(record) and copy == record
        assert copy is not record


@pytest.mark.parametrize(("agents", "days", "seed"), [(8, 3, 5), (20, 4, 17)])
def test_the_board_agrees_with_the_engines_final_state(
    tmp_path: Path, policy: Policy, agents: int, days: int, seed: int
) -> None:
    """Over a generated history, the lifecycle rule gives the engine's final status, and the
    climb deadline is the engine's (level and awaiting_since)."""
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=agents, days=days, seed=seed)
    run = BacktestRun.start(policy, board=True)
    for item in read_history(path):
        assert isinstance(item, TicketEvent)
        run.feed(item)
    run.finish(None)
    board, builder = run.report.board, run.board
    assert board is not None and builder is not None and len(board) > 5
    done = (Status.SOLVED, Status.CLOSED)
    for ticket_id, state in run.driver.states.items():
        assert builder.inputs(ticket_id).life.closed == (state.status in done), ticket_id
        if state.status not in done and state.fired:
            escalated = [f for f in builder.inputs(ticket_id).escalations.values()
                         if not f.warning]  # fmt: skip
            assert (ticket_id in board) == bool(escalated), ticket_id
    for ticket_id, entry in board.items():
        state = run.driver.states[ticket_id]
        expected = None
        if state.awaiting_since is not None:
            expected = climb_due(policy, state.level, state.awaiting_since)
            raised = [e for e in builder.inputs(ticket_id).escalations.values() if e.raises]
            if state.awaiting_since != max(raised, key=lambda e: e.order()).fired_at:
                continue  # a pause moved the engine's climb, which the board cannot see
        assert entry.climbs_at == expected, ticket_id
    # The same inputs in reverse order build the same board.
    reverse = BoardBuilder()
    for ticket_id, inputs in builder.tickets.items():
        for f in reversed(list(inputs.escalations.values())):
            reverse.escalation(f)
        for eid, priority in inputs.bumps.items():
            reverse.bump(ticket_id, eid, priority)
        reverse.inputs(ticket_id).life.merge(inputs.life)
    assert reverse.entries(policy) == board
    assert all(e.reason != "SLA_WARNING" for e in board.values())
    assert run.report.board_warnings == builder.warnings() and builder.warnings()


def test_the_stored_row_follows_every_change_of_the_escalations(policy: Policy) -> None:
    """to_row keeps the escalation rows between writes (TicketInputs.fired_rows): a row
    written after an escalation is added, fired through `follow` or pruned by a close is the
    one a fresh copy of the same inputs writes."""

    def fresh_row(inputs: TicketInputs) -> list[object]:
        life = inputs.life
        copy = TicketInputs(
            inputs.ticket_id, dict(inputs.escalations), dict(inputs.bumps),
            Lifecycle(life.closed_at, life.open_at, life.answered_at), inputs.published,
        )  # fmt: skip
        return copy.to_row()

    def escalation(eid: str, due: int) -> Escalation:
        return Escalation(eid, "T1", Kind.HIERARCHICAL, 2, 1, "L2-team",
                          Reason.FIRST_RESPONSE_BREACH, "p", f"rule-{eid}", None, due, due,
                          None, 0)  # fmt: skip

    inputs, _ = follow(None, "T1", event("CREATED", T0, Status.NEW), [], policy)
    inputs, record = follow(inputs, "T1", None, [escalation("e1", T0 + HOUR)], policy)
    assert record is not None and inputs.to_row() == fresh_row(inputs)
    assert [r[0] for r in inputs.to_row()[4]] == ["e1"]
    assert inputs.add_escalation(fired("e2", T0 + 2 * HOUR))
    assert [r[0] for r in inputs.to_row()[4]] == ["e1", "e2"] and inputs.to_row() == fresh_row(
        inputs
    )
    inputs, _ = follow(inputs, "T1", None, [escalation("e3", T0 + 3 * HOUR)], policy)
    assert [r[0] for r in inputs.to_row()[4]] == ["e1", "e2", "e3"]
    closing = event("STATUS_CHANGED", T0 + 2 * HOUR, Status.SOLVED)
    inputs, record = follow(inputs, "T1", closing, [], policy)  # ends e1 and e2
    assert record is not None
    assert [r[0] for r in inputs.to_row()[4]] == ["e3"] and inputs.to_row() == fresh_row(inputs)
