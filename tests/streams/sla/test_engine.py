"""SLA engine: one test per rule, on small explicit policies and on the default policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.sla.actions import Escalation, Kind, Reason, Reminder, SlaOutcome, action_id
from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status
from streams.sla.state import TicketState
from tests.support.engine import run_ticket

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H

# Round-the-clock policy (first_response per priority, only PENDING pauses) and an office
# policy on a 09:00-17:00 Mon-Fri UTC calendar for tickets of tier "office".
POLICY = """\
version: 1
calendars:
  office:
    timezone: UTC
    hours:
      mon-fri: "09:00-17:00"
sla_policies:
  - name: office
    match: {tier: [office]}
    calendar: office
    targets: {first_response: 2h, next_response: 1h, resolution: 8h}
    warn_at: [0.5]
  - name: round-the-clock
    targets:
      first_response: {URGENT: 1h, HIGH: 2h, NORMAL: 4h, LOW: 8h}
      next_response: 2h
      resolution: 1d
    warn_at: [0.5, 0.75]
    pause_statuses: [PENDING]
escalation_matrix:
  calendar: office
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead, allowed: 1h, calendar: 24x7}
    - {level: 3, name: manager, contact: manager, allowed: 2h}
    - {level: 4, name: director, contact: director}
  executive: {contact: exec}
"""


def utc(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> int:
    """Epoch ms of a UTC wall time in 2026 (2026-03-02 is a Monday)."""
    return int(datetime(2026, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def ny(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> int:
    tz = ZoneInfo("America/New_York")
    return int(datetime(2026, month, day, hour, minute, tzinfo=tz).timestamp() * 1000)


MON = 2  # 2026-03-02
FRI = 6  # 2026-03-06
NEXT_MON = 9


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


@pytest.fixture
def t(engine: Engine, ticket: Any) -> Any:
    """A ticket on the round-the-clock policy."""
    return ticket(engine)


@pytest.fixture
def d(default_engine: Engine, ticket: Any) -> Any:
    """A ticket on the default policy."""
    return ticket(default_engine)


def created(tk: Any, at: int, **fields: Any) -> list[Any]:
    fields.setdefault("priority", Priority.NORMAL)
    fields.setdefault("status", Status.NEW)
    return tk.send(EventType.CREATED, at, **fields)


def standard(tk: Any, at: int, **fields: Any) -> list[Any]:
    """CREATED for the default policy's catch-all `standard` SLA (business calendar)."""
    fields.setdefault("customer_tier", "standard")
    fields.setdefault("channel", "email")
    fields.setdefault("category", "general")
    return created(tk, at, **fields)


def escalations(actions: list[Any]) -> list[Escalation]:
    return [a for a in actions if isinstance(a, Escalation)]


def rules(actions: list[Any]) -> list[str]:
    return [a.rule for a in escalations(actions)]


def snapshot(tk: Any) -> dict[str, Any]:
    return tk.state.to_dict()  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- first response


def test_first_response_breach_fires_exactly_at_target(t: Any) -> None:
    created(t, utc(MON, 10))
    assert t.state.policy == "round-the-clock"
    assert "sla:first_response:breach" not in rules(t.advance(utc(MON, 14) - 1))
    out = t.advance(utc(MON, 14))
    breach = t.one("sla:first_response:breach")
    assert breach in out
    assert breach.due_at == breach.fired_at == utc(MON, 14)
    assert breach.kind is Kind.HIERARCHICAL
    assert breach.reason is Reason.FIRST_RESPONSE_BREACH
    assert breach.sla_metric == "first_response"
    assert (breach.from_level, breach.level, breach.target) == (1, 2, "lead")
    assert breach.policy == "round-the-clock"
    assert breach.event_id is None
    assert breach.escalation_id == action_id("T1", "sla:first_response:breach", 2, 0)


def test_first_response_on_business_time_skips_the_weekend(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, utc(FRI, 16), customer_tier="office")
    assert tk.state.policy == "office"
    # 50 % of 2 h: one business hour, which ends exactly at Friday's close.
    assert tk.state.next_due == utc(FRI, 17)
    tk.advance(utc(NEXT_MON, 10) - 1)
    assert tk.rules() == ["sla:first_response:warn50"]
    assert tk.one("sla:first_response:warn50").due_at == utc(FRI, 17)
    tk.advance(utc(NEXT_MON, 10))
    assert tk.one("sla:first_response:breach").due_at == utc(NEXT_MON, 10)


def test_default_policy_business_calendar_across_dst(d: Any) -> None:
    # Standard SLA: NORMAL first response 4 business hours, 09-17 New York. DST starts on
    # Sunday 2026-03-08, so Friday is UTC-5 and Monday UTC-4.
    standard(d, ny(FRI, 15))
    assert d.state.policy == "standard"
    d.advance(ny(NEXT_MON, 11) - 1)
    assert "sla:first_response:breach" not in d.rules()
    assert d.one("sla:first_response:warn75").due_at == ny(NEXT_MON, 10)
    d.advance(ny(NEXT_MON, 11))
    assert d.one("sla:first_response:breach").due_at == ny(NEXT_MON, 11)


def test_agent_reply_before_the_deadline_prevents_the_breach(t: Any) -> None:
    created(t, utc(MON, 10))
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 13, 59))
    [outcome] = [a for a in out if isinstance(a, SlaOutcome)]
    assert (outcome.metric, outcome.met, outcome.breached) == ("first_response", True, False)
    assert outcome.business_elapsed == 3 * H + 59 * M
    assert outcome.target == 4 * H
    t.advance(utc(MON, 20))
    assert not [r for r in t.rules() if r.startswith("sla:first_response:breach")]


def test_reply_exactly_at_the_deadline_comes_after_the_breach(t: Any) -> None:
    created(t, utc(MON, 10))
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 14))
    kinds = [type(a).__name__ for a in out]
    assert "sla:first_response:breach" in rules(out)
    breach_pos = rules(out).index("sla:first_response:breach")
    assert kinds.index("SlaOutcome") > breach_pos
    outcome = next(a for a in out if isinstance(a, SlaOutcome))
    # `met` says the clock was stopped by its answering event; `breached` that it was late.
    assert (outcome.met, outcome.breached) == (True, True)


