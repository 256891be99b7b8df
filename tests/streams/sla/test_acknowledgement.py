"""Acknowledgement (ESCALATION_ACKNOWLEDGED), `stop_climb_on` and the matrix `repeat`."""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.actions import Kind, Reason, action_id
from streams.sla.engine import Engine
from streams.sla.events import EventType, Status
from tests.support.clock import created, ny, utc

M = 60_000
H = 60 * M

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
sla_policies:
  - name: all
    targets: {first_response: 1h, resolution: 30d}
    warn_at: [0.5]
escalation_matrix:
  calendar: 24x7
  repeat: 2
  stop_climb_on: [acknowledged, agent_reply, solved]
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead, allowed: 30m}
    - {level: 3, name: manager, contact: manager, allowed: 4h, calendar: business}
  functional:
    billing:
      - {contact: billing-team, allowed: 2h}
      - {contact: billing-lead}
  executive: {contact: exec}
triggers:
  - name: refund
    when: {tags_added: [refund]}
    actions:
      - escalate: {kind: FUNCTIONAL, reason: REFUND_REQUEST, route_by_category: true}
"""


def policy(**matrix: str) -> str:
    text = POLICY
    for key, value in matrix.items():
        old = next(line for line in text.splitlines() if line.startswith(f"  {key}:"))
        text = text.replace(old, f"  {key}: {value}")
    return text


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def ack(tk: Any, at: int, escalation_id: str | None = None, by: str = "agent-7") -> None:
    attributes = {"acknowledged_by": by}
    if escalation_id is not None:
        attributes["escalation_id"] = escalation_id
    tk.send(EventType.ESCALATION_ACKNOWLEDGED, at, attributes=attributes)


def climbs(tk: Any) -> list[tuple[str, int, int]]:
    return [(e.rule, e.level, e.due_at) for e in tk.escalations if e.kind is Kind.HIERARCHICAL]


# ----------------------------------------------------------------------------- repeat


def test_repeat_pages_the_chain_again_on_business_time_across_dst(
    engine: Engine, ticket: Any
) -> None:
    """Hand-computed. Created Fri 2026-03-06 12:00 EST; first response 1 h (24x7) breaches
    13:00 EST: lead (level 2). 30 min later the manager (level 3). The manager may stay 4
    business hours (New York 09-17): 3.5 h on Friday and 0.5 h on Monday 2026-03-09, after
    the switch to EDT on Sunday, so 09:30 EDT = 13:30 UTC (not 14:30 UTC as in EST). Then
    repetition 1 pages the lead, 30 min later the manager (10:00 EDT); 4 business hours later
    (14:00 EDT) repetition 2 pages the lead, 14:30 the manager; after its 4 hours
    (Tue 10:30 EDT) nothing more: the matrix repeats twice."""
    tk = ticket(engine)
    created(tk, ny(3, 6, 12))
    tk.advance(ny(3, 20, 12))
    assert ny(3, 9, 9, 30) == utc(3, 9, 13, 30)
    assert climbs(tk) == [
        ("sla:first_response:breach", 2, ny(3, 6, 13)),
        ("matrix:unanswered", 3, ny(3, 6, 13, 30)),
        ("matrix:repeat1", 2, utc(3, 9, 13, 30)),
        ("matrix:repeat1", 3, ny(3, 9, 10)),
        ("matrix:repeat2", 2, ny(3, 9, 14)),
        ("matrix:repeat2", 3, ny(3, 9, 14, 30)),
    ]
    assert [e.target for e in tk.escalations if e.rule.startswith("matrix:repeat")] == [
        "lead", "manager", "lead", "manager",
    ]  # fmt: skip
    wraps = [e for e in tk.escalations if e.level == 2 and e.rule.startswith("matrix:repeat")]
    assert [(e.from_level, e.reason) for e in wraps] == [(3, Reason.ESCALATION_OVERDUE)] * 2
    ids = [e.escalation_id for e in tk.escalations]
    assert len(set(ids)) == len(ids)
    assert wraps[0].escalation_id == action_id("T1", "matrix:repeat1", 2, 0)
    assert tk.state.awaiting_since is None  # the resolution clock is all that is left


def test_without_repeat_the_top_level_stays(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(policy(repeat="0")))
    created(tk, ny(3, 6, 12))
    tk.advance(ny(3, 20, 12))
    assert [rule for rule, _, _ in climbs(tk)] == [
        "sla:first_response:breach",
        "matrix:unanswered",
    ]


def test_an_answer_during_a_repetition_stops_it(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 6, 12))
    tk.advance(ny(3, 9, 9, 45))  # repetition 1 paged the lead at 09:30
    tk.send(EventType.AGENT_REPLIED, ny(3, 9, 9, 50))
    tk.advance(ny(3, 20, 12))
    assert climbs(tk)[-1] == ("matrix:repeat1", 2, ny(3, 9, 9, 30))


def test_a_reopen_starts_the_repetitions_again(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 6, 12))
    tk.advance(ny(3, 9, 9, 45))
    tk.send(EventType.RESOLVED, ny(3, 9, 10))
    assert tk.state.repeat == 1
    tk.send(EventType.REOPENED, ny(3, 9, 11))
    assert (tk.state.repeat, tk.state.level, tk.state.climb_id) == (0, 1, None)


# ----------------------------------------------------------------------------- acknowledgement


def test_acknowledging_the_current_escalation_stops_its_climb(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 10))  # breach at 11:00: the lead
    lead = tk.one("sla:first_response:breach")
    assert tk.state.climb_id == lead.escalation_id
    ack(tk, ny(3, 4, 11, 20), lead.escalation_id)
    tk.advance(ny(3, 10, 12))
    assert [rule for rule, _, _ in climbs(tk)] == ["sla:first_response:breach"]
    # the acknowledgement is no reply: the first response is still missed when it comes
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 12))
    [outcome] = [o for o in tk.outcomes if o.metric == "first_response"]
    assert (outcome.met, outcome.breached) == (True, True)


def test_acknowledging_a_superseded_escalation_changes_nothing(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 40))  # lead at 11:00, manager at 11:30
    lead = tk.one("sla:first_response:breach")
    manager = tk.one("matrix:unanswered")
    ack(tk, ny(3, 4, 11, 45), lead.escalation_id)
    assert tk.state.awaiting_since == ny(3, 4, 11, 30)
    ack(tk, ny(3, 4, 11, 50), "no-such-escalation")
    assert tk.state.climb_id == manager.escalation_id
    tk.advance(ny(3, 4, 15, 45))  # 11:30 + 4 business hours = 15:30: repetition 1
    assert climbs(tk)[-1] == ("matrix:repeat1", 2, ny(3, 4, 15, 30))


def test_an_acknowledgement_naming_no_escalation_stops_every_climb(
    engine: Engine, ticket: Any
) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), category="billing")
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10, 5), tags_added=("refund",))
    tk.advance(ny(3, 4, 11, 10))
    assert tk.state.f_since is not None and tk.state.awaiting_since is not None
    ack(tk, ny(3, 4, 11, 15))
    assert (tk.state.f_since, tk.state.awaiting_since) == (None, None)
    tk.advance(ny(3, 10, 12))
    assert "functional:billing#1" not in tk.rules()
    assert "matrix:unanswered" not in tk.rules()


def test_acknowledging_the_functional_escalation_stops_only_that_chain(
    engine: Engine, ticket: Any
) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), category="billing")
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10, 5), tags_added=("refund",))
    team = tk.one("trigger:refund")
    assert (team.target, tk.state.f_id) == ("billing-team", team.escalation_id)
    tk.advance(ny(3, 4, 11, 10))
    ack(tk, ny(3, 4, 11, 15), team.escalation_id)
    tk.advance(ny(3, 4, 12, 30))  # the chain's next step was due at 12:05
    assert "functional:billing#1" not in tk.rules()
    assert tk.one("matrix:unanswered").due_at == ny(3, 4, 11, 30)


def test_an_unanswered_functional_step_records_its_id(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), category="billing")
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10, 5), tags_added=("refund",))
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10, 6))  # stops the functional chain too
    assert tk.state.f_since is None


# ----------------------------------------------------------------------------- stop_climb_on


def test_without_acknowledged_an_acknowledgement_does_not_stop(
    make_engine: Any, ticket: Any
) -> None:
    tk = ticket(make_engine(policy(stop_climb_on="[agent_reply, solved]")))
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 10))
    ack(tk, ny(3, 4, 11, 20))
    tk.advance(ny(3, 4, 11, 30))
    assert tk.one("matrix:unanswered").level == 3


def test_without_agent_reply_a_reply_does_not_stop_the_climb(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(policy(stop_climb_on="[acknowledged, solved]")))
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 10))
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 11, 20))
    assert [o.met for o in tk.outcomes if o.metric == "first_response"] == [True]
    tk.advance(ny(3, 4, 11, 30))
    assert tk.one("matrix:unanswered").level == 3
    ack(tk, ny(3, 4, 11, 40))
    tk.advance(ny(3, 10, 12))
    assert len(climbs(tk)) == 2


def test_solving_stops_the_climb_whatever_else_is_listed(make_engine: Any, ticket: Any) -> None:
    tk = ticket(make_engine(policy(stop_climb_on="[solved]")))
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 10))
    tk.send(EventType.RESOLVED, ny(3, 4, 11, 20))
    tk.advance(ny(3, 10, 12))
    assert len(climbs(tk)) == 1


def test_an_acknowledgement_survives_the_changelog(engine: Engine, ticket: Any) -> None:
    from streams.sla.state import TicketState

    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 10))
    tk.state = TicketState.from_row(tk.state.to_row())
    ack(tk, ny(3, 4, 11, 20), tk.one("sla:first_response:breach").escalation_id)
    assert tk.state.awaiting_since is None


def test_a_pause_through_two_pause_statuses_holds_the_climb_for_all_of_it(
    engine: Engine, ticket: Any
) -> None:
    """Lead paged 11:00 (30 min allowed); PENDING 11:10, ON_HOLD 11:40, OPEN 12:00: the climb
    stood still 50 min, so the manager is due 12:20 (before the fix, 11:30 + 20 min)."""
    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.advance(ny(3, 4, 11, 5))
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 11, 10), status=Status.PENDING)
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 11, 40), status=Status.ON_HOLD)
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 12), status=Status.OPEN)
    tk.advance(ny(3, 4, 12, 19))
    assert "matrix:unanswered" not in tk.rules()
    tk.advance(ny(3, 4, 13))
    assert tk.one("matrix:unanswered").due_at == ny(3, 4, 12, 20)


def test_a_pause_holds_a_business_hours_climb_by_the_business_time_it_covered(
    engine: Engine, ticket: Any
) -> None:
    """Manager paged Wed 17:00 (after hours; 4 business hours allowed). PENDING 20:00 (none
    used yet), OPEN Thu 11:00: all 4 hours are left, so the climb is due Thu 15:00. Shifting
    the start by the pause's wall time (15 h, to Thu 08:00) would lose Thursday's 09-11
    paused hours and page at 13:00."""
    tk = ticket(engine)
    created(tk, ny(3, 4, 15, 30))
    tk.advance(ny(3, 4, 17, 30))
    assert tk.one("matrix:unanswered").due_at == ny(3, 4, 17)
    tk.send(EventType.STATUS_CHANGED, ny(3, 4, 20), status=Status.PENDING)
    tk.send(EventType.STATUS_CHANGED, ny(3, 5, 11), status=Status.OPEN)
    tk.advance(ny(3, 5, 14, 59))
    assert "matrix:repeat1" not in tk.rules()
    tk.advance(ny(3, 5, 16))
    assert tk.by_rule("matrix:repeat1")[0].due_at == ny(3, 5, 15)
