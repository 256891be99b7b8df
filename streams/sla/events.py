"""Ticket lifecycle events: the input contract of the SLA core.

Pure module: no I/O and no clock. ``event_from_dict`` validates one decoded JSON object (or an
Avro record decoded to a dict) and raises :class:`EventError` naming the offending field;
``event_to_dict`` writes the canonical JSON form. Instants are ``int`` epoch milliseconds UTC.

The checks are hand-written rather than pydantic because the backtest decodes every event of a
month of history: ``event_from_dict`` has to stay in the low microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from streams.sla.frozen import fast_constructor

__all__ = [
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "PRIORITY_RANK",
    "EventError",
    "EventType",
    "Priority",
    "Status",
    "TicketEvent",
    "event_from_dict",
    "event_to_dict",
    "format_ts",
    "json_type",
    "parse_ts",
]


class EventType(StrEnum):
    CREATED = "CREATED"
    ASSIGNED = "ASSIGNED"
    STATUS_CHANGED = "STATUS_CHANGED"
    PRIORITY_CHANGED = "PRIORITY_CHANGED"
    TAGS_CHANGED = "TAGS_CHANGED"
    AGENT_REPLIED = "AGENT_REPLIED"
    CUSTOMER_REPLIED = "CUSTOMER_REPLIED"
    TRANSFERRED = "TRANSFERRED"
    RESOLVED = "RESOLVED"
    REOPENED = "REOPENED"
    CLOSED = "CLOSED"
    CSAT_RECEIVED = "CSAT_RECEIVED"
    # Someone took an escalation: attributes carry "escalation_id" (none: every open one of
    # the ticket) and "acknowledged_by". On Avro it travels as TAGS_CHANGED plus a marker
    # attribute (schemas/records.py), since old readers' EventType enum has no default.
    ESCALATION_ACKNOWLEDGED = "ESCALATION_ACKNOWLEDGED"


class Status(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    PENDING = "PENDING"
    ON_HOLD = "ON_HOLD"
    SOLVED = "SOLVED"
    CLOSED = "CLOSED"


class Priority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


PRIORITY_RANK: Final[Mapping[Priority, int]] = {
    Priority.LOW: 0,
    Priority.NORMAL: 1,
    Priority.HIGH: 2,
    Priority.URGENT: 3,
}
# A ticket whose work is done: its clocks stop, and any other status reopens it.
DONE_STATUSES: Final = (Status.SOLVED, Status.CLOSED)
# Waiting on someone other than the agent: the default pause statuses, and where agent_work
# stands still.
WAITING_STATUSES: Final = (Status.PENDING, Status.ON_HOLD)
# The status an event's type sets, whatever its `status` field says.
IMPLIED_STATUS: Final[Mapping[EventType, Status]] = {
    EventType.RESOLVED: Status.SOLVED,
    EventType.CLOSED: Status.CLOSED,
    EventType.REOPENED: Status.OPEN,
}


@dataclass(frozen=True, slots=True)
class TicketEvent:
    event_id: str
    ticket_id: str
    type: EventType
    occurred_at: int  # epoch ms UTC
    status: Status | None = None
    priority: Priority | None = None
    channel: str | None = None
    category: str | None = None
    customer_id: str | None = None
    customer_tier: str | None = None
    group: str | None = None
    assignee_id: str | None = None
    support_level: int | None = None  # 0..4
    tags_added: tuple[str, ...] = ()
    tags_removed: tuple[str, ...] = ()
    csat: int | None = None  # 1..5
    # Left out of the hash (a dict is unhashable) but part of equality.
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)


class EventError(ValueError):
    """A field of an event is missing or invalid. ``field`` is a dotted path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[EventError], tuple[str, str]]:
        return (EventError, (self.field, self.reason))


# --------------------------------------------------------------------------------------------
# Timestamps

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIMESTAMP_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
# 2200-01-01T00:00:00Z (exclusive): business-time arithmetic months past any event stays well
# inside what datetime can hold; a later instant is a typo or an overflow, not a ticket
MAX_TIMESTAMP_MS: Final = 7_258_118_400_000


_DAY_MS: Final = 86_400_000
_UNIX_EPOCH_ORDINAL: Final = 719_163  # date(1970, 1, 1).toordinal()
_day_prefix_cache: dict[int, str] = {}


