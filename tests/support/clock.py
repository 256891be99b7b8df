"""Instants and a ticket's first event for the hand-computed engine tests (tests/streams/sla)."""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from streams.sla.events import EventType, Priority, Status

NEW_YORK = ZoneInfo("America/New_York")


def ny(month: int, day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of a New York wall-clock time in 2026 (EST or EDT, as that day has it)."""
    return int(datetime(2026, month, day, hour, minute, tzinfo=NEW_YORK).timestamp() * 1000)


def utc(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def created(tk: Any, at: int, **fields: Any) -> None:
    """The ticket's CREATED event: NORMAL priority and NEW status unless `fields` say else."""
    fields.setdefault("priority", Priority.NORMAL)
    fields.setdefault("status", Status.NEW)
    tk.send(EventType.CREATED, at, **fields)
