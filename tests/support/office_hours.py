"""A hand-computed case: a ticket over a weekend and a DST change under office hours (New York,
Mon-Fri 09:00-17:00), with a pause; its POLICY, MATRIX and HISTORY (tests/streams/tools/
test_explain.py computes its timeline)."""

from __future__ import annotations

MATRIX = """
escalation_matrix:
  levels:
    - {level: 1, name: agent, contact: agents}
    - {level: 2, name: lead, contact: team-lead, allowed: 1h}
    - {level: 3, name: manager, contact: support-manager}
  executive: {contact: exec}
"""


# Office hours 09:00-17:00 New York, Mon-Fri. DST starts Sun 2026-03-08 (EST -> EDT).
POLICY = (
    """
version: 1
calendars:
  office:
    timezone: America/New_York
    hours:
      mon-fri: "09:00-17:00"
sla_policies:
  - name: vip
    match: {tier: [vip], channel: [email, phone]}
    calendar: 24x7
    targets:
      first_response: 1h
      resolution: 8h
    warn_at: [0.5]
  - name: standard
    calendar: office
    targets:
      first_response: 2h
      resolution: 16h
    warn_at: [0.75]
"""
    + MATRIX
)


# Created Friday 16:00 EST, one hour before closing; PENDING Monday 10:00-11:00 EDT.
HISTORY = [
    {"event_id": "e1", "ticket_id": "T1", "type": "CREATED", "occurred_at": "2026-03-06T21:00:00Z",
     "status": "NEW", "priority": "NORMAL", "channel": "email", "customer_tier": "standard"},
    {"event_id": "e2", "ticket_id": "T1", "type": "STATUS_CHANGED",
     "occurred_at": "2026-03-09T14:00:00Z", "status": "PENDING"},
    {"event_id": "e3", "ticket_id": "T1", "type": "CUSTOMER_REPLIED",
     "occurred_at": "2026-03-09T15:00:00Z", "status": "OPEN"},
    {"event_id": "e4", "ticket_id": "T1", "type": "AGENT_REPLIED",
     "occurred_at": "2026-03-09T17:30:00Z"},
]  # fmt: skip
