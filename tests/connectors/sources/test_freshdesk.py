"""Freshdesk specifics; the fixture cases of both help desks are in test_helpdesk.py."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sources.freshdesk import parse_trigger
from connectors.sources.helpdesk import HelpdeskUpdate, to_event
from streams.sla.events import EventError, EventType, Status
from tests.connectors.helpdesk_cases import update as parsed


def update(payload: dict[str, Any]) -> HelpdeskUpdate:
    return parsed("freshdesk", payload)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("{ticket_action:created}", ("ticket_action", "created")),
        (" {Status:{from:Open, to:Waiting on Customer}} ",
         ("status", {"from": "Open", "to": "Waiting on Customer"})),
        ("{responder_id:{from:,to:77}}", ("responder_id", {"from": "", "to": "77"})),
        ({"priority": {"from": "Low", "to": "High"}}, ("priority", {"from": "Low", "to": "High"})),
    ],
)  # fmt: skip
def test_parse_trigger(text: object, parsed: tuple[str, Any]) -> None:
    assert parse_trigger(text) == parsed


@pytest.mark.parametrize(
    "text", ["status", "{status}", "{:x}", "{status:{from}}", 3, {"a": 1, "b": 2}]
)
def test_parse_trigger_rejects(text: object) -> None:
    with pytest.raises(EventError) as info:
        parse_trigger(text)
    assert info.value.field == "freshdesk_webhook.triggered_event"


@pytest.mark.parametrize(
    ("status", "old", "expected"),
    [
        ("Closed", "Open", EventType.CLOSED),
        ("Pending", "Closed", EventType.REOPENED),
        ("Waiting on Third Party", "Open", EventType.STATUS_CHANGED),
    ],
)
def test_status_triggers(status: str, old: str, expected: EventType) -> None:
    payload = {
        "freshdesk_webhook": {
            "ticket_id": "FD-1",
            "ticket_status": status,
            "triggered_event": f"{{status:{{from:{old},to:{status}}}}}",
            "ticket_updated_at": "2026-11-02T10:00:00Z",
        }
    }
    assert update(payload).type is expected


@pytest.mark.parametrize(
    ("source", "channel"),
    [(1, "email"), ("7", "chat"), ("Twitter", "social"), ("Feedback Widget", "web"),
     ("Outbound Email", "email")],
)  # fmt: skip
def test_sources(source: object, channel: str) -> None:
    payload = {"freshdesk_webhook": {"ticket_id": 1, "ticket_source": source,
                                     "ticket_updated_at": "2026-11-02T10:00:00Z"}}  # fmt: skip
    assert update(payload).channel == channel


def test_created_at_alone_is_a_new_ticket() -> None:
    payload = {"freshdesk_webhook": {"ticket_id": 1, "ticket_created_at": "2026-11-02T10:00Z"}}
    assert update(payload).type is EventType.CREATED


@pytest.mark.parametrize("action", ["deleted", "spam"])
def test_deleted_and_spam_tickets_close_and_leave_tracking(action: str) -> None:
    payload = {"freshdesk_webhook": {"ticket_id": 1, "ticket_status": "Open",
                                     "triggered_event": f"{{ticket_action:{action}}}",
                                     "ticket_updated_at": "2026-11-02T10:00:00Z"}}  # fmt: skip
    event = to_event(update(payload), [])
    assert (event.type, event.status) == (EventType.CLOSED, Status.CLOSED)
    assert event.attributes["removed"] == action
