"""What the Zendesk and Freshdesk webhook mappings share: one normalized ticket update and the
step from it to a :class:`~streams.sla.events.TicketEvent`.

Pure module (no I/O). A help-desk webhook carries the ticket as it is now, plus, at best, what
changed; :func:`to_event` turns that snapshot into one event of the right type. Tags come as the
current set, so the caller passes the ticket's previous tag set
(``connectors.sources.ingest`` keeps it in
Redis) and :func:`to_event` computes ``tags_added``/``tags_removed``. The engine absorbs every
field an event carries whatever its type, so one event per webhook loses nothing.

Event ids are deterministic from the payload: ``<source>-<ticket>-<occurred_at ms>-<digest>``,
where the digest is a hash of the whole payload in canonical JSON. A sender that retries the same
webhook gets the same id (the worker drops the copy by event id), while two different webhooks
for the same ticket and instant do not collide. The id does not depend on the tag diff, which can
differ between a first attempt and its retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from streams.sla.events import (
    DONE_STATUSES,
    EventError,
    EventType,
    Priority,
    Status,
    TicketEvent,
    json_type,
    parse_ts,
)

__all__ = [
    "CHANNELS",
    "HelpdeskUpdate",
    "Ignored",
    "channel",
    "choice",
    "event_time",
    "ident",
    "obj",
    "payload_digest",
    "reply_type",
    "slug",
    "status_change_type",
    "tag_list",
    "text",
    "to_event",
]

#: Help-desk channel names -> the channels the policy matches on (phone, email, chat, social,
#: web). A name not listed here is kept, lower-cased.
CHANNELS: Final[Mapping[str, str]] = {
    "email": "email",
    "mail": "email",
    "outbound email": "email",
    "outbound_email": "email",
    "web": "web",
    "web_form": "web",
    "web_widget": "web",
    "help_center": "web",
    "portal": "web",
    "feedback widget": "web",
    "feedback_widget": "web",
    "forum": "web",
    "mobihelp": "web",
    "voice": "phone",
    "phone": "phone",
    "phone_call_inbound": "phone",
    "phone_call_outbound": "phone",
    "chat": "chat",
    "native_messaging": "chat",
    "messaging": "chat",
    "chat_transcript": "chat",
    "twitter": "social",
    "facebook": "social",
    "instagram_dm": "social",
    "whatsapp": "social",
}


class Ignored(NamedTuple):
    """A webhook that is valid but is no ticket event (e.g. an internal note): answered 202 with
    nothing produced, so the sender does not retry it."""

    reason: str


@dataclass(frozen=True)
class HelpdeskUpdate:
    """One webhook, normalized. ``type`` None: nothing says what changed; :func:`to_event` picks
    TAGS_CHANGED when the tags differ, else STATUS_CHANGED (a snapshot of the ticket)."""

    source: str
    ticket_id: str
    occurred_at: int
    digest: str
    type: EventType | None = None
    status: Status | None = None
    priority: Priority | None = None
    channel: str | None = None
    category: str | None = None
    customer_id: str | None = None
    group: str | None = None
    assignee_id: str | None = None
    csat: int | None = None
    tags: tuple[str, ...] | None = None  # the current tag set; None when the payload has none
    previous_tags: tuple[str, ...] | None = None  # when the payload itself says what they were
    attributes: Mapping[str, str] = field(default_factory=dict)


def to_event(update: HelpdeskUpdate, previous_tags: Collection[str] | None) -> TicketEvent:
    """The event for ``update``. ``previous_tags``: the ticket's tag set before this update as
    remembered by the caller (None: unknown, so every current tag counts as added). Tags the
    payload reports as previous win over the remembered ones."""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    if update.tags is not None:
        before = set(
            update.previous_tags if update.previous_tags is not None else previous_tags or ()
        )
        now = set(update.tags)
        added = tuple(tag for tag in update.tags if tag not in before)
        removed = tuple(sorted(before - now))
    etype = update.type
    if etype is None:
        etype = EventType.TAGS_CHANGED if added or removed else EventType.STATUS_CHANGED
    return TicketEvent(
        event_id=f"{update.source}-{update.ticket_id}-{update.occurred_at}-{update.digest}",
        ticket_id=update.ticket_id,
        type=etype,
        occurred_at=update.occurred_at,
        status=update.status,
        priority=update.priority,
        channel=update.channel,
        category=update.category,
        customer_id=update.customer_id,
        group=update.group,
        assignee_id=update.assignee_id,
        tags_added=added,
        tags_removed=removed,
        csat=update.csat,
        attributes={"source": update.source, **update.attributes},
    )


def status_change_type(new: Status | None, old: Status | None) -> EventType:
    """The event type of a status change: solved -> RESOLVED, closed -> CLOSED, out of
    solved/closed -> REOPENED, anything else STATUS_CHANGED."""
    if new is Status.SOLVED:
        return EventType.RESOLVED
    if new is Status.CLOSED:
        return EventType.CLOSED
    if old in DONE_STATUSES and new is not None:
        return EventType.REOPENED
    return EventType.STATUS_CHANGED


def reply_type(role: object, field: str) -> EventType:
    """AGENT_REPLIED or CUSTOMER_REPLIED from the comment author's role."""
    name = text(role, field)
    if name is None:
        raise EventError(field, "is required")
    key = name.lower().replace("-", "_")
    if key in ("agent", "admin", "light_agent"):
        return EventType.AGENT_REPLIED
    if key in ("end_user", "customer", "requester", "contact"):
        return EventType.CUSTOMER_REPLIED
    raise EventError(field, f"{name!r} is not one of agent, admin, end-user, customer")