def test_deadline_made_due_by_an_event_fires_before_a_reply_at_the_same_instant(d: Any) -> None:
    created(d, utc(7, 3), customer_tier="vip", channel="email")  # NORMAL: 1 h
    out = d.send(EventType.TAGS_CHANGED, utc(7, 3, 20), tags_added=("churn_risk",))  # URGENT: 15 m
    assert "sla:first_response:breach" in rules(out)  # fires with the event that made it due
    out = d.send(EventType.AGENT_REPLIED, utc(7, 3, 20))
    assert "sla:first_response:breach" not in rules(out)
    assert d.one("sla:first_response:breach").due_at == utc(7, 3, 20)


def test_late_reply_after_the_breach_fired(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 15))  # breach fired at 14:00
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 13))  # the reply was earlier, but late news
    [outcome] = [a for a in out if isinstance(a, SlaOutcome)]
    # The reply is recorded at its time, but the breach that fired stands: the outcome agrees
    # with the escalation that was sent (it used to say "not breached").
    assert (outcome.ended_at, outcome.met, outcome.breached) == (utc(MON, 13), True, True)
    assert len(t.by_rule("sla:first_response:breach")) == 1  # what was emitted stays emitted


# ----------------------------------------------------------------------------- warnings


def test_warnings_fire_at_each_fraction_once(t: Any) -> None:
    created(t, utc(MON, 10))
    for minute in range(0, 5 * 60, 7):
        t.advance(utc(MON, 10) + minute * M)
    t.advance(utc(MON, 15))
    first = [e for e in t.escalations if e.sla_metric == "first_response"]
    assert [(e.rule, e.due_at) for e in first] == [
        ("sla:first_response:warn50", utc(MON, 12)),
        ("sla:first_response:warn75", utc(MON, 13)),
        ("sla:first_response:breach", utc(MON, 14)),
    ]
    warn = first[0]
    assert (warn.kind, warn.reason, warn.level, warn.from_level, warn.target) == (
        Kind.AUTOMATIC,
        Reason.SLA_WARNING,
        1,
        1,
        "rep",
    )


def test_priority_bump_skips_stale_warnings_to_the_breach(t: Any) -> None:
    created(t, utc(MON, 10))  # NORMAL: 4 h
    t.send(EventType.PRIORITY_CHANGED, utc(MON, 11, 30), priority=Priority.URGENT)  # 1 h
    t.advance(utc(MON, 11, 30))
    assert [r for r in t.rules() if "first_response" in r] == ["sla:first_response:breach"]
    assert t.one("sla:first_response:breach").due_at == utc(MON, 11, 30)


def test_priority_bump_fires_only_the_furthest_crossed_warning(t: Any) -> None:
    created(t, utc(MON, 10))  # NORMAL: 4 h, no warning before 12:00
    t.send(EventType.PRIORITY_CHANGED, utc(MON, 11, 40), priority=Priority.HIGH)  # 2 h
    t.advance(utc(MON, 13))
    fr = [(e.rule, e.due_at) for e in t.escalations if e.sla_metric == "first_response"]
    assert fr == [
        ("sla:first_response:warn75", utc(MON, 11, 40)),
        ("sla:first_response:breach", utc(MON, 12)),
    ]


def test_priority_change_that_crosses_nothing_just_retargets(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.PRIORITY_CHANGED, utc(MON, 10, 30), priority=Priority.HIGH)  # 2 h
    t.advance(utc(MON, 13))
    fr = [(e.rule, e.due_at) for e in t.escalations if e.sla_metric == "first_response"]
    assert fr == [
        ("sla:first_response:warn50", utc(MON, 11)),
        ("sla:first_response:warn75", utc(MON, 11, 30)),
        ("sla:first_response:breach", utc(MON, 12)),
    ]


# ----------------------------------------------------------------------------- pauses


def test_pause_status_stops_the_clock_and_resume_restarts_it(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.STATUS_CHANGED, utc(MON, 11), status=Status.PENDING)
    assert t.state.clocks["first_response"].running_since is None
    assert t.state.next_due is None
    t.advance(utc(MON, 13, 59))
    assert t.escalations == []
    t.send(EventType.STATUS_CHANGED, utc(MON, 14), status=Status.OPEN)
    t.advance(utc(MON, 17) - 1)
    assert "sla:first_response:breach" not in t.rules()
    t.advance(utc(MON, 17))
    assert t.one("sla:first_response:warn50").due_at == utc(MON, 15)  # 12:00 + 3 h
    assert t.one("sla:first_response:breach").due_at == utc(MON, 17)  # 14:00 + 3 h


def test_status_not_in_pause_statuses_does_not_pause(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.STATUS_CHANGED, utc(MON, 11), status=Status.ON_HOLD)
    t.send(EventType.STATUS_CHANGED, utc(MON, 12), status=Status.OPEN)
    t.advance(utc(MON, 15))
    assert t.one("sla:first_response:breach").due_at == utc(MON, 14)


def test_pause_counts_in_the_outcome(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.STATUS_CHANGED, utc(MON, 11), status=Status.PENDING)
    t.send(EventType.STATUS_CHANGED, utc(MON, 12), status=Status.OPEN)
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 13))
    [outcome] = [a for a in out if isinstance(a, SlaOutcome)]
    assert outcome.business_elapsed == 2 * H
    assert (outcome.started_at, outcome.ended_at) == (utc(MON, 10), utc(MON, 13))


# ----------------------------------------------------------------------------- next response


def test_next_response_rounds(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 10, 10))  # before the first response: no clock
    assert "next_response" not in t.state.clocks
    t.send(EventType.AGENT_REPLIED, utc(MON, 10, 30))
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 11))
    clock = t.state.clocks["next_response"]
    assert (clock.round, clock.started_at) == (0, utc(MON, 11))
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 11, 30))
    [outcome] = [a for a in out if isinstance(a, SlaOutcome)]
    assert (outcome.metric, outcome.round, outcome.met, outcome.breached) == (
        "next_response",
        0,
        True,
        False,
    )
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 12))
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 12, 30))  # still waiting: no restart
    assert (t.state.clocks["next_response"].round, t.state.clocks["next_response"].started_at) == (
        1,
        utc(MON, 12),
    )
    t.advance(utc(MON, 14, 30))
    nr = [(e.rule, e.due_at) for e in t.escalations if e.sla_metric == "next_response"]
    assert nr == [
        ("sla:next_response#1:warn50", utc(MON, 13)),
        ("sla:next_response#1:warn75", utc(MON, 13, 30)),
        ("sla:next_response#1:breach", utc(MON, 14)),
    ]
    breach = t.one("sla:next_response#1:breach")
    assert breach.reason is Reason.NEXT_RESPONSE_BREACH
    assert breach.escalation_id != action_id("T1", "sla:next_response#0:breach", 2, 0)