def _epoch_ms(since_epoch: timedelta) -> int:
    """Whole milliseconds of a timedelta, floored like ``// timedelta(milliseconds=1)``,
    which costs several times this sum (it goes through one big integer of microseconds)."""
    return (
        since_epoch.days * _DAY_MS + since_epoch.seconds * 1000 + since_epoch.microseconds // 1000
    )


def format_ts(ms: int) -> str:
    """Epoch milliseconds -> ISO-8601 UTC with milliseconds, e.g. ``2026-11-02T09:15:00.123Z``."""
    day, rem = divmod(ms, _DAY_MS)
    prefix = _day_prefix_cache.get(day)
    if prefix is None:
        prefix = date.fromordinal(_UNIX_EPOCH_ORDINAL + day).isoformat() + "T"
        if len(_day_prefix_cache) < 100_000:  # memo only; bounded
            _day_prefix_cache[day] = prefix
    seconds, milli = divmod(rem, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


def parse_ts(value: object, field: str = "occurred_at") -> int:
    """Epoch milliseconds from an ``int`` (epoch ms), an ISO-8601 string with ``Z``/offset or
    an aware ``datetime``.

    Sub-millisecond digits are truncated. Raises :class:`EventError` for anything else, for
    naive ISO strings, and for instants before 2000-01-01 (almost always seconds passed as ms).
    """
    if type(value) is int:
        ms = value
    elif type(value) is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise EventError(field, f"{value!r} is not an ISO-8601 timestamp") from None
        if dt.tzinfo is None:
            raise EventError(field, f"{value!r} needs a UTC offset (e.g. 'Z' or '+00:00')")
        ms = _epoch_ms(dt - _EPOCH)
    elif isinstance(value, int) and not isinstance(value, bool):  # int subclass
        ms = int(value)
    elif isinstance(value, datetime):  # e.g. an Avro timestamp-millis decoded by fastavro
        if value.tzinfo is None:
            raise EventError(field, f"{value.isoformat()!r} needs a UTC offset")
        ms = _epoch_ms(value - _EPOCH)
    else:
        raise EventError(
            field,
            f"expected epoch milliseconds (integer) or ISO-8601 string, got {json_type(value)}",
        )
    if ms < MIN_TIMESTAMP_MS:
        raise EventError(field, f"{value!r} is before 2000-01-01 (seconds instead of ms?)")
    if ms >= MAX_TIMESTAMP_MS:
        raise EventError(field, f"{value!r} is after 2199-12-31")
    return ms


# --------------------------------------------------------------------------------------------
# Decoding


def json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages a person reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# Bounds that keep one ticket's state small whatever its events carry (beyond: the DLQ)
MAX_EVENT_TAGS: Final = 64
MAX_TAG_LENGTH: Final = 100

_EVENT_TYPES: Final[dict[str, EventType]] = {m.value: m for m in EventType}
# members by value: a lookup, where calling the enum runs Python code (state rows read these)
STATUS_OF: Final[dict[str, Status]] = {m.value: m for m in Status}
PRIORITY_OF: Final[dict[str, Priority]] = {m.value: m for m in Priority}

_STR_FIELDS: Final = (
    "channel",
    "category",
    "customer_id",
    "customer_tier",
    "group",
    "assignee_id",
)
_KNOWN_FIELDS: Final = frozenset(
    (
        "event_id",
        "ticket_id",
        "type",
        "occurred_at",
        "status",
        "priority",
        *_STR_FIELDS,
        "support_level",
        "tags_added",
        "tags_removed",
        "csat",
        "attributes",
    )
)


def _enum_error(field: str, value: object, allowed: Mapping[str, object]) -> EventError:
    if not isinstance(value, str):
        return EventError(field, f"expected string, got {json_type(value)}")
    return EventError(field, f"{value!r} is not one of {', '.join(allowed)}")


def _required_id(name: str, value: object) -> str:
    if value is None:
        raise EventError(name, "is required")
    if not isinstance(value, str):
        raise EventError(name, f"expected string, got {json_type(value)}")
    if not value:
        raise EventError(name, "must not be empty")
    return str(value)


def _optional_str(name: str, value: object) -> str | None:
    if value == "":
        return None
    if not isinstance(value, str):
        raise EventError(name, f"expected string, got {json_type(value)}")
    return str(value)


def _small_int(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventError(name, f"expected integer, got {json_type(value)}")
        value = int(value)
    if not low <= value <= high:
        raise EventError(name, f"{value} is outside {low}..{high}")
    return value


def _tags(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise EventError(name, f"expected array of strings, got {json_type(value)}")
    if len(value) > MAX_EVENT_TAGS:
        raise EventError(name, f"{len(value)} tags, at most {MAX_EVENT_TAGS} per event")
    for i, tag in enumerate(value):
        if not isinstance(tag, str):
            raise EventError(f"{name}[{i}]", f"expected string, got {json_type(tag)}")
        if not tag:
            raise EventError(f"{name}[{i}]", "must not be empty")
        if len(tag) > MAX_TAG_LENGTH:
            raise EventError(f"{name}[{i}]", f"{len(tag)} characters, at most {MAX_TAG_LENGTH}")
    return tuple(value)


def _attributes(value: object) -> dict[str, str]:
    if type(value) is not dict and not isinstance(value, Mapping):  # the ABC check is slow
        raise EventError("attributes", f"expected object of strings, got {json_type(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise EventError("attributes", f"keys must be strings, got {json_type(key)}")
        if not isinstance(item, str):
            raise EventError(f"attributes.{key}", f"expected string, got {json_type(item)}")
    return dict(value)


def _build_event(
    event_id: str,
    ticket_id: str,
    type: EventType,
    occurred_at: int,
    status: Status | None = None,
    priority: Priority | None = None,
    channel: str | None = None,
    category: str | None = None,
    customer_id: str | None = None,
    customer_tier: str | None = None,
    group: str | None = None,
    assignee_id: str | None = None,
    support_level: int | None = None,
    tags_added: tuple[str, ...] = (),
    tags_removed: tuple[str, ...] = (),
    csat: int | None = None,
    attributes: Mapping[str, str] | None = None,
) -> TicketEvent:
    """TicketEvent's constructor in the compiled build (streams.sla.frozen: `native`)."""
    e = TicketEvent.__new__(TicketEvent)
    e.event_id = event_id  # type: ignore[misc]
    e.ticket_id = ticket_id  # type: ignore[misc]
    e.type = type  # type: ignore[misc]
    e.occurred_at = occurred_at  # type: ignore[misc]
    e.status = status  # type: ignore[misc]
    e.priority = priority  # type: ignore[misc]
    e.channel = channel  # type: ignore[misc]
    e.category = category  # type: ignore[misc]
    e.customer_id = customer_id  # type: ignore[misc]
    e.customer_tier = customer_tier  # type: ignore[misc]
    e.group = group  # type: ignore[misc]
    e.assignee_id = assignee_id  # type: ignore[misc]
    e.support_level = support_level  # type: ignore[misc]
    e.tags_added = tags_added  # type: ignore[misc]
    e.tags_removed = tags_removed  # type: ignore[misc]
    e.csat = csat  # type: ignore[misc]
    e.attributes = {} if attributes is None else attributes  # type: ignore[misc]
    return e


_new_event: Final = fast_constructor(TicketEvent, _build_event)  # see streams.sla.frozen


def event_from_dict(data: Mapping[str, Any]) -> TicketEvent:
    """Validate a decoded event and build a :class:`TicketEvent`.

    Optional fields may be absent or ``null``; an empty string in an optional string field is
    read as absent (the canonical form never writes one). Unknown top-level fields are errors.
    """
    record: dict[str, Any]
    if type(data) is dict:  # a dict typed as one: compiled, its get() is a direct C call
        record = data
    elif isinstance(data, Mapping):  # an ABC check costs ~0.2 us
        record = dict(data)
    else:
        raise EventError("event", f"expected a JSON object, got {json_type(data)}")
    if not _KNOWN_FIELDS.issuperset(record):
        unknown = sorted(str(k) for k in record if k not in _KNOWN_FIELDS)
        raise EventError(unknown[0], "unknown field")

    event_id = record.get("event_id")
    if type(event_id) is not str or not event_id:
        event_id = _required_id("event_id", event_id)
    ticket_id = record.get("ticket_id")
    if type(ticket_id) is not str or not ticket_id:
        ticket_id = _required_id("ticket_id", ticket_id)

    value = record.get("type")
    etype = _EVENT_TYPES.get(value) if type(value) is str else None
    if etype is None:
        if value is None:
            raise EventError("type", "is required")
        raise _enum_error("type", value, _EVENT_TYPES)

    value = record.get("occurred_at")
    if value is None:
        raise EventError("occurred_at", "is required")
    occurred_at = parse_ts(value)

    status = priority = channel = category = customer_id = customer_tier = None
    group = assignee_id = support_level = csat = None
    tags_added: tuple[str, ...] = ()
    tags_removed: tuple[str, ...] = ()
    attributes: dict[str, str] = {}
    if len(record) > 4:  # only the four required fields is the common case (replies)
        value = record.get("status")
        if value is not None:
            status = STATUS_OF.get(value) if type(value) is str else None
            if status is None:
                raise _enum_error("status", value, STATUS_OF)
        value = record.get("priority")
        if value is not None:
            priority = PRIORITY_OF.get(value) if type(value) is str else None
            if priority is None:
                raise _enum_error("priority", value, PRIORITY_OF)
        channel = record.get("channel")
        if channel is not None and (type(channel) is not str or not channel):
            channel = _optional_str("channel", channel)
        category = record.get("category")
        if category is not None and (type(category) is not str or not category):
            category = _optional_str("category", category)
        customer_id = record.get("customer_id")
        if customer_id is not None and (type(customer_id) is not str or not customer_id):
            customer_id = _optional_str("customer_id", customer_id)
        customer_tier = record.get("customer_tier")
        if customer_tier is not None and (type(customer_tier) is not str or not customer_tier):
            customer_tier = _optional_str("customer_tier", customer_tier)
        group = record.get("group")
        if group is not None and (type(group) is not str or not group):
            group = _optional_str("group", group)
        assignee_id = record.get("assignee_id")
        if assignee_id is not None and (type(assignee_id) is not str or not assignee_id):
            assignee_id = _optional_str("assignee_id", assignee_id)
        value = record.get("support_level")
        if value is not None:
            support_level = _small_int("support_level", value, 0, 4)
        value = record.get("csat")
        if value is not None:
            csat = _small_int("csat", value, 1, 5)
        value = record.get("tags_added")
        if value is not None:
            tags_added = _tags("tags_added", value)
        value = record.get("tags_removed")
        if value is not None:
            tags_removed = _tags("tags_removed", value)
        value = record.get("attributes")
        if value is not None:
            attributes = _attributes(value)

    return _new_event(
        event_id, ticket_id, etype, occurred_at, status, priority, channel, category,
        customer_id, customer_tier, group, assignee_id, support_level, tags_added, tags_removed,
        csat, attributes,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Encoding


def event_to_dict(event: TicketEvent) -> dict[str, Any]:
    """Canonical JSON-ready form: enums as strings, ``occurred_at`` as ISO-8601 UTC with ms,
    ``None``/empty optional fields omitted (``support_level`` 0 is kept)."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "ticket_id": event.ticket_id,
        "type": event.type.value,
        "occurred_at": format_ts(event.occurred_at),
    }
    if event.status is not None:
        out["status"] = event.status.value
    if event.priority is not None:
        out["priority"] = event.priority.value
    if event.channel:
        out["channel"] = event.channel
    if event.category:
        out["category"] = event.category
    if event.customer_id:
        out["customer_id"] = event.customer_id
    if event.customer_tier:
        out["customer_tier"] = event.customer_tier
    if event.group:
        out["group"] = event.group
    if event.assignee_id:
        out["assignee_id"] = event.assignee_id
    if event.support_level is not None:
        out["support_level"] = event.support_level
    if event.tags_added:
        out["tags_added"] = list(event.tags_added)
    if event.tags_removed:
        out["tags_removed"] = list(event.tags_removed)
    if event.csat is not None:
        out["csat"] = event.csat
    if event.attributes:
        out["attributes"] = dict(event.attributes)
    return out