def event_time(
    created: object, updated: object, created_field: str, updated_field: str
) -> tuple[int, bool]:
    """The event time (updated_at, else created_at) and whether this is a new ticket (only
    created_at, or both the same instant)."""
    created_ms = None if created is None else parse_ts(created, created_field)
    if updated is None:
        if created_ms is None:
            raise EventError(updated_field, "is required")
        return created_ms, True
    updated_ms = parse_ts(updated, updated_field)
    return updated_ms, created_ms == updated_ms


def payload_digest(payload: Mapping[str, Any]) -> str:
    """A short hash of the payload in canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()


# --------------------------------------------------------------------------------------------
# Field readers: each raises EventError naming the field's path in the payload.


def obj(value: object, field: str, required: bool = True) -> Mapping[str, Any]:
    """A JSON object (an absent optional one reads as empty)."""
    if value is None and not required:
        return {}
    if value is None:
        raise EventError(field, "is required")
    if not isinstance(value, Mapping):
        raise EventError(field, f"expected object, got {json_type(value)}")
    return value


def ident(value: object, field: str, required: bool = False) -> str | None:
    """An id given as a number or a non-empty string, as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None or value == "":
        if required:
            raise EventError(field, "is required")
        return None
    raise EventError(field, f"expected id (number or string), got {json_type(value)}")


def text(value: object, field: str) -> str | None:
    """An optional string; blank reads as absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(field, f"expected string, got {json_type(value)}")
    return value.strip() or None


def choice(value: object, field: str, table: Mapping[str | int, Any]) -> Any:
    """Look a name (case-insensitive) or number up in ``table``; blank, "-" and null are None."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "-")):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise EventError(field, f"expected string or number, got {json_type(value)}")
    key: str | int = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, str) and _is_number(key.removeprefix("-")):
        key = _number(key, field)
    if key not in table:
        names = ", ".join(str(k) for k in table if isinstance(k, str)) or ", ".join(map(str, table))
        raise EventError(field, f"{value!r} is not one of {names}")
    return table[key]


MAX_DIGITS: Final = 18  # codes and enum numbers are small; int() of 5000 digits raises


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _number(text: str, field: str) -> int:
    """A numeric code given as a string; a number no field can hold is the sender's error."""
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise EventError(field, f"{text[:24]}... is not a number this field can hold")
    return int(text)


def tag_list(value: object, field: str, sep: str | None) -> tuple[str, ...] | None:
    """Tags as a JSON array, or as one string split on ``sep`` (None: whitespace), the way
    placeholders render them. Duplicates and blanks are dropped, order kept."""
    if value is None:
        return None
    if isinstance(value, str):
        items: list[object] = list(value.split(sep))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise EventError(field, f"expected array of strings or a string, got {json_type(value)}")
    tags: dict[str, None] = {}
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise EventError(f"{field}[{i}]", f"expected string, got {json_type(item)}")
        if item.strip():
            tags[item.strip()] = None
    return tuple(tags)


def channel(value: object, field: str, numbers: Mapping[int, str] | None = None) -> str | None:
    """A channel through :data:`CHANNELS` (``numbers`` for numeric source codes)."""
    if numbers is not None and isinstance(value, int | str) and _is_number(str(value).strip()):
        code = _number(str(value).strip(), field)
        if code not in numbers:
            raise EventError(field, f"{value!r} is not a known source code")
        return numbers[code]
    name = text(value, field)
    if name is None:
        return None
    key = name.lower()
    return CHANNELS.get(key, CHANNELS.get(key.replace(" ", "_"), key))


def slug(value: object, field: str) -> str | None:
    """``"Order Status"`` -> ``"order_status"`` (the form categories take in policies)."""
    name = text(value, field)
    return None if name is None else "_".join(name.lower().split())
