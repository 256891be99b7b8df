"""Freshdesk-style ticket webhooks -> :class:`~connectors.sources.helpdesk.HelpdeskUpdate` (pure).

A Freshdesk automation rule's webhook action sends a body the admin writes with placeholders.
The shape ``escalator ingest`` reads on ``POST /v1/webhooks/freshdesk``::

    {"freshdesk_webhook": {
      "ticket_id": 4711,                          # required
      "ticket_status": "Open",                    # Open|Pending|Resolved|Closed|Waiting on
                                                  #   Customer|Waiting on Third Party, or 2..7
      "ticket_priority": "High",                  # Low|Medium|High|Urgent, or 1..4
      "ticket_tags": "vip, refund",               # or ["vip", "refund"]
      "ticket_group_name": "Billing",
      "ticket_source": "Email",                   # Email|Portal|Phone|Chat|Twitter|..., or 1..13
      "ticket_type": "Order Status",              # -> category "order_status"
      "ticket_requester_id": 9001,                # or "ticket_requester_email"
      "ticket_agent_id": 77,                      # or "ticket_agent_email"
      "ticket_satisfaction_rating": 103,          # CSAT: 103..-103 or 1..5
      "ticket_created_at": "2026-11-02T09:15:00Z",
      "ticket_updated_at": "2026-11-02T09:40:00Z",   # ISO-8601 with offset: the event time
      "triggered_event": "{status:{from:Open,to:Resolved}}"
    }}

``triggered_event`` is the ``{key:value}`` / ``{key:{from:X,to:Y}}`` text Freshdesk observer
rules send (or the same as a JSON object). Keys: ``ticket_action`` (created; updated = infer;
deleted and spam: CLOSED with attributes.removed, the ticket leaves tracking), ``status``
(RESOLVED, CLOSED, REOPENED or STATUS_CHANGED from from/to), ``priority``,
``group_id``/``group`` (TRANSFERRED), ``responder_id``/``agent`` (ASSIGNED), ``reply_sent``
(AGENT_REPLIED), ``customer_reply`` (CUSTOMER_REPLIED),
``customer_feedback`` (CSAT_RECEIVED, the rating as value or in ticket_satisfaction_rating),
``tags`` (TAGS_CHANGED), ``note_type`` (a note: ignored). Without it the type comes from
created_at == updated_at (CREATED), else the tag diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connectors.sources.helpdesk import (
    HelpdeskUpdate,
    Ignored,
    channel,
    choice,
    event_time,
    ident,
    obj,
    payload_digest,
    slug,
    status_change_type,
    tag_list,
    text,
)
from streams.sla.events import EventError, EventType, Priority, Status, json_type

__all__ = ["parse_freshdesk", "parse_trigger"]

SOURCE: Final = "freshdesk"

STATUSES: Final[Mapping[str | int, Status]] = {
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "resolved": Status.SOLVED,
    "closed": Status.CLOSED,
    "waiting on customer": Status.PENDING,
    "waiting on third party": Status.ON_HOLD,
    2: Status.OPEN,
    3: Status.PENDING,
    4: Status.SOLVED,
    5: Status.CLOSED,
    6: Status.PENDING,
    7: Status.ON_HOLD,
}
PRIORITIES: Final[Mapping[str | int, Priority]] = {
    "low": Priority.LOW,
    "medium": Priority.NORMAL,
    "high": Priority.HIGH,
    "urgent": Priority.URGENT,
    1: Priority.LOW,
    2: Priority.NORMAL,
    3: Priority.HIGH,
    4: Priority.URGENT,
}
#: Freshdesk's numeric ticket sources.
SOURCES: Final[Mapping[int, str]] = {
    1: "email",
    2: "web",
    3: "phone",
    4: "web",
    5: "social",
    6: "social",
    7: "chat",
    8: "web",
    9: "web",
    10: "email",
    11: "web",
    12: "chat",
    13: "social",
}
#: Satisfaction ratings (103 extremely happy .. -103 extremely unhappy, or 1..5) -> CSAT 1..5.
RATINGS: Final[Mapping[str | int, int]] = {
    103: 5, 102: 4, 101: 4, 100: 3, -101: 2, -102: 1, -103: 1,
    1: 1, 2: 2, 3: 3, 4: 4, 5: 5,
}  # fmt: skip
# Values that need more than the key: "status", "infer", "csat", "ignore".
TRIGGERS: Final[Mapping[str | int, EventType | str]] = {
    "ticket_action": "action",
    "status": "status",
    "priority": EventType.PRIORITY_CHANGED,
    "group_id": EventType.TRANSFERRED,
    "group": EventType.TRANSFERRED,
    "responder_id": EventType.ASSIGNED,
    "agent": EventType.ASSIGNED,
    "reply_sent": EventType.AGENT_REPLIED,
    "customer_reply": EventType.CUSTOMER_REPLIED,
    "customer_feedback": "csat",
    "tags": EventType.TAGS_CHANGED,
    "note_type": "ignore",
}
ACTIONS: Final[Mapping[str | int, EventType | str]] = {
    "created": EventType.CREATED,
    "updated": "infer",
    "deleted": "removed",  # the ticket leaves tracking: CLOSED with attributes.removed
    "spam": "removed",
}


def parse_trigger(
    value: object, field: str = "freshdesk_webhook.triggered_event"
) -> tuple[str, Any]:
    """``"{status:{from:Open,to:Resolved}}"`` -> ``("status", {"from": "Open", "to": "Resolved"})``;
    ``"{ticket_action:created}"`` -> ``("ticket_action", "created")``. A one-key JSON object
    reads the same way."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise EventError(field, "expected an object with one key")
        ((key, inner),) = value.items()
        return str(key).strip().lower(), inner
    if not isinstance(value, str):
        raise EventError(field, f"expected string or object, got {json_type(value)}")
    body = value.strip()
    key, sep, rest = body[1:-1].partition(":")
    if not (body.startswith("{") and body.endswith("}") and sep and key.strip()):
        raise EventError(field, f"{value!r} is not of the form {{key:value}}")
    rest = rest.strip()
    if not (rest.startswith("{") and rest.endswith("}")):
        return key.strip().lower(), rest
    parts: dict[str, str] = {}
    for item in rest[1:-1].split(","):
        name, sep, item_value = item.partition(":")
        if not sep:
            raise EventError(field, f"{value!r}: {item.strip()!r} is not of the form key:value")
        parts[name.strip().lower()] = item_value.strip()
    return key.strip().lower(), parts


