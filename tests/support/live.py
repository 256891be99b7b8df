"""Events for workers on the wall clock: now in epoch ms and a CREATED event."""

from __future__ import annotations

import time
from typing import Any

from streams.sla.events import EventType, TicketEvent


def now_ms() -> int:
    return int(time.time() * 1000)


def event(ticket: str, eid: str, at: int, **fields: Any) -> TicketEvent:
    return TicketEvent(event_id=eid, ticket_id=ticket, type=EventType.CREATED, occurred_at=at,
                       **fields)  # fmt: skip
