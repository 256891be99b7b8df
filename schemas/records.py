"""Conversions between the core's records and Avro dicts, and the dead-letter classifier.

Avro dicts hold enums as strings and timestamps as ``int`` epoch milliseconds (the codec strips
the ``timestamp-millis`` logical type, see :mod:`schemas.codec`). Decoding a TicketEvent goes
through :func:`streams.sla.events.event_from_dict`, so JSON Lines and Avro share one validation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from schemas.codec import AvroCodec, DecodeError, ErrorKind
from streams.sla.actions import Escalation, PriorityBump, Reminder
from streams.sla.board import BoardEntry, BoardRecord, BoardView, Bumped, Fired, Left, WarningEntry
from streams.sla.events import (
    MIN_TIMESTAMP_MS,
    EventError,
    EventType,
    TicketEvent,
    event_from_dict,
)

__all__ = [
    "DAY_MS",
    "DEAD_LETTER_MAX_ORIGINAL",
    "EVENT_TYPE_ATTRIBUTE",
    "ErrorKind",
    "Rejected",
    "dead_letter",
    "decode_ticket_event",
    "escalation_to_avro",
    "ops_alert",
    "ops_alert_id",
    "priority_bump_to_avro",
    "reminder_to_avro",
    "ticket_board_from_avro",
    "ticket_board_to_avro",
    "ticket_event_from_avro",
    "ticket_event_to_avro",
]

DAY_MS: Final = 86_400_000
#: An OVERSIZED message keeps only this many leading bytes in the dead letter, so the DLQ message
#: itself stays under the broker's message size limit.
DEAD_LETTER_MAX_ORIGINAL: Final = 64 * 1024
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
#: Event types newer than the Avro EventType enum travel as TAGS_CHANGED (with no tags: a
#: no-op for a reader that does not know them) and this attribute naming the real type. Adding
#: the enum symbol is not compatible: readers of TicketEvent v1/v2 have no enum `default`, so
#: they could not read a record carrying the new symbol (FULL_TRANSITIVE fails).
EVENT_TYPE_ATTRIBUTE: Final = "escalator.event_type"
_CARRIER: Final = EventType.TAGS_CHANGED
_CARRIED: Final = {EventType.ESCALATION_ACKNOWLEDGED.value: EventType.ESCALATION_ACKNOWLEDGED}


class Rejected(ValueError):
    """An input message that goes to the DLQ: ``kind`` (ErrorKind), ``reason``, ``field``."""

    def __init__(self, kind: ErrorKind, reason: str, field: str | None = None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{kind.value}{where}: {reason}")
        self.kind = kind
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[type[Rejected], tuple[ErrorKind, str, str | None]]:
        return (Rejected, (self.kind, self.reason, self.field))


# --------------------------------------------------------------------------------------------
# TicketEvent


def ticket_event_to_avro(event: TicketEvent) -> dict[str, Any]:
    """Avro dict of ``event`` (every field present; absent optionals are ``None``)."""
    kind = event.type.value
    attributes = dict(event.attributes)
    if kind in _CARRIED:
        attributes[EVENT_TYPE_ATTRIBUTE] = kind
        kind = _CARRIER.value
    return {
        "event_id": event.event_id,
        "ticket_id": event.ticket_id,
        "type": kind,
        "occurred_at": event.occurred_at,
        "status": None if event.status is None else event.status.value,
        "priority": None if event.priority is None else event.priority.value,
        "channel": event.channel,
        "category": event.category,
        "customer_id": event.customer_id,
        "customer_tier": event.customer_tier,
        "group": event.group,
        "assignee_id": event.assignee_id,
        "support_level": event.support_level,
        "tags_added": list(event.tags_added),
        "tags_removed": list(event.tags_removed),
        "csat": event.csat,
        "attributes": attributes,
    }


def ticket_event_from_avro(record: Mapping[str, Any]) -> TicketEvent:
    """Validate a decoded Avro dict (raises :class:`EventError`). A ``datetime`` occurred_at
    (from a reader that kept the logical type) is accepted and converted to epoch ms."""
    occurred_at = record.get("occurred_at")
    if isinstance(occurred_at, datetime):
        record = {**record, "occurred_at": _datetime_ms(occurred_at)}
    return _native(event_from_dict(record))


def _native(event: TicketEvent) -> TicketEvent:
    """The event with the type it carries in EVENT_TYPE_ATTRIBUTE, if it carries a known one."""
    if event.type is not _CARRIER:
        return event
    carried = _CARRIED.get(event.attributes.get(EVENT_TYPE_ATTRIBUTE, ""))
    if carried is None:
        return event
    attributes = {k: v for k, v in event.attributes.items() if k != EVENT_TYPE_ATTRIBUTE}
    return replace(event, type=carried, attributes=attributes)


def _datetime_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise EventError("occurred_at", f"{value.isoformat()} has no time zone")
    return (value - _EPOCH) // _ONE_MS


def decode_ticket_event(
    raw: bytes | None,
    now_ms: int,
    codec: AvroCodec,
    max_bytes: int,
    max_future_ms: int = DAY_MS,
) -> TicketEvent:
    """Decode and validate one ``ticket-events`` message value or raise :class:`Rejected`.

    Order of checks: size (before touching the bytes), wire format and schema id, Avro body,
    ``occurred_at`` range (before 2000-01-01 or more than ``max_future_ms`` after ``now_ms``:
    TIMESTAMP_OUT_OF_RANGE), then field validation (INVALID_FIELD with the field path).
    """
    if raw is not None and len(raw) > max_bytes:
        raise Rejected(ErrorKind.OVERSIZED, f"{len(raw)} bytes, limit is {max_bytes}")
    try:
        record = codec.decode(raw)  # type: ignore[arg-type]  # None -> UNDECODABLE
    except DecodeError as exc:
        raise Rejected(exc.kind, exc.reason) from None
    occurred_at = record.get("occurred_at")
    if type(occurred_at) is int and not (MIN_TIMESTAMP_MS <= occurred_at <= now_ms + max_future_ms):
        if occurred_at < MIN_TIMESTAMP_MS:
            reason = f"{occurred_at} is before 2000-01-01 (seconds instead of ms?)"
        else:
            ahead = (occurred_at - now_ms) / 60_000
            reason = (
                f"future_timestamp: {occurred_at} is {ahead:,.1f} min ahead of the worker's clock"
                f" (limit {max_future_ms / 60_000:g} min)"
            )
        raise Rejected(ErrorKind.TIMESTAMP_OUT_OF_RANGE, reason, "occurred_at")
    try:
        return _native(event_from_dict(record))
    except EventError as exc:
        raise Rejected(ErrorKind.INVALID_FIELD, exc.reason, exc.field) from None


# --------------------------------------------------------------------------------------------
# Actions


def escalation_to_avro(escalation: Escalation, emitted_at: int) -> dict[str, Any]:
    """Avro dict of an :class:`Escalation`; ``emitted_at`` is the worker's wall clock (ms)."""
    return {
        "escalation_id": escalation.escalation_id,
        "ticket_id": escalation.ticket_id,
        "kind": str(escalation.kind),
        "level": escalation.level,
        "from_level": escalation.from_level,
        "target": escalation.target,
        "reason": str(escalation.reason),
        "policy": escalation.policy,
        "rule": escalation.rule,
        "sla_metric": escalation.sla_metric,
        "due_at": escalation.due_at,
        "fired_at": escalation.fired_at,
        "emitted_at": emitted_at,
        "event_id": escalation.event_id,
        "cycle": escalation.cycle,
    }


