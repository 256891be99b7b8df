"""Named escalation chains: per SLA metric (`by_metric`) and per trigger kind (`by_kind`)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.actions import Kind, Reason, action_id
from streams.sla.engine import Engine
from streams.sla.events import EventType
from streams.sla.state import TicketState
from tests.support.clock import created, ny, utc

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
sla_policies:
  - name: all
    targets: {first_response: 1h, resolution: 8h}
    warn_at: [0.5]
escalation_matrix:
  calendar: business
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead, allowed: 1h}
    - {level: 3, name: manager, contact: manager}
  chains:
    delivery:
      - {contact: service-desk-lead, allowed: 2h}
      - {contact: service-delivery-manager}
    care:
      - {contact: care-team, allowed: 30m}
      - {contact: care-lead}
  by_metric: {resolution: delivery}
  by_kind: {AUTOMATIC: care}
  by_tier: {enterprise: delivery}
  tier_contacts: {vip: {2: vip-account-team, 3: vip-director}}
  executive: {contact: exec}
triggers:
  - name: churn
    when: {tags_added: [churn_risk]}
    actions:
      - escalate: {kind: AUTOMATIC, reason: CHURN_RISK, level: 3}
  - name: refund
    when: {tags_added: [refund]}
    actions:
      - escalate: {kind: AUTOMATIC, reason: REFUND_REQUEST, team: billing-team}
"""


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def test_a_resolution_breach_follows_its_own_chain_on_business_time_across_dst(
    engine: Engine, ticket: Any
) -> None:
    """Hand-computed. Created Fri 2026-03-06 14:00 EST. The first response (1 h, 24x7)
    breaches 15:00: the matrix's lead (level 2); a reply at 15:10 answers it. Resolution
    (8 h) breaches 22:00 EST: the delivery chain's first step, not the matrix. That step may
    stay 2 business hours (New York 09-17): the weekend is closed and the clocks change on
    Sunday, so Monday 09:00 EDT + 2 h = 11:00 EDT = 15:00 UTC."""
    tk = ticket(engine)
    created(tk, ny(3, 6, 14))
    tk.advance(ny(3, 6, 15, 5))
    tk.send(EventType.AGENT_REPLIED, ny(3, 6, 15, 10))
    tk.advance(ny(3, 13, 12))
    first = tk.one("sla:first_response:breach")
    assert (first.level, first.target) == (2, "lead")
    res = tk.one("sla:resolution:breach")
    assert (res.kind, res.reason, res.target, res.level, res.due_at) == (
        Kind.HIERARCHICAL,
        Reason.RESOLUTION_BREACH,
        "service-desk-lead",
        2,
        ny(3, 6, 22),
    )
    step = tk.one("chain:delivery#1")
    assert (step.target, step.reason, step.due_at) == (
        "service-delivery-manager",
        Reason.ESCALATION_OVERDUE,
        utc(3, 9, 15),
    )
    assert step.escalation_id == action_id("T1", "chain:delivery#1", 2, 0)
    assert tk.state.level == 2  # a side chain never moves the matrix level
    assert "matrix:unanswered" not in tk.rules()


def test_an_acknowledgement_of_the_chain_step_stops_the_chain(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 6, 14))
    tk.send(EventType.AGENT_REPLIED, ny(3, 6, 14, 30))
    tk.advance(ny(3, 6, 23))
    res = tk.one("sla:resolution:breach")
    tk.send(
        EventType.ESCALATION_ACKNOWLEDGED,
        ny(3, 7, 8),
        attributes={"escalation_id": res.escalation_id},
    )
    tk.state = TicketState.from_row(tk.state.to_row())
    tk.advance(ny(3, 13, 12))
    assert "chain:delivery#1" not in tk.rules()


def test_a_trigger_escalation_of_a_routed_kind_goes_to_its_chain(
    engine: Engine, ticket: Any
) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10, 1))
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10, 5), tags_added=("churn_risk",))
    churn = tk.one("trigger:churn")
    assert (churn.kind, churn.target, churn.level) == (Kind.AUTOMATIC, "care-team", 1)
    assert tk.state.level == 1  # the level in the trigger gives way to the chain
    tk.advance(ny(3, 4, 11))
    step = tk.one("chain:care#1")
    assert (step.target, step.due_at) == ("care-lead", ny(3, 4, 10, 35))


def test_a_trigger_naming_a_team_keeps_it(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10))
    tk.send(EventType.TAGS_CHANGED, ny(3, 4, 10, 5), tags_added=("refund",))
    assert tk.one("trigger:refund").target == "billing-team"
    assert tk.state.f_chain is None


def test_a_vip_ticket_pages_its_tier_contacts(engine: Engine, ticket: Any) -> None:
    """First response breaches Wed 11:00 (1 h, 24x7): level 2 is the VIP account team; its
    hour on the business calendar ends 12:00: level 3 is the VIP director."""
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), customer_tier="vip")
    tk.advance(ny(3, 4, 13))
    assert [(e.rule, e.level, e.target, e.due_at) for e in tk.escalations if e.level > 1] == [
        ("sla:first_response:breach", 2, "vip-account-team", ny(3, 4, 11)),
        ("matrix:unanswered", 3, "vip-director", ny(3, 4, 12)),
    ]


def test_other_tiers_keep_the_matrix_contacts(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), customer_tier="standard")
    tk.advance(ny(3, 4, 13))
    assert [e.target for e in tk.escalations if e.level > 1] == ["lead", "manager"]


def test_an_enterprise_ticket_breach_follows_its_tier_chain(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, ny(3, 4, 10), customer_tier="enterprise")
    tk.advance(ny(3, 4, 14))
    breach = tk.one("sla:first_response:breach")
    assert (breach.target, breach.level, tk.state.level) == ("service-desk-lead", 1, 1)
    assert tk.one("chain:delivery#1").due_at == ny(3, 4, 13)  # 2 business hours