def test_next_response_breach_per_round(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.AGENT_REPLIED, utc(MON, 10, 5))
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 11))
    t.send(EventType.AGENT_REPLIED, utc(MON, 13, 30))  # late: round 0 breached at 13:00
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 14))
    t.advance(utc(MON, 16))
    breaches = [(e.rule, e.due_at) for e in t.escalations if e.rule.endswith(":breach")]
    assert breaches == [
        ("sla:next_response#0:breach", utc(MON, 13)),
        ("sla:next_response#1:breach", utc(MON, 16)),
    ]
    assert len({e.escalation_id for e in t.escalations}) == len(t.escalations)


# ----------------------------------------------------------------------------- resolution


def test_resolution_met_and_done_statuses_stop_every_clock(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.AGENT_REPLIED, utc(MON, 10, 30))
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 11))
    out = t.send(EventType.RESOLVED, utc(MON, 12))
    outcomes = {o.metric: o for o in out if isinstance(o, SlaOutcome)}
    assert set(outcomes) == {"resolution", "next_response"}
    assert (outcomes["resolution"].met, outcomes["resolution"].breached) == (True, False)
    assert outcomes["resolution"].business_elapsed == 2 * H
    assert outcomes["next_response"].met is False
    assert t.state.status is Status.SOLVED
    assert t.state.next_due is None
    assert t.advance(utc(MON, 12) + 365 * D) == []
    # A customer reply after resolution starts nothing.
    assert t.send(EventType.CUSTOMER_REPLIED, utc(MON + 1, 9)) == []
    assert t.state.next_due is None


def test_closed_stops_every_clock(t: Any) -> None:
    created(t, utc(MON, 10))
    out = t.send(EventType.CLOSED, utc(MON, 11))
    outcomes = {o.metric: o for o in out if isinstance(o, SlaOutcome)}
    assert set(outcomes) == {"first_response", "resolution"}
    assert outcomes["first_response"].met is False
    assert t.state.status is Status.CLOSED and t.state.closed
    assert t.state.next_due is None
    assert t.advance(utc(MON, 11) + 30 * D) == []


def test_resolution_breach_after_a_late_resolve(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.AGENT_REPLIED, utc(MON, 10, 5))
    out = t.send(EventType.RESOLVED, utc(MON + 1, 11))
    assert "sla:resolution:breach" in rules(out)
    outcome = next(o for o in out if isinstance(o, SlaOutcome) and o.metric == "resolution")
    assert (outcome.met, outcome.breached, outcome.business_elapsed) == (True, True, 25 * H)


# ----------------------------------------------------------------------------- reopen


def test_reopen_starts_a_new_cycle(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 14))  # first_response breach: level 2
    assert t.state.level == 2
    t.send(EventType.AGENT_REPLIED, utc(MON, 14, 30))
    t.send(EventType.RESOLVED, utc(MON, 15))
    out = t.send(EventType.REOPENED, utc(MON, 16))
    assert escalations(out) == []
    state = t.state
    assert (state.cycle, state.reopens, state.level, state.status) == (1, 1, 1, Status.OPEN)
    resolution = state.clocks["resolution"]
    assert (resolution.started_at, resolution.round, resolution.active) == (utc(MON, 16), 1, True)
    # The reopen waits for an answer: a next_response round starts with it.
    assert state.clocks["next_response"].started_at == utc(MON, 16)
    t.advance(utc(MON, 18))
    breach = t.one("sla:next_response#0:breach")
    assert (breach.cycle, breach.from_level, breach.level) == (1, 1, 2)
    assert breach.escalation_id == action_id("T1", "sla:next_response#0:breach", 2, 1)
    t.send(EventType.AGENT_REPLIED, utc(MON, 18, 10))
    t.advance(utc(MON + 1, 16))
    res = t.one("sla:resolution:breach")
    assert (res.due_at, res.cycle) == (utc(MON + 1, 16), 1)


def test_status_back_to_work_reopens_like_reopened(d: Any) -> None:
    """A solved ticket moved back to OPEN by a status change or a customer reply is a reopen."""
    standard(d, utc(MON, 15))
    d.send(EventType.AGENT_REPLIED, utc(MON, 15, 10))
    d.send(EventType.RESOLVED, utc(MON, 16))
    d.send(EventType.STATUS_CHANGED, utc(MON, 17), status=Status.OPEN)
    assert (d.state.cycle, d.state.reopens, d.state.status) == (1, 1, Status.OPEN)
    assert d.state.clocks["resolution"].started_at == utc(MON, 17)
    d.send(EventType.RESOLVED, utc(MON, 18))
    out = d.send(EventType.CUSTOMER_REPLIED, utc(MON, 19), status=Status.OPEN)
    assert [e.rule for e in escalations(out)] == ["trigger:reopened-twice"]
    assert (d.state.cycle, d.state.reopens) == (2, 2)


def test_csat_after_resolution_does_not_reopen(d: Any) -> None:
    standard(d, utc(MON, 15))
    d.send(EventType.RESOLVED, utc(MON, 16))
    d.send(EventType.CSAT_RECEIVED, utc(MON, 17), csat=5)
    assert (d.state.cycle, d.state.status) == (0, Status.SOLVED)


def test_same_rule_in_two_cycles_gets_two_ids(t: Any) -> None:
    created(t, utc(MON, 10))
    t.send(EventType.AGENT_REPLIED, utc(MON, 10, 5))
    t.advance(utc(MON + 1, 10))  # resolution breach, cycle 0
    t.send(EventType.RESOLVED, utc(MON + 1, 11))
    t.send(EventType.REOPENED, utc(MON + 1, 12))
    t.send(EventType.AGENT_REPLIED, utc(MON + 1, 12, 5))
    t.advance(utc(MON + 2, 12))  # resolution breach, cycle 1
    res = t.by_rule("sla:resolution:breach")
    assert [(e.cycle, e.level) for e in res] == [(0, 2), (1, 2)]
    assert res[0].escalation_id != res[1].escalation_id


def test_reopened_twice_escalates(d: Any) -> None:
    standard(d, utc(MON, 15))
    d.send(EventType.AGENT_REPLIED, utc(MON, 15, 10))
    d.send(EventType.RESOLVED, utc(MON, 16))
    assert escalations(d.send(EventType.REOPENED, utc(MON, 17))) == []
    d.send(EventType.RESOLVED, utc(MON, 18))
    out = d.send(EventType.REOPENED, utc(MON, 19))
    [esc] = escalations(out)
    assert (esc.rule, esc.reason, esc.kind, esc.level, esc.cycle) == (
        "trigger:reopened-twice",
        Reason.REOPENED,
        Kind.HIERARCHICAL,
        2,
        2,
    )
    assert esc.event_id == "T1-e6"


