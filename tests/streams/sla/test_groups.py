"""`group` (the agent group) as an SLA match key and as a condition (issue 21, item 5)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status

M = 60_000
T0 = 1_772_409_600_000  # 2026-03-02 00:00 UTC

POLICY = """\
version: 1
sla_policies:
  - name: billing-desk
    match: {group: [Billing]}
    targets: {first_response: 30m}
  - name: all
    targets: {first_response: 4h}
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
triggers:
  - name: to-tier2
    when: {event: [TRANSFERRED], group: [tier2]}
    actions:
      - escalate: {kind: FUNCTIONAL, reason: SPECIALIST_REQUIRED, team: tier2-lead}
"""


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def created(tk: Any, **fields: Any) -> None:
    tk.send(EventType.CREATED, T0, priority=Priority.NORMAL, status=Status.NEW, **fields)


def test_the_group_selects_the_sla_policy(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, group="Billing")
    assert tk.state.policy == "billing-desk"
    tk.advance(T0 + 31 * M)
    assert tk.one("sla:first_response:breach").due_at == T0 + 30 * M


def test_an_assignment_to_the_group_rematches(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk)
    assert tk.state.policy == "all"
    tk.send(EventType.ASSIGNED, T0 + 10 * M, group="Billing")
    assert tk.state.policy == "billing-desk"
    assert tk.state.clocks["first_response"].target == 30 * M


def test_a_trigger_holds_only_for_its_group(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk)
    tk.send(EventType.TRANSFERRED, T0 + M, group="tier1")
    assert "trigger:to-tier2" not in tk.rules()
    tk.send(EventType.TRANSFERRED, T0 + 2 * M, group="tier2")
    assert tk.one("trigger:to-tier2").target == "tier2-lead"


def test_without_group_keys_a_group_change_does_not_rematch(
    default_engine: Engine, ticket: Any
) -> None:
    tk = ticket(default_engine)
    created(tk, customer_tier="standard")
    before = tk.state.policy
    tk.send(EventType.ASSIGNED, T0 + M, group="Billing")
    assert (tk.state.policy, tk.state.group) == (before, "Billing")
