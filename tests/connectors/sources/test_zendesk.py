"""Zendesk specifics; the fixture cases of both help desks are in test_helpdesk.py."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sources.helpdesk import HelpdeskUpdate, to_event
from streams.sla.events import EventType, Status
from tests.connectors.helpdesk_cases import cases
from tests.connectors.helpdesk_cases import update as parsed

SEQUENCE = cases("zendesk", "sequence")


def update(payload: dict[str, Any]) -> HelpdeskUpdate:
    return parsed("zendesk", payload)


def test_unknown_previous_tags_count_every_tag_as_added() -> None:
    event = to_event(update(SEQUENCE[3]["payload"]), None)
    assert event.tags_added == ("billing", "refund", "churn_risk")
    assert event.type is EventType.AGENT_REPLIED


def test_previous_tags_in_the_payload_win_over_memory() -> None:
    payload = {
        "ticket": {"id": 7, "tags": "a c", "updated_at": "2026-11-02T09:15:00Z"},
        "previous": {"tags": ["a", "b"]},
    }
    event = to_event(update(payload), ["zzz"])
    assert (event.type, event.tags_added, event.tags_removed) == (
        EventType.TAGS_CHANGED, ("c",), ("b",),
    )  # fmt: skip


def test_nothing_changed_is_a_status_snapshot() -> None:
    payload = {"ticket": {"id": 7, "status": "hold", "tags": [], "updated_at": "2026-11-02T09:15Z"}}
    event = to_event(update(payload), [])
    assert event.type is EventType.STATUS_CHANGED
    assert event.status is not None and event.status.value == "ON_HOLD"


@pytest.mark.parametrize(
    ("via", "channel"),
    [("voice", "phone"), ("native_messaging", "chat"), ("web_form", "web"), ("sms", "sms")],
)
def test_channels(via: str, channel: str) -> None:
    payload = {"ticket": {"id": 1, "via": {"channel": via}, "updated_at": "2026-11-02T09:15Z"}}
    assert update(payload).channel == channel


def test_requester_email_is_the_customer_without_an_id() -> None:
    payload = {
        "ticket": {
            "id": 1,
            "requester": {"email": "x@example.com"},
            "updated_at": "2026-11-02T09:15Z",
        }
    }
    assert update(payload).customer_id == "x@example.com"


@pytest.mark.parametrize(
    ("name", "removed"),
    [("zen:event-type:ticket.soft_deleted", "deleted"), ("ticket.permanently_deleted", "deleted"),
     ("ticket.marked_as_spam", "spam")],
)  # fmt: skip
def test_deleted_and_spam_tickets_close_and_leave_tracking(name: str, removed: str) -> None:
    payload = {
        "event": name,
        "ticket": {"id": 7, "status": "open", "updated_at": "2026-11-02T09:15Z"},
    }
    event = to_event(update(payload), [])
    assert (event.type, event.status) == (EventType.CLOSED, Status.CLOSED)
    assert event.attributes["removed"] == removed
