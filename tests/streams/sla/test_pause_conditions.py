"""Per-metric `pause` and `resume` clock conditions of an SLA policy (issue 21, item 2)."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status, TicketEvent
from streams.sla.policy import parse_policy
from streams.tools.backtest import backtest_events
from tests.support.clock import created, ny, utc

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
sla_policies:
  - name: all
    calendar: business
    targets: {first_response: 4h, resolution: 16h, periodic_update: 8h}
    warn_at: [0.5]
    clocks:
      resolution:
        pause: {tags_added: [waiting_on_vendor]}
        resume: {tags_removed: [waiting_on_vendor]}
      periodic_update:
        pause: {event: [TRANSFERRED], group: [vendor]}
        resume: {event: [TRANSFERRED], group: [frontline, tier2]}
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
"""

HOUR = 3_600_000


def test_a_paused_resolution_clock_banks_its_time_across_dst(make_engine: Any, ticket: Any) -> None:
    """Hand-computed. Created Fri 2026-03-06 15:00 EST; resolution 16 business hours (New York
    09-17). Tagged waiting_on_vendor at 16:00 (1 h used): the clock stands still over the
    weekend (DST starts Sunday 03-08), Monday and Tuesday morning, and resumes when the tag is
    removed, Tue 03-10 11:00 EDT, with 15 h left. Half (8 h): 1 h Friday, 6 h Tuesday, 1 h
    Wednesday: Wed 10:00 EDT = 14:00 UTC. The breach: 1 + 6 + 8 + 1 h: Thu 03-12 10:00 EDT =
    14:00 UTC (without the pause: Tue 15:00 EDT)."""
    tk = ticket(make_engine(POLICY))
    created(tk, ny(3, 6, 15))
    tk.send(EventType.AGENT_REPLIED, ny(3, 6, 15, 30))
    tk.send(EventType.TAGS_CHANGED, ny(3, 6, 16), tags_added=("waiting_on_vendor",))
    clock = tk.state.clocks["resolution"]
    assert (clock.held, clock.running_since, clock.elapsed) == (True, None, HOUR)
    tk.advance(ny(3, 10, 10))
    assert not [r for r in tk.rules() if r.startswith("sla:resolution")]
    tk.send(EventType.TAGS_CHANGED, ny(3, 10, 11), tags_removed=("waiting_on_vendor",))
    assert tk.state.clocks["resolution"].running_since == ny(3, 10, 11)
    tk.advance(ny(3, 12, 12))
    assert tk.one("sla:resolution:warn50").due_at == utc(3, 11, 14)
    assert tk.one("sla:resolution:breach").due_at == utc(3, 12, 14)
    assert tk.one("sla:resolution:breach").fired_at == utc(3, 12, 14)
    tk.send(EventType.RESOLVED, ny(3, 12, 12))
    [outcome] = [o for o in tk.outcomes if o.metric == "resolution"]
    # 1 h Friday, 6 h Tuesday, 8 h Wednesday, 3 h Thursday: the pause never counted
    assert (outcome.breached, outcome.business_elapsed) == (True, 18 * HOUR)


def test_resolved_while_paused_is_met_with_the_banked_time(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(POLICY))
    created(tk, ny(3, 6, 15))
    tk.send(EventType.TAGS_CHANGED, ny(3, 6, 16), tags_added=("waiting_on_vendor",))
    tk.advance(ny(3, 20, 9))  # two weeks: a running clock would long have breached
    tk.send(EventType.RESOLVED, ny(3, 20, 10))
    [outcome] = [o for o in tk.outcomes if o.metric == "resolution"]
    assert (outcome.met, outcome.breached, outcome.business_elapsed) == (True, False, HOUR)
    assert "sla:resolution:breach" not in tk.rules()


def test_a_pause_status_and_a_pause_condition_both_hold_the_clock(
    make_engine: Any, ticket: Any
) -> None:
    """PENDING ends while the condition still holds: the clock stays paused; the condition
    resumes it, and PENDING again pauses it again."""
    tk = ticket(make_engine(POLICY))
    created(tk, ny(3, 4, 9))
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 10), status=Status.PENDING)
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 11), tags_added=("waiting_on_vendor",))
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 12), status=Status.OPEN)
    assert tk.state.clocks["resolution"].running_since is None
    assert tk.state.clocks["first_response"].running_since == ny(3, 4, 12)  # not held
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 13), tags_removed=("waiting_on_vendor",))
    assert tk.state.clocks["resolution"].running_since == ny(3, 4, 13)
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 14), status=Status.PENDING)
    clock = tk.state.clocks["resolution"]
    assert (clock.running_since, clock.elapsed) == (None, 2 * HOUR)  # 9-10 and 13-14