# ----------------------------------------------------------------------------- matrix


def test_unanswered_escalation_climbs_the_matrix(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 14))
    t.advance(utc(MON, 15) - 1)
    assert "matrix:unanswered" not in t.rules()
    t.advance(utc(MON, 15))
    climb = t.one("matrix:unanswered")
    assert (climb.from_level, climb.level, climb.target) == (2, 3, "manager")
    assert (climb.kind, climb.reason, climb.due_at) == (
        Kind.HIERARCHICAL,
        Reason.ESCALATION_OVERDUE,
        utc(MON, 15),
    )
    # Level 3 may stay 2 h on the office calendar (09-17): 15:00 + 2 h = 17:00 the same day.
    t.advance(utc(MON, 17))
    top = t.by_rule("matrix:unanswered")[-1]
    assert (top.from_level, top.level, top.target, top.due_at) == (3, 4, "director", utc(MON, 17))
    assert t.state.level == 4
    # The top level never climbs.
    t.advance(utc(MON, 10) + 20 * D)
    assert len(t.by_rule("matrix:unanswered")) == 2


def test_agent_reply_stops_the_climb(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 14))
    t.send(EventType.AGENT_REPLIED, utc(MON, 14, 30))
    assert t.state.awaiting_since is None
    t.advance(utc(MON, 20))
    assert "matrix:unanswered" not in t.rules()


def test_climb_on_business_calendar_skips_the_weekend(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, utc(FRI, 13), customer_tier="office")
    tk.advance(utc(FRI, 15))  # first_response breach (2 business h): level 2
    tk.advance(utc(FRI, 16))  # level 2 allowed 1 h (24x7): level 3
    assert tk.state.level == 3
    # Level 3 allowed 2 h on the office calendar: 1 h on Friday, 1 h on Monday.
    tk.advance(utc(NEXT_MON, 10) - 1)
    assert len(tk.by_rule("matrix:unanswered")) == 1
    tk.advance(utc(NEXT_MON, 10))
    last = tk.by_rule("matrix:unanswered")[-1]
    assert (last.level, last.due_at) == (4, utc(NEXT_MON, 10))


def test_breach_at_the_top_level_stays_at_the_top(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 20))  # breach (2), climb (3) at 15:00, climb (4) at 17:00
    assert t.state.level == 4
    t.advance(utc(MON + 1, 10))
    res = t.one("sla:resolution:breach")
    assert (res.from_level, res.level, res.target) == (4, 4, "director")


# ----------------------------------------------------------------------------- triggers


def trigger_escalation(d: Any, tags: tuple[str, ...]) -> tuple[list[Escalation], list[Any]]:
    standard(d, utc(MON, 15))
    out = d.send(EventType.TAGS_CHANGED, utc(MON, 15, 30), tags_added=tags)
    return escalations(out), [a for a in out if not isinstance(a, Escalation)]


@pytest.mark.parametrize("tag", ["churn_risk", "at_risk"])
def test_churn_risk_escalates_automatically_and_bumps_to_urgent(d: Any, tag: str) -> None:
    [esc], [bump] = trigger_escalation(d, (tag,))
    assert (esc.kind, esc.reason, esc.level, esc.from_level, esc.target, esc.rule) == (
        Kind.AUTOMATIC,
        Reason.CHURN_RISK,
        3,
        1,
        "account-manager",
        "trigger:churn-risk",
    )
    assert esc.event_id == "T1-e2"
    assert (bump.old_priority, bump.new_priority, bump.escalation_id) == (
        "NORMAL",
        "URGENT",
        esc.escalation_id,
    )
    assert bump.reason is Reason.CHURN_RISK
    assert d.state.priority is Priority.URGENT
    assert d.state.level == 3


def test_system_crash_goes_to_the_next_support_level(d: Any) -> None:
    standard(d, utc(MON, 15))
    d.send(EventType.ASSIGNED, utc(MON, 15, 5), group="tier2", support_level=2)
    out = d.send(EventType.TAGS_CHANGED, utc(MON, 15, 30), tags_added=("system_crash",))
    [esc] = escalations(out)
    assert (esc.kind, esc.reason, esc.target, esc.level) == (
        Kind.FUNCTIONAL,
        Reason.SYSTEM_CRASH,
        "experts",
        1,
    )
    assert d.state.support_level == 3
    assert d.state.level == 1  # functional: the hierarchy is not climbed
    assert [(b.new_priority, b.escalation_id) for b in d.bumps] == [("HIGH", esc.escalation_id)]


def test_legal_threat(d: Any) -> None:
    [esc], [bump] = trigger_escalation(d, ("legal",))
    assert (esc.kind, esc.reason, esc.level, esc.target) == (
        Kind.HIERARCHICAL,
        Reason.LEGAL_THREAT,
        5,
        "sales-and-operations-director",
    )
    assert bump.new_priority == "URGENT"


@pytest.mark.parametrize("tag", ["cancel", "account_closure"])
def test_cancellation_threat_bumps_one_step(d: Any, tag: str) -> None:
    [esc], [bump] = trigger_escalation(d, (tag,))
    assert (esc.reason, esc.level, esc.target) == (
        Reason.CANCELLATION_THREAT,
        3,
        "account-manager",
    )
    assert (bump.old_priority, bump.new_priority) == ("NORMAL", "HIGH")


def test_refund_goes_to_billing(d: Any) -> None:
    [esc], others = trigger_escalation(d, ("refund",))
    assert (esc.kind, esc.reason, esc.target) == (
        Kind.FUNCTIONAL,
        Reason.REFUND_REQUEST,
        "billing-team",
    )
    assert others == []


def test_privacy_goes_to_the_privacy_office(d: Any) -> None:
    [esc], [bump] = trigger_escalation(d, ("privacy",))
    assert (esc.kind, esc.reason, esc.target) == (
        Kind.FUNCTIONAL,
        Reason.PRIVACY_CONCERN,
        "privacy-office",
    )
    assert bump.new_priority == "HIGH"


def test_supervisor_request(d: Any) -> None:
    [esc], others = trigger_escalation(d, ("supervisor_request",))
    assert (esc.kind, esc.reason, esc.level, esc.target) == (
        Kind.HIERARCHICAL,
        Reason.SUPERVISOR_REQUEST,
        2,
        "support-manager",
    )
    assert others == []


