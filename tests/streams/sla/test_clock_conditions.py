"""Per-metric clock conditions of an SLA policy: `cancel` and `reset` (issue 21, item 2)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.actions import action_id
from streams.sla.engine import Engine
from streams.sla.events import EventType, Status
from streams.sla.state import Clock, TicketState
from tests.support.clock import created, ny, utc

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
sla_policies:
  - name: field
    match: {tier: [field]}
    calendar: business
    targets: {first_response: 4h, resolution: 16h}
    warn_at: [0.5]
    clocks:
      first_response:
        stop: {tags_added: [callback_scheduled]}
      resolution:
        start: {event: [ASSIGNED]}
  - name: all
    calendar: business
    targets: {first_response: 4h, resolution: 16h}
    warn_at: [0.5]
    clocks:
      first_response:
        cancel: {category: [spam]}
      resolution:
        reset: {event: [TRANSFERRED]}
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
"""


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def test_a_transfer_resets_the_resolution_clock_on_business_time_across_dst(
    engine: Engine, ticket: Any
) -> None:
    """Hand-computed. Created Fri 2026-03-06 15:00 EST; resolution 16 business hours (New York
    09-17). Transferred at 16:00 (1 h used): the clock starts again from zero at 16:00. Half
    of it (8 h): 1 h on Friday, 7 h on Monday 03-09 (EDT since Sunday): 16:00 EDT = 20:00 UTC.
    The breach: 1 h Friday, 8 h Monday, 7 h Tuesday: Tue 16:00 EDT = 20:00 UTC (without the
    reset it would have been 15:00 EDT)."""
    tk = ticket(engine)
    created(tk, ny(3, 6, 15))
    tk.send(EventType.AGENT_REPLIED, ny(3, 6, 15, 30))
    tk.send(EventType.TRANSFERRED, ny(3, 6, 16))
    assert tk.state.clocks["resolution"].resets == 1
    tk.advance(ny(3, 12, 12))
    warn = tk.one("sla:resolution~1:warn50")
    breach = tk.one("sla:resolution~1:breach")
    assert (warn.due_at, breach.due_at) == (utc(3, 9, 20), utc(3, 10, 20))
    assert breach.escalation_id == action_id("T1", "sla:resolution~1:breach", 2, 0)
    assert "sla:resolution:breach" not in tk.rules()
    tk.send(EventType.RESOLVED, ny(3, 12, 12, 30))
    [outcome] = [o for o in tk.outcomes if o.metric == "resolution"]
    assert (outcome.started_at, outcome.met, outcome.breached) == (ny(3, 6, 16), True, True)


def test_a_second_reset_gets_new_ids_again(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 9))
    tk.send(EventType.TRANSFERRED, ny(3, 4, 10))
    tk.send(EventType.TRANSFERRED, ny(3, 4, 11))
    tk.advance(ny(3, 6, 17))  # 16 business h from Wed 11:00: Fri 11:00
    assert tk.one("sla:resolution~2:breach").due_at == ny(3, 6, 11)


def test_a_category_out_of_scope_cancels_the_first_response_clock(
    engine: Engine, ticket: Any
) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 9))
    tk.send(EventType.ASSIGNED, ny(3, 4, 10), category="spam")
    clock = tk.state.clocks["first_response"]
    assert (clock.ended_at, clock.met, clock.elapsed) == (ny(3, 4, 10), False, 3_600_000)
    tk.advance(ny(3, 5, 17))
    assert "sla:first_response:breach" not in tk.rules()
    assert "sla:first_response:warn50" not in tk.rules()
    tk.send(EventType.AGENT_REPLIED, ny(3, 5, 17, 30))
    assert [o.metric for o in tk.outcomes] == []  # neither met nor missed
    assert tk.state.clocks["resolution"].ended_at is None  # other metrics go on


def test_start_and_stop_conditions_on_business_time_across_dst(engine: Engine, ticket: Any) -> None:
    """Hand-computed. Created Fri 2026-03-06 16:00 EST (tier field). Resolution starts at the
    assignment, Mon 03-09 10:00 EDT (after Sunday's switch): 16 business hours (New York
    09-17) are 7 h Monday, 8 h Tuesday, 1 h Wednesday: Wed 10:00 EDT = 14:00 UTC (from
    creation it would have been Tuesday 16:00). First response is done when a callback is
    scheduled, Mon 11:00 EDT: 1 h Friday + 2 h Monday = 3 h of its 4, met."""
    tk = ticket(engine)
    created(tk, ny(3, 6, 16), customer_tier="field")
    assert "resolution" not in tk.state.clocks
    tk.send(EventType.ASSIGNED, ny(3, 9, 10), assignee_id="a1")
    tk.send(EventType.TAGS_CHANGED, ny(3, 9, 11), tags_added=("callback_scheduled",))
    [first] = tk.outcomes
    assert (first.metric, first.met, first.breached, first.business_elapsed) == (
        "first_response", True, False, 3 * 3_600_000,
    )  # fmt: skip
    tk.advance(ny(3, 13, 12))
    assert tk.one("sla:resolution:breach").due_at == utc(3, 11, 14)
    assert "sla:first_response:breach" not in tk.rules()
    tk.send(EventType.ASSIGNED, ny(3, 13, 13), assignee_id="a2")  # started once
    assert tk.state.clocks["resolution"].started_at == ny(3, 9, 10)


def test_a_ticket_solved_before_its_start_condition_never_starts_the_clock(
    engine: Engine, ticket: Any
) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), customer_tier="field")
    tk.send(EventType.RESOLVED, ny(3, 4, 11))
    tk.send(EventType.ASSIGNED, ny(3, 4, 12), status=Status.SOLVED)
    assert "resolution" not in tk.state.clocks
    assert [o.metric for o in tk.outcomes] == ["first_response"]


def test_without_conditions_nothing_changes(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 9))
    tk.send(EventType.ASSIGNED, ny(3, 4, 10), category="billing")
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10, 30))
    assert [(o.metric, o.met) for o in tk.outcomes] == [("first_response", True)]


def test_a_clock_row_from_before_resets_reads() -> None:
    clock = Clock("resolution", 0, 1, 2, 3, 4, 0.5, 5, None, None, False, 2, True)
    assert Clock.from_row(clock.to_row()) == clock
    assert Clock.from_row(clock.to_row()[:-1]).held is False  # from before `held`
    assert Clock.from_row(clock.to_row()[:-2]).resets == 0  # from before `resets`
    state = TicketState("T1", 1, 1, clocks={"resolution": clock})
    assert TicketState.from_dict(state.to_dict()) == state