def parse_freshdesk(
    payload: Mapping[str, Any], statuses: Mapping[str, Status] | None = None
) -> HelpdeskUpdate | Ignored:
    """Read one webhook body; raises :class:`EventError` naming the wrong field's path.

    `statuses`: the policy's custom status names (lower-case) -> canonical statuses
    (:attr:`streams.sla.policy.Policy.statuses`); Freshdesk sends a custom status's name."""
    table: Mapping[str | int, Status] = {**STATUSES, **statuses} if statuses else STATUSES
    fw = obj(obj(payload, "body").get("freshdesk_webhook"), "freshdesk_webhook")
    at = "freshdesk_webhook."
    ticket_id = ident(fw.get("ticket_id"), at + "ticket_id", required=True)
    assert ticket_id is not None
    status: Status | None = choice(fw.get("ticket_status"), at + "ticket_status", table)
    priority: Priority | None = choice(
        fw.get("ticket_priority"), at + "ticket_priority", PRIORITIES
    )
    occurred_at, is_new = event_time(
        fw.get("ticket_created_at"),
        fw.get("ticket_updated_at"),
        at + "ticket_created_at",
        at + "ticket_updated_at",
    )

    kind: EventType | str | None = None
    csat = None
    removed = None
    trigger = fw.get("triggered_event")
    if trigger is not None and trigger != "":
        key, value = parse_trigger(trigger, at + "triggered_event")
        kind = choice(key, at + "triggered_event", TRIGGERS)
        if kind == "action":
            kind = choice(value, at + "triggered_event", ACTIONS)
            if kind == "removed":
                kind, status = EventType.CLOSED, Status.CLOSED
                removed = str(value).strip().lower()
        if kind == "status":
            if status is None:
                raise EventError(at + "ticket_status", "is required for a status change")
            old = value.get("from") if isinstance(value, Mapping) else None
            kind = status_change_type(status, choice(old, at + "triggered_event", table))
        elif kind == "csat":
            raw = fw.get("ticket_satisfaction_rating")
            csat = choice(value if raw is None else raw, at + "ticket_satisfaction_rating", RATINGS)
            if csat is None:
                raise EventError(at + "ticket_satisfaction_rating", "is required")
            kind = EventType.CSAT_RECEIVED
        elif kind == "ignore":
            return Ignored(f"triggered_event {key} is no ticket event")
    if kind in (None, "infer"):
        kind = EventType.CREATED if is_new else None
    assert kind is None or isinstance(kind, EventType)

    return HelpdeskUpdate(
        source=SOURCE,
        ticket_id=ticket_id,
        occurred_at=occurred_at,
        digest=payload_digest(payload),
        type=kind,
        status=status,
        priority=priority,
        channel=channel(fw.get("ticket_source"), at + "ticket_source", SOURCES),
        category=slug(fw.get("ticket_type"), at + "ticket_type"),
        customer_id=ident(fw.get("ticket_requester_id"), at + "ticket_requester_id")
        or text(fw.get("ticket_requester_email"), at + "ticket_requester_email"),
        group=text(fw.get("ticket_group_name"), at + "ticket_group_name"),
        assignee_id=ident(fw.get("ticket_agent_id"), at + "ticket_agent_id")
        or text(fw.get("ticket_agent_email"), at + "ticket_agent_email"),
        csat=csat,
        tags=tag_list(fw.get("ticket_tags"), at + "ticket_tags", ","),
        attributes={} if removed is None else {"removed": removed},
    )