def test_trigger_tag_on_created_fires(d: Any) -> None:
    out = standard(d, utc(MON, 15), tags_added=("legal",))
    assert rules(out) == ["trigger:legal-threat"]


def test_tickets_with_the_same_tags_share_one_immutable_set(
    default_engine: Engine, ticket: Any
) -> None:
    a, b = ticket(default_engine, "T1"), ticket(default_engine, "T2")
    standard(a, utc(MON, 15), tags_added=("returning_customer", "vip_contact"))
    standard(b, utc(MON, 15), tags_added=("vip_contact",))
    b.send(EventType.TAGS_CHANGED, utc(MON, 15, 5), tags_added=("returning_customer",))
    assert a.state.tags == {"returning_customer", "vip_contact"}
    assert b.state.tags is a.state.tags and isinstance(a.state.tags, frozenset)
    a.send(EventType.TAGS_CHANGED, utc(MON, 15, 6), tags_removed=("vip_contact",))
    assert a.state.tags == {"returning_customer"}
    assert b.state.tags == {"returning_customer", "vip_contact"}  # b's set is untouched
    assert TicketState.from_dict(json.loads(json.dumps(b.state.to_dict()))) == b.state


def test_same_trigger_tag_twice_fires_once(d: Any) -> None:
    trigger_escalation(d, ("churn_risk",))
    out = d.send(EventType.TAGS_CHANGED, utc(MON, 15, 40), tags_added=("at_risk",))
    assert rules(out) == [] and d.bumps[1:] == []


def test_third_transfer_is_too_many_once_per_cycle(d: Any) -> None:
    standard(d, utc(MON, 15))
    assert escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 10))) == []
    assert escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 20))) == []
    [esc] = escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 30)))
    assert (esc.rule, esc.reason, esc.level, esc.kind) == (
        "trigger:too-many-transfers",
        Reason.TOO_MANY_TRANSFERS,
        2,
        Kind.HIERARCHICAL,
    )
    assert escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 40))) == []


def test_transfer_of_a_billing_ticket_routes_to_billing(d: Any) -> None:
    standard(d, utc(MON, 15), category="billing")
    [esc] = escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 10)))
    assert (esc.rule, esc.kind, esc.reason, esc.target) == (
        "trigger:specialist-routing",
        Kind.FUNCTIONAL,
        Reason.SPECIALIST_REQUIRED,
        "billing-team",
    )


def test_transfer_of_a_general_ticket_routes_nowhere(d: Any) -> None:
    standard(d, utc(MON, 15), category="general")
    assert escalations(d.send(EventType.TRANSFERRED, utc(MON, 15, 10))) == []


@pytest.mark.parametrize(
    ("tier", "csat", "fires"),
    [("premium", 1, True), ("premium", 2, True), ("premium", 3, False), ("standard", 1, False)],
)
def test_low_csat(d: Any, tier: str, csat: int, fires: bool) -> None:
    standard(d, utc(MON, 15), customer_tier=tier)
    d.send(EventType.AGENT_REPLIED, utc(MON, 15, 5))
    d.send(EventType.RESOLVED, utc(MON, 15, 10))
    out = escalations(d.send(EventType.CSAT_RECEIVED, utc(MON, 16), csat=csat))
    assert [(e.reason, e.level, e.kind) for e in out] == (
        [(Reason.LOW_CSAT, 3, Kind.AUTOMATIC)] if fires else []
    )


def test_pending_too_long_reminds_the_assignee_once_per_pending_period(d: Any) -> None:
    standard(d, utc(MON, 15))
    d.send(EventType.ASSIGNED, utc(MON, 15, 1), assignee_id="agent-7", group="frontline")
    d.send(EventType.AGENT_REPLIED, utc(MON, 15, 5))
    d.send(EventType.STATUS_CHANGED, utc(MON, 16), status=Status.PENDING)
    d.advance(utc(MON + 2, 16) - 1)
    assert d.reminders == []
    d.advance(utc(MON + 2, 16))
    [first] = d.reminders
    assert (first.target, first.reason, first.due_at) == (
        "agent-7",
        Reason.PENDING_TOO_LONG,
        utc(MON + 2, 16),
    )
    d.advance(utc(MON + 6))
    assert len(d.reminders) == 1
    d.send(EventType.STATUS_CHANGED, utc(MON + 6, 1), status=Status.OPEN)
    d.send(EventType.STATUS_CHANGED, utc(MON + 6, 2), status=Status.PENDING)
    d.advance(utc(MON + 10))
    assert len(d.reminders) == 2
    second = d.reminders[1]
    assert second.due_at == utc(MON + 8, 2)
    assert second.reminder_id != first.reminder_id


def test_escalation_open_thirty_days_goes_to_the_executive(d: Any) -> None:
    trigger_escalation(d, ("churn_risk",))
    d.advance(utc(MON, 15, 30) + 30 * D - 1)
    assert "trigger:escalation-open-30-days" not in d.rules()
    d.advance(utc(MON, 15, 30) + 30 * D)
    esc = d.one("trigger:escalation-open-30-days")
    assert (esc.kind, esc.reason, esc.target, esc.due_at) == (
        Kind.EXECUTIVE,
        Reason.ESCALATION_OVERDUE,
        "executive-office",
        utc(MON, 15, 30) + 30 * D,
    )
    d.advance(utc(MON, 15, 30) + 90 * D)
    assert len(d.by_rule("trigger:escalation-open-30-days")) == 1


@pytest.mark.parametrize("tier", ["vip", "enterprise"])
def test_vip_and_enterprise_run_round_the_clock(d: Any, tier: str) -> None:
    # Saturday 2026-03-07 03:00 UTC: the business calendars are closed, 24x7 is not.
    created(d, utc(7, 3), customer_tier=tier, channel="email")
    assert d.state.policy == "vip-enterprise"
    d.advance(utc(7, 4))
    assert d.one("sla:first_response:breach").due_at == utc(7, 4)  # NORMAL: 1 h


def test_trigger_priority_bump_rematches_targets(d: Any) -> None:
    created(d, utc(7, 3), customer_tier="vip", channel="email")  # NORMAL: 1 h
    d.send(EventType.TAGS_CHANGED, utc(7, 3, 10), tags_added=("churn_risk",))  # URGENT: 15 m
    d.advance(utc(7, 3, 30))
    assert d.one("sla:first_response:breach").due_at == utc(7, 3, 15)