def ticket_board_to_avro(record: BoardRecord) -> dict[str, Any]:
    """Avro dict of a TicketBoard record (the ticket id is the record's, not repeated inside).
    A union's record branch is named (a tuple), which spares fastavro matching it: a third of
    the encoding time."""
    view = record.view
    left = record.left
    return {
        "ticket_id": view.ticket_id,
        "resolved": view.resolved,
        "entry": None if view.entry is None else (_ENTRY, _without_ticket(view.entry)),
        "warning": None if view.warning is None else (_WARNING, _without_ticket(view.warning)),
        "fired": [_without_ticket(f) for f in record.fired],
        "bumps": [_fields(b) for b in record.bumps],
        "left": None if left is None else (_LEFT, _fields(left)),
    }


def ticket_board_from_avro(record: Mapping[str, Any]) -> BoardRecord:
    """A decoded TicketBoard record (raises KeyError or TypeError on a malformed dict)."""
    ticket_id = record["ticket_id"]
    entry, warning, left = record["entry"], record["warning"], record["left"]
    return BoardRecord(
        BoardView(
            ticket_id,
            bool(record["resolved"]),
            None if entry is None else BoardEntry(ticket_id, **entry),
            None if warning is None else WarningEntry(ticket_id, **warning),
        ),
        tuple(Fired(ticket_id=ticket_id, **f) for f in record["fired"]),
        tuple(Bumped(**b) for b in record["bumps"]),
        None if left is None else Left(**left),
    )


