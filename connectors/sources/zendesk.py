"""Zendesk-style ticket webhooks -> :class:`~connectors.sources.helpdesk.HelpdeskUpdate` (pure).

Zendesk sends what the admin writes into the webhook's JSON body with placeholders
(``{{ticket.id}}``, ``{{ticket.status}}``, ...). The shape ``escalator ingest`` reads on
``POST /v1/webhooks/zendesk``::

    {
      "event": "ticket.status_changed",          # optional: which trigger fired (below)
      "ticket": {
        "id": 35436,                             # required
        "status": "open",                        # new|open|pending|hold|solved|closed
        "custom_status": "Waiting on vendor",    # optional: mapped by the policy's `statuses`
        "priority": "high",                      # low|normal|high|urgent ("", "-" or null: none)
        "tags": ["vip", "refund"],               # or "vip refund" as {{ticket.tags}} renders it
        "group": "Billing",                      # or {"id": .., "name": ..}, or "group_id": 360001
        "assignee_id": 9123,                     # or "assignee": {"id": ..}
        "requester": {"id": 20978392, "email": "ana@example.com"},   # or "requester_id"
        "via": {"channel": "email"},             # email, web, voice, chat, native_messaging, ...
        "category": "billing",                   # optional, from a custom field
        "satisfaction_rating": {"score": "good"},  # good|bad or 1..5 (CSAT events)
        "created_at": "2026-11-02T09:15:00Z",
        "updated_at": "2026-11-02T09:40:00Z"     # ISO-8601 with offset: the event time
      },
      "previous": {"status": "new", "priority": "normal", "tags": [..], "assignee_id": ..},
      "comment": {"author_role": "agent", "public": true}    # for comment events
    }

``event`` may carry Zendesk's prefixes (``zen:event-type:ticket.``, ``ticket.``) and is one of
created, status_changed, priority_changed, tags_changed, agent_assignment_changed (assigned),
group_assignment_changed (transferred), comment_added, agent_replied, customer_replied, solved,
closed, reopened, satisfaction_rated, updated; and deleted, soft_deleted, permanently_deleted,
marked_as_spam (spam): the ticket leaves tracking (CLOSED with ``attributes.removed``).
Without it (or with ``updated``) the type comes from what changed: created_at == updated_at
is CREATED, then ``previous`` status, priority, group, assignee, then a comment, then the tag
diff. A status change into solved/closed is
RESOLVED/CLOSED, out of them REOPENED. A private comment (internal note) is ignored.

The requester is the customer (``customer_id`` = requester id, else e-mail); unknown top-level
or ticket keys are allowed, so an admin can send more than this module reads.
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
    reply_type,
    status_change_type,
    tag_list,
    text,
)
from streams.sla.events import EventError, EventType, Priority, Status

__all__ = ["parse_zendesk"]

SOURCE: Final = "zendesk"

STATUSES: Final[Mapping[str | int, Status]] = {
    "new": Status.NEW,
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "hold": Status.ON_HOLD,
    "on-hold": Status.ON_HOLD,
    "on_hold": Status.ON_HOLD,
    "solved": Status.SOLVED,
    "closed": Status.CLOSED,
}
PRIORITIES: Final[Mapping[str | int, Priority]] = {
    "low": Priority.LOW,
    "normal": Priority.NORMAL,
    "high": Priority.HIGH,
    "urgent": Priority.URGENT,
}
# "status", "comment", "csat" and "infer" need more than the name.
EVENTS: Final[Mapping[str | int, EventType | str]] = {
    "created": EventType.CREATED,
    "status_changed": "status",
    "priority_changed": EventType.PRIORITY_CHANGED,
    "tags_changed": EventType.TAGS_CHANGED,
    "agent_assignment_changed": EventType.ASSIGNED,
    "assignee_changed": EventType.ASSIGNED,
    "assigned": EventType.ASSIGNED,
    "group_assignment_changed": EventType.TRANSFERRED,
    "group_changed": EventType.TRANSFERRED,
    "transferred": EventType.TRANSFERRED,
    "comment_added": "comment",
    "agent_replied": EventType.AGENT_REPLIED,
    "customer_replied": EventType.CUSTOMER_REPLIED,
    "solved": EventType.RESOLVED,
    "closed": EventType.CLOSED,
    "reopened": EventType.REOPENED,
    "satisfaction_rated": "csat",
    "updated": "infer",
    # the ticket leaves tracking: CLOSED with attributes.removed (deleted or spam)
    "deleted": "deleted",
    "soft_deleted": "deleted",
    "permanently_deleted": "deleted",
    "marked_as_spam": "spam",
    "spam": "spam",
}
_SCORES: Final[Mapping[str | int, int]] = {"good": 5, "bad": 1, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5}


def _custom(
    ticket: Mapping[str, Any], where: str, statuses: Mapping[str, Status] | None
) -> Status | None:
    """The canonical status a custom status maps to in the policy; None when the ticket has
    none or the policy does not map it (then `status`, its category, is the status)."""
    name = text(ticket.get("custom_status"), f"{where}.custom_status")
    return None if name is None or not statuses else statuses.get(name.strip().lower())


def _event_name(value: object) -> EventType | str:
    name = text(value, "event")
    if name is None:
        return "infer"
    for prefix in ("zen:event-type:", "ticket."):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    result: EventType | str = choice(name, "event", EVENTS)
    return result


def _group(ticket: Mapping[str, Any]) -> str | None:
    group = ticket.get("group")
    if isinstance(group, Mapping):
        return text(group.get("name"), "ticket.group.name") or ident(
            group.get("id"), "ticket.group.id"
        )
    return text(group, "ticket.group") or ident(ticket.get("group_id"), "ticket.group_id")


def _person(ticket: Mapping[str, Any], name: str, with_email: bool) -> str | None:
    person = obj(ticket.get(name), f"ticket.{name}", required=False)
    found = ident(person.get("id"), f"ticket.{name}.id") or ident(
        ticket.get(f"{name}_id"), f"ticket.{name}_id"
    )
    if found is None and with_email:
        found = text(person.get("email"), f"ticket.{name}.email")
    return found


def parse_zendesk(
    payload: Mapping[str, Any], statuses: Mapping[str, Status] | None = None
) -> HelpdeskUpdate | Ignored:
    """Read one webhook body; raises :class:`EventError` naming the wrong field's path.

    `statuses`: the policy's custom status names (lower-case) -> canonical statuses
    (:attr:`streams.sla.policy.Policy.statuses`), read in `status` and `custom_status`."""
    table: Mapping[str | int, Status] = {**STATUSES, **statuses} if statuses else STATUSES
    body = obj(payload, "body")
    ticket = obj(body.get("ticket"), "ticket")
    previous = obj(body.get("previous"), "previous", required=False)
    comment = obj(body.get("comment"), "comment", required=False)
    ticket_id = ident(ticket.get("id"), "ticket.id", required=True)
    assert ticket_id is not None
    status: Status | None = _custom(ticket, "ticket", statuses) or choice(
        ticket.get("status"), "ticket.status", table
    )
    priority: Priority | None = choice(ticket.get("priority"), "ticket.priority", PRIORITIES)
    group = _group(ticket)
    assignee = _person(ticket, "assignee", with_email=False)
    occurred_at, is_new = event_time(
        ticket.get("created_at"), ticket.get("updated_at"), "ticket.created_at", "ticket.updated_at"
    )

    kind: EventType | str | None = _event_name(body.get("event"))
    old_status: Status | None = _custom(previous, "previous", statuses) or choice(
        previous.get("status"), "previous.status", table
    )
    csat = None
    if kind == "infer":
        kind = _infer(is_new, previous, comment, status, old_status, priority, group, assignee)
    if kind == "status":
        if status is None:
            raise EventError("ticket.status", "is required for a status change")
        kind = status_change_type(status, old_status)
    elif kind == "comment":
        if comment.get("public") is False:
            return Ignored("private comment (internal note)")
        kind = reply_type(comment.get("author_role"), "comment.author_role")
    elif kind == "csat":
        rating = obj(ticket.get("satisfaction_rating"), "ticket.satisfaction_rating")
        csat = choice(rating.get("score"), "ticket.satisfaction_rating.score", _SCORES)
        if csat is None:
            raise EventError("ticket.satisfaction_rating.score", "is required")
        kind = EventType.CSAT_RECEIVED
    removed = None
    if kind in ("deleted", "spam"):
        removed, kind, status = str(kind), EventType.CLOSED, Status.CLOSED
    assert kind is None or isinstance(kind, EventType)

    via = obj(ticket.get("via"), "ticket.via", required=False)
    return HelpdeskUpdate(
        source=SOURCE,
        ticket_id=ticket_id,
        occurred_at=occurred_at,
        digest=payload_digest(body),
        type=kind,
        status=status,
        priority=priority,
        channel=channel(via.get("channel"), "ticket.via.channel"),
        category=text(ticket.get("category"), "ticket.category"),
        customer_id=_person(ticket, "requester", with_email=True),
        group=group,
        assignee_id=assignee,
        csat=csat,
        tags=tag_list(ticket.get("tags"), "ticket.tags", None),
        previous_tags=tag_list(previous.get("tags"), "previous.tags", None),
        attributes={} if removed is None else {"removed": removed},
    )


def _infer(
    is_new: bool,
    previous: Mapping[str, Any],
    comment: Mapping[str, Any],
    status: Status | None,
    old_status: Status | None,
    priority: Priority | None,
    group: str | None,
    assignee: str | None,
) -> EventType | str | None:
    """What changed, for a webhook that does not say."""
    if is_new:
        return EventType.CREATED
    if "status" in previous and old_status != status:
        return "status"
    old_priority = choice(previous.get("priority"), "previous.priority", PRIORITIES)
    if "priority" in previous and old_priority != priority:
        return EventType.PRIORITY_CHANGED
    if ("group" in previous or "group_id" in previous) and group != (
        text(previous.get("group"), "previous.group")
        or ident(previous.get("group_id"), "previous.group_id")
    ):
        return EventType.TRANSFERRED
    if "assignee_id" in previous and assignee != ident(
        previous.get("assignee_id"), "previous.assignee_id"
    ):
        return EventType.ASSIGNED
    if comment:
        return "comment"
    return None  # the tag diff decides