def test_policy_matched_on_channel(d: Any) -> None:
    created(d, utc(MON, 15), customer_tier="standard", channel="chat")
    assert d.state.policy == "realtime-channels"
    created_premium = d.engine.apply(
        None, d.event(EventType.CREATED, utc(MON, 15), customer_tier="premium", channel="chat")
    )[0]
    assert created_premium.policy == "premium"  # first match wins


# ----------------------------------------------------------------------------- delivery


def test_duplicate_event_is_a_no_op(t: Any) -> None:
    created(t, utc(MON, 10))
    reply = t.event(EventType.AGENT_REPLIED, utc(MON, 10, 30))
    assert t.apply(reply) != []
    before = snapshot(t)
    assert t.apply(reply) == []
    assert snapshot(t) == before
    # Also when redelivered after later events and past deadlines.
    t.send(EventType.CUSTOMER_REPLIED, utc(MON, 11))
    before = snapshot(t)
    again = t.event(EventType.AGENT_REPLIED, utc(MON, 10, 30), event_id=reply.event_id)
    assert t.apply(again) == []
    assert snapshot(t) == before


def test_late_created_moves_the_deadline_back(t: Any) -> None:
    t.send(EventType.ASSIGNED, utc(MON, 11), assignee_id="a1")
    assert t.state.clocks["first_response"].started_at == utc(MON, 11)
    assert t.state.next_due == utc(MON, 13)  # 50 % of 4 h from first sight
    t.send(EventType.CREATED, utc(MON, 10), priority=Priority.NORMAL, status=Status.NEW)
    assert t.state.created_at == utc(MON, 10)
    clock = t.state.clocks["first_response"]
    assert clock.started_at == utc(MON, 10)
    t.advance(utc(MON, 16))
    assert t.one("sla:first_response:breach").due_at == utc(MON, 14)
    assert t.one("sla:first_response:warn50").due_at == utc(MON, 12)
    assert t.state.status is Status.NEW  # the older CREATED does not override newer status


def test_late_created_with_a_priority(t: Any) -> None:
    t.send(EventType.ASSIGNED, utc(MON, 11), assignee_id="a1")
    t.send(EventType.CREATED, utc(MON, 10), priority=Priority.HIGH)  # HIGH: 2 h
    t.advance(utc(MON, 16))
    assert t.one("sla:first_response:breach").due_at == utc(MON, 12)


@pytest.mark.parametrize(
    ("first", "fields", "paused"),
    [
        (EventType.ASSIGNED, {"assignee_id": "a"}, False),
        (EventType.STATUS_CHANGED, {"status": Status.PENDING}, True),
        (EventType.CUSTOMER_REPLIED, {}, False),
        (EventType.TAGS_CHANGED, {"tags_added": ("x",)}, False),
    ],
)
def test_unknown_ticket_starts_tracking(
    t: Any, first: EventType, fields: dict[str, Any], paused: bool
) -> None:
    t.send(first, utc(MON, 11), **fields)
    state = t.state
    assert state.created_at is None and state.first_seen_at == utc(MON, 11)
    assert set(state.clocks) == {"first_response", "resolution"}
    assert (state.clocks["first_response"].running_since is None) is paused


def test_unknown_ticket_first_seen_replied_or_resolved(t: Any, ticket: Any, engine: Any) -> None:
    out = t.send(EventType.AGENT_REPLIED, utc(MON, 11))
    assert [(o.metric, o.met) for o in out if isinstance(o, SlaOutcome)] == [
        ("first_response", True)
    ]
    done = ticket(engine, "T2")
    assert done.send(EventType.RESOLVED, utc(MON, 11)) == []
    assert done.state.status is Status.SOLVED and done.state.next_due is None


# ----------------------------------------------------------------------------- time


def chain(tk: Any) -> list[tuple[str, int]]:
    return [(e.escalation_id, e.due_at) for e in tk.escalations]


def busy_ticket(tk: Any) -> None:
    standard(tk, ny(FRI, 15))
    tk.send(EventType.TAGS_CHANGED, ny(FRI, 15, 30), tags_added=("supervisor_request",))


def test_advance_in_small_steps_equals_one_big_step(default_engine: Engine, ticket: Any) -> None:
    small, big = ticket(default_engine), ticket(default_engine)
    busy_ticket(small)
    busy_ticket(big)
    end = ny(FRI, 15) + 40 * D
    for now in range(ny(FRI, 15, 30), end, 17 * M):
        small.advance(now)
    small.advance(end)
    big.advance(end)
    assert chain(small) == chain(big)
    assert len(chain(big)) >= 6
    assert small.state.to_dict() == big.state.to_dict()


def test_catch_up_after_downtime_pages_one_level_at_a_time(
    default_engine: Engine, ticket: Any
) -> None:
    on_time, caught_up = ticket(default_engine), ticket(default_engine)
    busy_ticket(on_time)
    busy_ticket(caught_up)
    down_until = ny(NEXT_MON + 7)
    on_time.advance(down_until)  # a worker that never stopped fired each at its instant
    assert all(e.fired_at == e.due_at for e in on_time.escalations)
    caught_up.advance(down_until, event_time=False)  # a wall clock back after downtime
    late = [e for e in caught_up.escalations if e.due_at > ny(FRI, 15, 30)]
    assert late and all(e.fired_at == down_until for e in late)
    raised = [e for e in late if e.level > e.from_level]
    assert len(raised) == 1, "one late discovery raises the level once"
    # The next level's timer starts when this one actually fired, not at its due instant.
    state = caught_up.state
    allowed, calendar = default_engine.policy.climb(state.level) or (0, None)
    assert calendar is not None and state.awaiting_since == down_until
    assert state.next_due is not None and state.next_due >= calendar.add(down_until, allowed)
    assert len(caught_up.escalations) < len(on_time.escalations)


# ----------------------------------------------------------------------------- state


def scenario(tk: Any) -> list[Any]:
    return [
        tk.event(
            EventType.CREATED,
            ny(FRI, 15),
            priority=Priority.NORMAL,
            customer_tier="premium",
            channel="email",
            category="billing",
            tags_added=("vip_customer",),
        ),
        tk.event(EventType.ASSIGNED, ny(FRI, 15, 5), assignee_id="a1", group="frontline"),
        tk.event(EventType.TRANSFERRED, ny(FRI, 16), group="billing-team"),
        tk.event(EventType.STATUS_CHANGED, ny(FRI, 16, 30), status=Status.PENDING),
        tk.event(EventType.STATUS_CHANGED, ny(NEXT_MON, 10), status=Status.OPEN),
        tk.event(EventType.AGENT_REPLIED, ny(NEXT_MON, 11)),
        tk.event(EventType.CUSTOMER_REPLIED, ny(NEXT_MON, 12)),
        tk.event(EventType.TAGS_CHANGED, ny(NEXT_MON, 13), tags_added=("cancel",)),
        tk.event(EventType.RESOLVED, ny(NEXT_MON + 3, 10)),
        tk.event(EventType.REOPENED, ny(NEXT_MON + 3, 12)),
        tk.event(EventType.CSAT_RECEIVED, ny(NEXT_MON + 3, 13), csat=1),
    ]


