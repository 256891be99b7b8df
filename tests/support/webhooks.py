"""The records the webhook sink gets: a fresh escalation for a team."""

from __future__ import annotations

import time
from typing import Any

from schemas.records import escalation_to_avro
from streams.sla.actions import Escalation, Kind, Reason, action_id


def escalation(ticket: str, team: str, level: int = 2) -> dict[str, Any]:
    now = int(time.time() * 1000)
    rule = f"matrix.L{level}"
    esc = Escalation(
        escalation_id=action_id(ticket, rule, level, 0), ticket_id=ticket,
        kind=Kind.HIERARCHICAL, level=level, from_level=level - 1, target=team,
        reason=Reason.RESOLUTION_BREACH, policy="standard", rule=rule,
        sla_metric="resolution", due_at=now - 1000, fired_at=now, event_id=None, cycle=0,
    )  # fmt: skip
    return escalation_to_avro(esc, emitted_at=now)