def test_a_hold_outlasts_the_round_it_started_in(make_engine: Any, ticket: Any) -> None:
    """periodic_update is held while the ticket is with the vendor group: an agent reply in
    between ends the round (met) and the next round starts held; moving the ticket back to
    the front line resumes it. Hand-computed on New York hours: the new round runs from Wed
    2026-03-04 14:00 EST; 8 h: 3 h Wednesday, 5 h Thursday: Thu 14:00 EST = 19:00 UTC."""
    tk = ticket(make_engine(POLICY))
    created(tk, ny(3, 3, 9), group="frontline")
    tk.send(EventType.AGENT_REPLIED, ny(3, 3, 10))  # round 0 of periodic_update
    tk.send(EventType.TRANSFERRED, ny(3, 3, 11), group="vendor")
    assert tk.state.clocks["periodic_update"].held
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 9))  # round 1 starts held
    clock = tk.state.clocks["periodic_update"]
    assert (clock.round, clock.held, clock.running_since) == (1, True, None)
    tk.send(EventType.TRANSFERRED, ny(3, 4, 10), group="vendor")  # no resume: still vendor
    assert tk.state.clocks["periodic_update"].held
    tk.send(EventType.TRANSFERRED, ny(3, 4, 14), group="tier2")
    tk.advance(ny(3, 6, 9))
    assert tk.one("sla:periodic_update#1:breach").due_at == utc(3, 5, 19)
    rounds = [
        (o.round, o.met, o.business_elapsed) for o in tk.outcomes if o.metric == "periodic_update"
    ]
    assert rounds == [(0, True, HOUR)]  # 10-11, then held


def test_a_reset_keeps_the_hold(make_engine: Any, ticket: Any) -> None:
    text = POLICY.replace(
        "        resume: {tags_removed: [waiting_on_vendor]}",
        "        resume: {tags_removed: [waiting_on_vendor]}\n        reset: {event: [ASSIGNED]}",
    )
    tk = ticket(make_engine(text))
    created(tk, ny(3, 4, 9))
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10), tags_added=("waiting_on_vendor",))
    tk.send(EventType.ASSIGNED, ny(3, 4, 11), assignee_id="a2")
    clock = tk.state.clocks["resolution"]
    assert (clock.resets, clock.held, clock.elapsed, clock.running_since) == (1, True, 0, None)


def test_report_and_board_agree_with_the_held_clock() -> None:
    """Through the backtest: the breach escalation is due when the banked clock runs out, the
    report counts it missed, and the board shows that same escalation and due instant."""
    policy = parse_policy(POLICY, "pause.yaml")
    base = {"ticket_id": "T9", "priority": Priority.NORMAL}
    events = [
        TicketEvent(event_id="e1", type=EventType.CREATED, occurred_at=ny(3, 6, 15),
                    status=Status.NEW, **base),
        TicketEvent(event_id="e2", type=EventType.AGENT_REPLIED, occurred_at=ny(3, 6, 15, 30),
                    **base),
        TicketEvent(event_id="e3", type=EventType.TAGS_CHANGED, occurred_at=ny(3, 6, 16),
                    tags_added=("waiting_on_vendor",), **base),
        TicketEvent(event_id="e4", type=EventType.TAGS_CHANGED, occurred_at=ny(3, 10, 11),
                    tags_removed=("waiting_on_vendor",), **base),
        TicketEvent(event_id="e5", type=EventType.CUSTOMER_REPLIED, occurred_at=ny(3, 13, 9),
                    **base),
    ]  # fmt: skip
    out = io.StringIO()
    (report,) = backtest_events([policy], events, [out], board=True)
    assert report.board is not None
    entry = report.board["T9"]
    assert (entry.rule, entry.due_at) == ("sla:resolution:breach", utc(3, 12, 14))
    sent = [json.loads(line) for line in out.getvalue().splitlines()]
    due = [r["due_at"] for r in sent if r.get("escalation_id") == entry.escalation_id]
    assert due == [utc(3, 12, 14)]  # the escalation the backtest sent
    cell = report.attainment[("all", "resolution")]
    assert (cell.met, cell.missed) == (0, 1)  # still running at the end, and breached


# ------------------------------------------------------------------ property