_ENTRY, _WARNING, _LEFT = (
    f"io.escalator.v1.{n}" for n in ("BoardEntry", "BoardWarning", "BoardLeft")
)


def _fields(value: Bumped | Left) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in fields(value)}  # compiled: no __slots__


def _without_ticket(value: BoardEntry | WarningEntry | Fired) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in fields(value) if f.name != "ticket_id"}


def priority_bump_to_avro(bump: PriorityBump, emitted_at: int) -> dict[str, Any]:
    """Avro dict of a :class:`PriorityBump`."""
    return {
        "ticket_id": bump.ticket_id,
        "old_priority": str(bump.old_priority),
        "new_priority": str(bump.new_priority),
        "reason": str(bump.reason),
        "escalation_id": bump.escalation_id,
        "fired_at": bump.fired_at,
        "emitted_at": emitted_at,
        "event_id": bump.event_id,
    }


def reminder_to_avro(reminder: Reminder, emitted_at: int) -> dict[str, Any]:
    """Avro dict of a :class:`Reminder`."""
    return {
        "reminder_id": reminder.reminder_id,
        "ticket_id": reminder.ticket_id,
        "target": reminder.target,
        "reason": str(reminder.reason),
        "rule": reminder.rule,
        "due_at": reminder.due_at,
        "fired_at": reminder.fired_at,
        "emitted_at": emitted_at,
    }


def ops_alert_id(kind: str, queue: str, window_start: int, window_end: int) -> str:
    """Deterministic alert id: the same window of the same queue always has the same id."""
    key = f"{kind}\x1f{queue}\x1f{window_start}\x1f{window_end}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()


def ops_alert(
    kind: str,
    queue: str,
    window_start: int,
    window_end: int,
    observed: float,
    baseline: float,
    threshold: float,
    message: str,
    emitted_at: int,
) -> dict[str, Any]:
    """Avro dict of an ``OpsAlert`` (kind: VOLUME_SURGE, BREACH_RATE_SPIKE, BACKLOG_GROWTH)."""
    return {
        "alert_id": ops_alert_id(str(kind), queue, window_start, window_end),
        "kind": str(kind),
        "queue": queue,
        "window_start": window_start,
        "window_end": window_end,
        "observed": float(observed),
        "baseline": float(baseline),
        "threshold": float(threshold),
        "message": message,
        "emitted_at": emitted_at,
    }


def dead_letter(
    raw: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    kind: ErrorKind | str,
    error: str,
    field: str | None,
    at: int,
) -> dict[str, Any]:
    """Avro dict of a ``DeadLetter``. A tombstone (``raw`` None) is stored as empty bytes; an
    OVERSIZED value keeps its first :data:`DEAD_LETTER_MAX_ORIGINAL` bytes (the size is in
    ``error``)."""
    original = b"" if raw is None else bytes(raw)
    if kind == ErrorKind.OVERSIZED and len(original) > DEAD_LETTER_MAX_ORIGINAL:
        original = original[:DEAD_LETTER_MAX_ORIGINAL]
    return {
        "original": original,
        "original_key": None if key is None else bytes(key),
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "error_kind": str(kind),
        "error": error,
        "field": field,
        "dead_lettered_at": at,
    }
