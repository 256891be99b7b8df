"""Ticket events for processor tests: instants around T0 (a Monday) and an event builder."""

from __future__ import annotations

from typing import Any

from streams.sla.events import EventType, TicketEvent, parse_ts

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = parse_ts("2026-03-02T15:00:00Z")  # a Monday; vip tickets run on the 24x7 calendar
NOW = T0 + 10 * 86_400_000  # the processor's wall clock (emitted_at, DLQ future check)


def event(ticket: str, eid: str, at: int, type_: str = "CREATED", **fields: Any) -> TicketEvent:
    fields.setdefault("customer_tier", "vip")
    fields.setdefault("channel", "email")
    fields.setdefault("category", "billing")
    return TicketEvent(eid, ticket, EventType(type_), at, **fields)
