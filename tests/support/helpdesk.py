"""Desk credentials and the records the helpdesk write-back gets (at a fixed instant)."""

from __future__ import annotations

from schemas.records import escalation_to_avro, priority_bump_to_avro
from streams.sla.actions import Escalation, Kind, PriorityBump, Reason, action_id

ZENDESK_USER = ("agent@example.com", "zd-token-0123456789")
FRESHDESK_KEY = "fd-key-0123456789"


def escalation(ticket: str, level: int = 2, reason: Reason = Reason.RESOLUTION_BREACH) -> dict:
    rule = f"matrix.L{level}"
    esc = Escalation(
        escalation_id=action_id(ticket, rule, level, 0), ticket_id=ticket,
        kind=Kind.HIERARCHICAL, level=level, from_level=level - 1, target="support-manager",
        reason=reason, policy="standard", rule=rule, sla_metric="resolution",
        due_at=1_790_000_000_000, fired_at=1_790_000_000_000, event_id=None, cycle=0,
    )  # fmt: skip
    return escalation_to_avro(esc, emitted_at=1_790_000_000_000)


def bump(ticket: str, escalation_id: str, new: str = "URGENT") -> dict:
    record = PriorityBump(ticket, "NORMAL", new, Reason.CHURN_RISK, escalation_id,
                          1_790_000_000_000, None)  # fmt: skip
    return priority_bump_to_avro(record, emitted_at=1_790_000_000_000)
