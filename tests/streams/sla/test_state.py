"""streams.sla.state: the two serialized forms of a ticket's state."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from streams.sla.actions import Kind, Reason
from streams.sla.board import Fired, Lifecycle, TicketInputs
from streams.sla.events import Priority, Status
from streams.sla.state import SEEN_WINDOW, Clock, TicketState


def busy_state() -> TicketState:
    """Every field away from its default, so a field the row forgets shows up."""
    return TicketState(
        ticket_id="T1", first_seen_at=1, clock_at=2, status=Status.PENDING, status_since=3,
        status_seq=4, priority=Priority.HIGH, priority_at=5, channel="chat", category="billing",
        customer_id="C1", tier="vip", group="g1", assignee_id="a1", support_level=2,
        tags=frozenset({"vip_contact", "legal"}), transfers=6, reopens=7, cycle=8,
        created_at=9, policy="vip",
        clocks={
            "resolution": Clock("resolution", 1, 10, 11, None, 12, 0.5, 13, None, None, False),
            "first_response": Clock("first_response", 0, 14, 15, 16, 17, 1.0, None, 18, 19, True),
        },
        level=3, awaiting_since=20, escalated_at=21, fired={"sla:x|2", "trigger:y|1"},
        seen={"e1", "e2"}, next_due=22, closed=True, f_chain="billing", f_step=1, f_since=23,
        climb_id="esc-1", f_id="esc-2", repeat=2, climb_paused=24, f_paused=25,
        board=TicketInputs(
            "T1", {"esc-1": Fired("esc-1", "T1", "HIERARCHICAL", 2, 1, "L2", "SLA", "r", 5, 6)},
            {"esc-1": "HIGH"}, Lifecycle(26, 27, None), published=True,
        ),
    )  # fmt: skip


def test_the_row_holds_every_field_in_order_with_the_dict_forms_values() -> None:
    state = busy_state()
    row, as_dict = state.to_row(), state.to_dict()
    assert len(row) == len(dataclasses.fields(TicketState)) == len(as_dict)
    clocks = row[list(as_dict).index("clocks")]
    assert clocks == [list(clock.values()) for clock in as_dict["clocks"].values()]
    others = [v for k, v in as_dict.items() if k != "clocks"]
    assert [v for v in row if v is not clocks] == others


def test_row_and_dict_round_trip_through_json_to_the_same_state() -> None:
    state = busy_state()
    from_row = TicketState.from_row(json.loads(json.dumps(state.to_row())))
    from_dict = TicketState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert from_row == from_dict == state
    assert list(from_row.clocks) == ["resolution", "first_response"]  # order kept
    assert isinstance(from_row.tags, frozenset)


def test_board_escalations_are_stored_small_and_read_back_whole() -> None:
    """The board inputs ride on every write of the state: an escalation's kind and reason
    are stored as numbers, its fired_at from its due_at; an unknown kind or reason as is."""
    due = 1793589572946
    fired = [
        Fired(f"e{i}", "T1", str(kind), 2, 1, "L2", str(reason), "r", due, due + i % 2)
        for i, (kind, reason) in enumerate(itertools.product(Kind, Reason))
    ]
    fired.append(Fired("e-new", "T1", "NEW_KIND", 3, 2, "L3", "NEW_REASON", "r", 70, 69))
    inputs = TicketInputs(
        "T1", {f.escalation_id: f for f in fired}, {}, Lifecycle(None, 40, None), published=True
    )
    row = json.loads(json.dumps(inputs.to_row()))
    assert TicketInputs.from_row("T1", row) == inputs
    known = json.dumps(row[4][:-1])
    assert not any(str(name) in known for name in (*Kind, *Reason))
    assert known.count(str(due)) == len(fired) - 1  # due_at only, not fired_at again
    assert "NEW_KIND" in json.dumps(row[4][-1]) and "NEW_REASON" in json.dumps(row[4][-1])


def test_a_row_of_the_wrong_length_is_refused() -> None:
    row = busy_state().to_row()
    with pytest.raises(ValueError, match="a ticket state row has 39 fields, got 40"):
        TicketState.from_row([*row, None])
    with pytest.raises(ValueError, match="a ticket state row has 39 fields, got 28"):
        TicketState.from_row(row[:28])


def test_a_rows_status_and_priority_read_back_as_members_and_unknown_ones_are_refused() -> None:
    """Looked up from a table, not by calling the enum; a value outside it still fails as
    the enum's call fails."""
    row = busy_state().to_row()
    assert type(row[3]) is str and type(row[6]) is str  # the values, not the members
    state = TicketState.from_row(json.loads(json.dumps(row)))
    assert state.status is Status.PENDING and state.priority is Priority.HIGH
    for at, bad in ((3, "SNOOZED"), (6, "CRITICAL"), (3, ["OPEN"]), (6, None)):
        with pytest.raises(ValueError, match="is not a valid"):
            TicketState.from_row([*row[:at], bad, *row[at + 1 :]])


def test_rows_written_by_earlier_releases_read_with_defaults_for_later_fields() -> None:
    state = busy_state()
    old = TicketState.from_row(state.to_row()[:29])  # the last released row: 29 fields
    assert (old.f_chain, old.f_step, old.f_since) == (None, 0, None)
    assert (old.climb_id, old.f_id, old.repeat, old.raised_at) == (None, None, 0, None)
    assert old.seen == state.seen and old.fired == state.fired
    newer = TicketState.from_row(state.to_row()[:32])  # with the functional chain
    assert (newer.f_chain, newer.f_step, newer.f_since) == ("billing", 1, 23)
    assert (newer.climb_id, newer.climb_paused, newer.f_paused) == (None, 0, 0)
    before_board = TicketState.from_row(state.to_row()[:-1])  # a state from before the board
    assert before_board.board is None and before_board.raised_at == state.raised_at


def test_the_seen_window_is_bounded_and_keeps_the_latest() -> None:
    state = busy_state()
    for i in range(SEEN_WINDOW + 10):
        state.remember(f"x{i}")
    assert len(state.seen) == SEEN_WINDOW
    assert f"x{SEEN_WINDOW + 9}" in state.seen and "x0" not in state.seen
    again = TicketState.from_row(state.to_row())
    assert list(again.seen) == list(state.seen)  # the order survives the changelog


@pytest.mark.parametrize(
    ("cls", "required"), [(Clock, ("resolution", 0, 1)), (TicketState, ("T1", 1, 2))]
)
def test_the_written_init_takes_the_fields_in_order_with_their_defaults(
    cls: type, required: tuple[object, ...]
) -> None:
    """Clock and TicketState write their own __init__ (for mypyc): it must stay what
    dataclasses would generate, with a fresh container where a field has a default factory."""
    fields = dataclasses.fields(cls)
    made, other = cls(*required), cls(*required)
    for f in fields[len(required) :]:
        value = getattr(made, f.name)
        if f.default_factory is not dataclasses.MISSING:
            assert value == f.default_factory() and value is not getattr(other, f.name), f.name
        else:
            assert value == f.default and type(value) is type(f.default), f.name
    assert [getattr(made, f.name) for f in fields[: len(required)]] == list(required)
    busy = busy_state() if cls is TicketState else busy_state().clocks["resolution"]
    values = [getattr(busy, f.name) for f in fields]
    assert cls(*values) == busy  # every field, positionally in declaration order
    assert cls(**{f.name: getattr(busy, f.name) for f in fields}) == busy
    with pytest.raises(TypeError):
        cls(*values, None)  # and nothing more
