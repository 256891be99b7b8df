"""The metrics beyond the first three: periodic and pausable update, requester wait, agent work."""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.actions import Reason
from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status
from tests.support.clock import ny, utc

H = 3_600_000

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
sla_policies:
  - name: all
    calendar: business
    targets:
      first_response: 8h
      resolution: 40h
      periodic_update: 4h
      pausable_update: {URGENT: 1h, default: 4h}
      requester_wait: 16h
      agent_work: 2h
    warn_at: [0.5]
    pause_statuses: [PENDING]
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
"""


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def test_each_metric_on_business_time_across_dst(engine: Engine, ticket: Any) -> None:
    """Hand-computed, New York 09-17, only PENDING pauses the policy. Created Fri 2026-03-06
    15:00 EST, agent reply 16:00, PENDING 16:30; Mon 03-09 (EDT since Sunday) ON_HOLD 10:00,
    OPEN 11:00, agent reply 13:00, solved 14:00.
    - periodic update (never stands still) from the reply at 16:00: 1 h Friday + 3 h Monday:
      breach Mon 12:00 EDT = 16:00 UTC; the 13:00 reply ends round 0 at 5 h, met late.
    - pausable update stands still in PENDING only: 0.5 h Friday, from 10:00 Monday 3 h by
      13:00: met at 3.5 h of 4.
    - agent work (stands still in PENDING and ON_HOLD): 1.5 h Friday, then from 11:00:
      breach 11:30 EDT = 15:30 UTC; 4.5 h when solved.
    - requester wait (not in PENDING): 1.5 h Friday + 10:00-14:00 Monday = 5.5 h, met."""
    tk = ticket(engine)
    tk.send(EventType.CREATED, ny(3, 6, 15), priority=Priority.NORMAL, status=Status.NEW)
    tk.send(EventType.AGENT_REPLIED, ny(3, 6, 16))
    tk.send(EventType.STATUS_CHANGED, ny(3, 6, 16, 30), status=Status.PENDING)
    tk.send(EventType.STATUS_CHANGED, ny(3, 9, 10), status=Status.ON_HOLD)
    tk.send(EventType.STATUS_CHANGED, ny(3, 9, 11), status=Status.OPEN)
    tk.send(EventType.AGENT_REPLIED, ny(3, 9, 13))
    tk.send(EventType.RESOLVED, ny(3, 9, 14))
    breaches = [(e.rule, e.reason, e.due_at) for e in tk.escalations if "breach" in e.rule]
    assert breaches == [
        ("sla:agent_work:breach", Reason.AGENT_WORK_BREACH, utc(3, 9, 15, 30)),
        ("sla:periodic_update#0:breach", Reason.PERIODIC_UPDATE_BREACH, utc(3, 9, 16)),
    ]
    outcomes = {(o.metric, o.round): (o.met, o.breached, o.business_elapsed) for o in tk.outcomes}
    assert outcomes[("periodic_update", 0)] == (True, True, 5 * H)
    assert outcomes[("pausable_update", 0)] == (True, False, 3.5 * H)
    assert outcomes[("agent_work", 0)] == (True, True, 4.5 * H)
    assert outcomes[("requester_wait", 0)] == (True, False, 5.5 * H)
    # the rounds the 13:00 reply started stop with the solve, not met
    assert outcomes[("periodic_update", 1)][:2] == (False, False)
    assert outcomes[("pausable_update", 1)][:2] == (False, False)


def test_update_clocks_start_at_the_first_agent_reply(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    tk.send(EventType.CREATED, ny(3, 4, 9), priority=Priority.URGENT, status=Status.NEW)
    assert set(tk.state.clocks) == {"first_response", "resolution", "requester_wait", "agent_work"}
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10))
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10, 30))
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 12))  # URGENT pausable update: 1 h
    rounds = [(o.metric, o.round, o.met) for o in tk.outcomes if o.metric == "pausable_update"]
    assert rounds == [("pausable_update", 0, True), ("pausable_update", 1, True)]
    assert tk.one("sla:pausable_update#1:breach").due_at == ny(3, 4, 11, 30)


def test_a_reopen_starts_the_per_cycle_clocks_again(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    tk.send(EventType.CREATED, ny(3, 4, 9), priority=Priority.NORMAL, status=Status.NEW)
    tk.send(EventType.RESOLVED, ny(3, 4, 10))
    tk.send(EventType.REOPENED, ny(3, 4, 11))
    clocks = tk.state.clocks
    assert (clocks["agent_work"].round, clocks["agent_work"].started_at) == (1, ny(3, 4, 11))
    assert clocks["requester_wait"].ended_at is None


def test_policies_without_these_targets_track_no_such_clock(
    default_engine: Engine, ticket: Any
) -> None:
    tk = ticket(default_engine)
    tk.send(EventType.CREATED, ny(3, 4, 9), priority=Priority.NORMAL, status=Status.NEW)
    tk.send(EventType.AGENT_REPLIED, ny(3, 4, 10))
    assert set(tk.state.clocks) <= {"first_response", "next_response", "resolution"}