@pytest.mark.parametrize("cut", [1, 3, 5, 8, 10])
def test_state_round_trip_mid_life(default_engine: Engine, ticket: Any, cut: int) -> None:
    tk = ticket(default_engine)
    events = scenario(tk)
    end = ny(NEXT_MON + 20)
    _, straight = run_ticket(default_engine, events, until=end)
    state: TicketState | None = None
    actions: list[Any] = []
    for event in events[:cut]:
        state, out = default_engine.apply(state, event)
        actions.extend(out)
    assert state is not None
    text = json.dumps(state.to_dict())
    restored = TicketState.from_dict(json.loads(text))
    assert restored.to_dict() == state.to_dict()
    state = restored
    for event in events[cut:]:
        state, out = default_engine.apply(state, event)
        actions.extend(out)
    state, out = default_engine.advance(state, end)
    actions.extend(out)
    assert actions == straight
    assert escalations(straight)


def test_state_is_json_serializable_with_every_field(default_engine: Engine, ticket: Any) -> None:
    tk = ticket(default_engine)
    for event in scenario(tk)[:8]:
        tk.apply(event)
    data = tk.state.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == set(TicketState.__dataclass_fields__)


def test_escalation_ids_are_deterministic(default_engine: Engine, ticket: Any) -> None:
    end = ny(NEXT_MON + 20)
    runs = []
    for name in ("A", "A", "B"):
        tk = ticket(default_engine, name)
        events = scenario(tk)
        runs.append(
            [
                e.escalation_id
                for e in escalations(run_ticket(Engine(default_engine.policy), events, end)[1])
            ]
        )
    assert runs[0] == runs[1]
    assert not set(runs[0]) & set(runs[2])
    base = action_id("T", "r", 1, 0)
    assert base == action_id("T", "r", 1, 0)
    assert len({base, action_id("U", "r", 1, 0), action_id("T", "s", 1, 0)}) == 3
    assert len({base, action_id("T", "r", 2, 0), action_id("T", "r", 1, 1)}) == 3


def test_actions_are_plain_records(default_engine: Engine, ticket: Any) -> None:
    tk = ticket(default_engine)
    events = scenario(tk)
    _, actions = run_ticket(default_engine, events, until=ny(NEXT_MON + 20))
    kinds = {type(a) for a in actions}
    assert {Escalation, SlaOutcome} <= kinds
    for action in actions:
        json.dumps(action.to_dict())
    assert all(
        isinstance(a, Escalation | SlaOutcome | Reminder) or a.escalation_id for a in actions
    )


def test_low_csat_escalation_on_a_solved_ticket_does_not_climb(d: Any) -> None:
    """A solved ticket stops all clocks: the CSAT escalation notifies, it does not climb."""
    standard(d, utc(MON, 15), customer_tier="premium")
    d.send(EventType.AGENT_REPLIED, utc(MON, 15, 5))
    d.send(EventType.RESOLVED, utc(MON, 15, 10))
    out = escalations(d.send(EventType.CSAT_RECEIVED, utc(MON, 16), csat=1))
    assert [(e.reason, e.level) for e in out] == [(Reason.LOW_CSAT, 3)]
    assert escalations(d.advance(utc(MON, 16) + 60 * 86_400_000)) == []


# ----------------------------------------------------------------------------- time semantics

CHAIN_POLICY = POLICY.replace(
    "  executive: {contact: exec}\n",
    """  functional:
    billing:
      - {contact: billing-team, allowed: 30m}
      - {contact: billing-lead, allowed: 1h}
      - {contact: head-of-billing}
    it: it-desk
  executive: {contact: exec}
triggers:
  - name: billing-specialist
    when: {tags_added: [billing_dispute]}
    actions:
      - escalate: {kind: FUNCTIONAL, reason: SPECIALIST_REQUIRED, route_by_category: true}
""",
).replace(
    "    pause_statuses: [PENDING]\n",
    "    pause_statuses: [PENDING]\n    breach_route: category\n",
)


def test_a_deadline_between_two_sparse_events_fires_at_its_instant(t: Any) -> None:
    created(t, utc(MON, 10))
    # the next event comes days later: everything due in between fires at its due instant
    out = t.send(EventType.CUSTOMER_REPLIED, utc(MON + 3, 9))
    timed = [e for e in escalations(out) if e.event_id is None]
    assert {e.rule for e in timed} >= {"sla:first_response:breach", "matrix:unanswered"}
    assert all(e.fired_at == e.due_at for e in timed)
    assert t.one("sla:first_response:breach").fired_at == utc(MON, 14)


def test_a_wall_clock_never_fires_beyond_its_own_clock(engine: Engine) -> None:
    state, _ = engine.apply(None, _event("e1", EventType.CREATED, utc(MON, 10)), now=utc(MON, 10))
    # an event stamped ahead of the worker's clock (within the skew) fires nothing beyond it
    state, out = engine.apply(
        state, _event("e2", EventType.TAGS_CHANGED, utc(MON, 15)), now=utc(MON, 13)
    )
    assert "sla:first_response:breach" not in rules(out)
    assert state.next_due == utc(MON, 14)
    state, out = engine.advance(state, utc(MON, 14, 0) + 250)
    [breach] = [e for e in escalations(out) if e.rule == "sla:first_response:breach"]
    assert (breach.due_at, breach.fired_at) == (utc(MON, 14), utc(MON, 14) + 250)


def _event(eid: str, type_: EventType, at: int, **fields: Any) -> Any:
    from streams.sla.events import TicketEvent

    return TicketEvent(eid, "T1", type_, at, **fields)


def test_a_level_rises_once_per_instant_through_deadlines(t: Any) -> None:
    # a worker back after a day down finds first response and resolution both breached
    created(t, utc(MON, 10))
    out = t.advance(utc(MON + 1, 12), event_time=False)
    breaches = [e for e in escalations(out) if e.rule.endswith(":breach")]
    assert len(breaches) == 2 and {e.fired_at for e in breaches} == {utc(MON + 1, 12)}
    assert [e.level for e in breaches] == [2, 2], "the second deadline pages the same level"
    assert "matrix:unanswered" not in rules(out)
    assert t.state.level == 2 and t.state.awaiting_since == utc(MON + 1, 12)
    assert t.state.next_due == utc(MON + 1, 13)  # level 2's hour counts from when it fired