OFFICE = parse_policy(POLICY, "pause.yaml")
CAL = OFFICE.calendar("business")
_START = ny(3, 2, 8)
_STEPS = st.lists(
    st.tuples(st.integers(1, 40 * HOUR // 60_000), st.sampled_from(["pause", "resume", "noop"])),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_elapsed_is_business_time_outside_the_holds(steps: list[tuple[int, str]]) -> None:
    """Whatever the pauses and resumes, the resolution clock's elapsed time (and its breach) is
    the business time of the spans it was not held, measured by the calendar alone."""
    engine = Engine(OFFICE)
    state, _ = engine.apply(None, _event("c", EventType.CREATED, _START))
    t, held, running_since, elapsed = _START, False, _START, 0
    actions: list[Any] = []
    for i, (minutes, what) in enumerate(steps):
        t += minutes * 60_000
        if what == "pause":
            event = _event(f"p{i}", EventType.TAGS_CHANGED, t, tags_added=("waiting_on_vendor",))
            if not held:
                elapsed += CAL.between(running_since, t)
                held = True
        elif what == "resume":
            event = _event(f"r{i}", EventType.TAGS_CHANGED, t, tags_removed=("waiting_on_vendor",))
            if held:
                held, running_since = False, t
        else:
            event = _event(f"n{i}", EventType.ASSIGNED, t, assignee_id=f"a{i}")
        state, out = engine.apply(state, event)
        actions.extend(out)
    clock = state.clocks["resolution"]
    breached = [a for a in actions if getattr(a, "rule", "") == "sla:resolution:breach"]
    if held:
        assert clock.running_since is None
        total = elapsed
    else:
        total = elapsed + CAL.between(running_since, t)
    if breached:
        assert total >= 16 * HOUR
        return
    assert clock.elapsed + (0 if held else CAL.between(clock.running_since, t)) == total
    if held:
        assert clock.next_at is None
    elif total < 8 * HOUR:  # the warning is next, when the unheld business time reaches 8 h
        assert clock.next_at == CAL.add(t, 8 * HOUR - total)
    elif total < 16 * HOUR:
        assert clock.next_at == CAL.add(t, 16 * HOUR - total)


def _event(event_id: str, kind: EventType, at: int, **fields: Any) -> TicketEvent:
    return TicketEvent(
        event_id=event_id, ticket_id="P1", type=kind, occurred_at=at, priority=Priority.NORMAL,
        **fields,
    )  # fmt: skip


def test_a_hold_the_policy_no_longer_has_ends_at_the_next_chance(make_engine: Any) -> None:
    """A clock held under a policy whose next version drops the pause condition (a restored
    state) runs again at the next status change instead of staying held for ever; moving to an
    SLA policy without the condition releases it too."""
    held = make_engine(POLICY)
    state, _ = held.apply(None, _event("c", EventType.CREATED, ny(3, 4, 9)))
    state, _ = held.apply(
        state, _event("p", EventType.TAGS_CHANGED, ny(3, 4, 10), tags_added=("waiting_on_vendor",))
    )
    assert state.clocks["resolution"].held
    dropped = POLICY.replace(
        "        pause: {tags_added: [waiting_on_vendor]}\n"
        "        resume: {tags_removed: [waiting_on_vendor]}\n",
        "        stop: {tags_added: [done]}\n",
    )
    assert dropped != POLICY
    plain = make_engine(dropped)
    state, _ = plain.apply(
        state, _event("s", EventType.STATUS_CHANGED, ny(3, 4, 11), status=Status.OPEN)
    )
    clock = state.clocks["resolution"]
    assert (clock.held, clock.running_since, clock.elapsed) == (False, ny(3, 4, 11), HOUR)


def test_moving_to_an_sla_policy_without_the_condition_releases_the_hold(
    make_engine: Any,
) -> None:
    text = POLICY.replace(
        "sla_policies:\n",
        "sla_policies:\n  - name: vip\n    match: {tier: [vip]}\n    calendar: business\n"
        "    targets: {resolution: 16h}\n",
    )
    engine = make_engine(text)
    state, _ = engine.apply(None, _event("c", EventType.CREATED, ny(3, 4, 9)))
    state, _ = engine.apply(
        state, _event("p", EventType.TAGS_CHANGED, ny(3, 4, 10), tags_added=("waiting_on_vendor",))
    )
    state, _ = engine.apply(
        state, _event("v", EventType.ASSIGNED, ny(3, 4, 12), customer_tier="vip")
    )
    clock = state.clocks["resolution"]
    assert (state.policy, clock.held, clock.running_since) == ("vip", False, ny(3, 4, 12))
    assert clock.elapsed == HOUR