def test_a_paused_ticket_does_not_climb_and_resumes_where_it_stopped(t: Any) -> None:
    created(t, utc(MON, 10))
    t.advance(utc(MON, 14))  # first response breach: level 2, climbs after 1h (24x7)
    assert t.state.level == 2 and t.state.awaiting_since == utc(MON, 14)
    t.send(EventType.STATUS_CHANGED, utc(MON, 14, 30), status=Status.PENDING)
    assert t.advance(utc(MON, 20)) == [] or "matrix:unanswered" not in rules(t.actions)
    assert t.state.level == 2
    t.send(EventType.STATUS_CHANGED, utc(MON, 20), status=Status.OPEN)
    out = t.advance(utc(MON, 21))
    climb = t.one("matrix:unanswered")
    assert climb.due_at == utc(MON, 20, 30), "30 min were left when the pause began"
    assert climb in escalations(out)


def test_a_trigger_bump_is_not_undone_by_the_next_webhook(d: Any) -> None:
    standard(d, ny(MON, 10), priority=Priority.NORMAL)
    d.send(EventType.TAGS_CHANGED, ny(MON, 10, 5), tags_added=("churn_risk",))
    assert d.state.priority is Priority.URGENT
    # Zendesk and Freshdesk send the ticket's current (stale) priority on every webhook
    d.send(EventType.CUSTOMER_REPLIED, ny(MON, 10, 10), priority=Priority.NORMAL)
    d.send(EventType.STATUS_CHANGED, ny(MON, 10, 20), status=Status.OPEN, priority=Priority.NORMAL)
    assert d.state.priority is Priority.URGENT
    d.send(EventType.PRIORITY_CHANGED, ny(MON, 11), priority=Priority.HIGH)  # deliberate
    assert d.state.priority is Priority.HIGH


def test_a_functional_escalation_climbs_its_own_chain(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(CHAIN_POLICY))
    created(tk, utc(MON, 10), category="billing")
    tk.send(EventType.TAGS_CHANGED, utc(MON, 10, 5), tags_added=("billing_dispute",))
    [first] = [e for e in tk.escalations if e.kind is Kind.FUNCTIONAL]
    assert first.target == "billing-team"
    tk.advance(utc(MON, 12))
    steps = [(e.target, e.due_at) for e in tk.escalations if e.rule.startswith("functional:")]
    assert steps == [("billing-lead", utc(MON, 10, 35)), ("head-of-billing", utc(MON, 11, 35))]
    assert all(e.kind is Kind.FUNCTIONAL for e in tk.escalations if e.rule.startswith("func"))


def test_an_agent_reply_stops_the_functional_climb(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(CHAIN_POLICY))
    created(tk, utc(MON, 10), category="billing")
    tk.send(EventType.TAGS_CHANGED, utc(MON, 10, 5), tags_added=("billing_dispute",))
    tk.send(EventType.AGENT_REPLIED, utc(MON, 10, 20))
    tk.advance(utc(MON, 13))
    assert not [e for e in tk.escalations if e.rule.startswith("functional:")]


def test_a_policy_routes_breaches_by_category(make_engine: Any, ticket: Any) -> None:
    engine = make_engine(CHAIN_POLICY)
    billing, other = ticket(engine, "T1"), ticket(engine, "T2")
    created(billing, utc(MON, 10), category="billing")
    created(other, utc(MON, 10), category="shipping")
    billing.advance(utc(MON, 14))
    other.advance(utc(MON, 14))
    routed = billing.one("sla:first_response:breach")
    assert (routed.kind, routed.target, routed.level) == (Kind.FUNCTIONAL, "billing-team", 1)
    assert billing.state.f_chain == "billing" and billing.state.level == 1
    plain = other.one("sla:first_response:breach")  # no chain for the category: the matrix
    assert (plain.kind, plain.target, plain.level) == (Kind.HIERARCHICAL, "lead", 2)


def test_deleted_and_spam_tickets_close_with_no_clock_running(t: Any) -> None:
    created(t, utc(MON, 10))
    out = t.send(EventType.CLOSED, utc(MON, 11), attributes={"removed": "spam"})
    assert [a for a in out if isinstance(a, SlaOutcome)] == []  # never work: no outcome
    assert t.state.closed and t.state.next_due is None
    assert all(not clock.active for clock in t.state.clocks.values())
    assert t.advance(utc(MON + 20)) == []


def test_deadlines_before_the_backfill_horizon_page_nobody(engine: Engine) -> None:
    from streams.sla.actions import Silenced

    now = utc(MON + 20)
    horizon = now - engine.backfill_horizon
    state, out = engine.apply(
        None, _event("e1", EventType.CREATED, utc(MON, 10), priority=Priority.NORMAL),
        now=now, quiet_before=horizon,
    )  # fmt: skip
    assert escalations(out) == []
    state, out = engine.advance(state, now, quiet_before=horizon)  # the worker's next tick
    assert escalations(out) == []
    silenced = [a for a in out if isinstance(a, Silenced)]
    assert {a.rule for a in silenced} >= {"sla:first_response:breach"}
    assert all(a.due_at < horizon for a in silenced)
    assert state.level == 1 and state.awaiting_since is None  # nobody was paged
    assert state.clocks["first_response"].breached_at == utc(MON, 14)  # but it is a miss


def test_tickets_that_fired_the_same_rules_share_one_immutable_set(
    default_engine: Engine, ticket: Any
) -> None:
    """A set of its own cost each ticket about 400 bytes (issue #22: state per ticket)."""
    a, b = ticket(default_engine, "T1"), ticket(default_engine, "T2")
    standard(a, utc(MON, 15))
    standard(b, utc(MON, 15))
    a.advance(utc(MON + 1, 15))
    b.advance(utc(MON + 1, 15))
    assert a.state.fired and isinstance(a.state.fired, frozenset)
    assert b.state.fired is a.state.fired
    shared = set(b.state.fired)
    a.advance(utc(NEXT_MON, 15))  # a fires more; b's set is untouched
    assert a.state.fired > b.state.fired and b.state.fired == shared
    assert TicketState.from_row(json.loads(json.dumps(a.state.to_row()))) == a.state
