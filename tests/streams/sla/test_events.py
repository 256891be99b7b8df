from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.sla.events import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    PRIORITY_RANK,
    EventError,
    EventType,
    Priority,
    Status,
    TicketEvent,
    event_from_dict,
    event_to_dict,
    format_ts,
    parse_ts,
)

TS = 1_793_610_900_123  # 2026-11-02T09:15:00.123Z
TS_ISO = "2026-11-02T09:15:00.123Z"

ALL_TYPES = (
    "CREATED, ASSIGNED, STATUS_CHANGED, PRIORITY_CHANGED, TAGS_CHANGED, AGENT_REPLIED, "
    "CUSTOMER_REPLIED, TRANSFERRED, RESOLVED, REOPENED, CLOSED, CSAT_RECEIVED"
)


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "T000001-001",
        "ticket_id": "T000001",
        "type": "CREATED",
        "occurred_at": TS_ISO,
    }
    data.update(overrides)
    return data


FULL = base(
    status="NEW",
    priority="HIGH",
    channel="email",
    category="billing",
    customer_id="C00001",
    customer_tier="vip",
    group="frontline",
    assignee_id="agent-7",
    support_level=1,
    tags_added=["churn_risk", "refund"],
    tags_removed=["first_contact"],
    csat=4,
    attributes={"language": "en"},
)


# --------------------------------------------------------------------------------------------
# Valid input


def test_minimal_event() -> None:
    event = event_from_dict(base())
    assert event == TicketEvent("T000001-001", "T000001", EventType.CREATED, TS)
    assert type(event) is TicketEvent
    assert event.tags_added == () and event.attributes == {} and event.status is None


def test_full_event() -> None:
    event = event_from_dict(FULL)
    assert event.status is Status.NEW
    assert event.priority is Priority.HIGH
    assert event.type is EventType.CREATED
    assert event.tags_added == ("churn_risk", "refund")
    assert event.tags_removed == ("first_contact",)
    assert event.support_level == 1 and event.csat == 4
    assert event.attributes == {"language": "en"}
    assert event_to_dict(event) == {**FULL, "occurred_at": TS_ISO}


def test_int_and_iso_timestamps_agree() -> None:
    assert event_from_dict(base(occurred_at=TS)) == event_from_dict(base())
    assert event_from_dict(base(occurred_at="2026-11-02T10:15:00.123+01:00")).occurred_at == TS
    assert event_from_dict(base(occurred_at="2026-11-02T04:15:00.123-05:00")).occurred_at == TS
    assert event_from_dict(base(occurred_at="2026-11-02T09:15:00.123+00:00")).occurred_at == TS
    # sub-millisecond digits are truncated
    assert event_from_dict(base(occurred_at="2026-11-02T09:15:00.123999Z")).occurred_at == TS
    assert event_from_dict(base(occurred_at="2026-11-02T09:15:00Z")).occurred_at == TS - 123


def test_format_and_parse_ts() -> None:
    assert format_ts(TS) == TS_ISO
    assert format_ts(MIN_TIMESTAMP_MS) == "2000-01-01T00:00:00.000Z"
    assert format_ts(TS - 123) == "2026-11-02T09:15:00.000Z"
    assert parse_ts(TS_ISO) == TS
    assert parse_ts(TS) == TS
    assert parse_ts(format_ts(TS + 86_399_999)) == TS + 86_399_999
    assert parse_ts(MIN_TIMESTAMP_MS) == MIN_TIMESTAMP_MS
    aware = datetime(2026, 11, 2, 10, 15, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert parse_ts(aware) == TS
    with pytest.raises(EventError, match="needs a UTC offset"):
        parse_ts(datetime(2026, 11, 2, 9, 15))
    with pytest.raises(EventError) as info:
        parse_ts("soon", "--until")
    assert info.value.field == "--until"


def test_to_dict_omits_none_and_empty_but_keeps_level_zero() -> None:
    event = TicketEvent(
        "e1", "t1", EventType.ASSIGNED, TS, group="self-service", support_level=0, channel=""
    )
    assert event_to_dict(event) == {
        "event_id": "e1",
        "ticket_id": "t1",
        "type": "ASSIGNED",
        "occurred_at": TS_ISO,
        "group": "self-service",
        "support_level": 0,
    }


def test_null_and_empty_optionals_are_absent() -> None:
    event = event_from_dict(base(status=None, channel="", tags_added=None, attributes=None))
    assert event == event_from_dict(base())


def test_round_trip_through_json() -> None:
    event = event_from_dict(FULL)
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_event_is_frozen_and_hashable() -> None:
    event = event_from_dict(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = Status.OPEN  # type: ignore[misc]
    assert hash(event) == hash(event_from_dict(FULL))
    assert dataclasses.replace(event, csat=5).csat == 5


def test_priority_rank() -> None:
    assert sorted(Priority, key=PRIORITY_RANK.__getitem__) == [
        Priority.LOW,
        Priority.NORMAL,
        Priority.HIGH,
        Priority.URGENT,
    ]


# --------------------------------------------------------------------------------------------
# Errors: every one names the field


def without(name: str) -> dict[str, Any]:
    data = base()
    del data[name]
    return data


ERROR_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, input, field, reason must contain)
    ("missing event_id", without("event_id"), "event_id", "is required"),
    ("missing ticket_id", without("ticket_id"), "ticket_id", "is required"),
    ("missing type", without("type"), "type", "is required"),
    ("missing occurred_at", without("occurred_at"), "occurred_at", "is required"),
    ("empty event_id", base(event_id=""), "event_id", "must not be empty"),
    ("empty ticket_id", base(ticket_id=""), "ticket_id", "must not be empty"),
    ("number ticket_id", base(ticket_id=5), "ticket_id", "expected string, got number"),
    ("unknown type", base(type="FOO"), "type", f"'FOO' is not one of {ALL_TYPES}"),
    ("lowercase type", base(type="created"), "type", "is not one of CREATED"),
    ("number type", base(type=3), "type", "expected string, got number"),
    (
        "unknown status",
        base(status="DONE"),
        "status",
        "'DONE' is not one of NEW, OPEN, PENDING, ON_HOLD, SOLVED, CLOSED",
    ),
    (
        "unknown priority",
        base(priority="P1"),
        "priority",
        "'P1' is not one of LOW, NORMAL, HIGH, URGENT",
    ),
    ("list priority", base(priority=["HIGH"]), "priority", "expected string, got array"),
    ("naive ts", base(occurred_at="2026-11-02T09:15:00"), "occurred_at", "needs a UTC offset"),
    ("date only", base(occurred_at="2026-11-02"), "occurred_at", "needs a UTC offset"),
    ("garbage ts", base(occurred_at="yesterday"), "occurred_at", "not an ISO-8601 timestamp"),
    ("float ts", base(occurred_at=1.7e12), "occurred_at", "got number"),
    ("bool ts", base(occurred_at=True), "occurred_at", "got boolean"),
    ("seconds ts", base(occurred_at=1_793_610_900), "occurred_at", "before 2000-01-01"),
    ("old iso", base(occurred_at="1999-12-31T23:59:59.999Z"), "occurred_at", "before 2000"),
    ("negative ts", base(occurred_at=-5), "occurred_at", "before 2000-01-01"),
    ("level too high", base(support_level=5), "support_level", "5 is outside 0..4"),
    ("level negative", base(support_level=-1), "support_level", "outside 0..4"),
    ("level bool", base(support_level=True), "support_level", "expected integer, got boolean"),
    ("level string", base(support_level="2"), "support_level", "expected integer, got string"),
    ("csat zero", base(csat=0), "csat", "0 is outside 1..5"),
    ("csat six", base(csat=6), "csat", "outside 1..5"),
    ("csat float", base(csat=4.0), "csat", "expected integer, got number"),
    ("csat bool", base(csat=False), "csat", "expected integer, got boolean"),
    ("tags string", base(tags_added="legal"), "tags_added", "expected array of strings"),
    ("tags number item", base(tags_added=["a", 1]), "tags_added[1]", "expected string"),
    ("tags empty item", base(tags_removed=["", "a"]), "tags_removed[0]", "must not be empty"),
    ("tags null item", base(tags_removed=[None]), "tags_removed[0]", "got null"),
    ("attributes list", base(attributes=[]), "attributes", "expected object of strings"),
    ("attributes value", base(attributes={"a": "x", "b": 1}), "attributes.b", "got number"),
    ("attributes key", base(attributes={1: "x"}), "attributes", "keys must be strings"),
    ("channel number", base(channel=5), "channel", "expected string, got number"),
    ("group object", base(group={}), "group", "expected string, got object"),
    ("customer_tier bool", base(customer_tier=True), "customer_tier", "got boolean"),
    ("unknown field", base(colour="red"), "colour", "unknown field"),
]


@pytest.mark.parametrize(
    ("data", "field", "reason"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_the_field(data: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(EventError) as info:
        event_from_dict(data)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value) == f"field {field!r}: {info.value.reason}"


def test_not_a_mapping() -> None:
    with pytest.raises(EventError) as info:
        event_from_dict(["not", "an", "object"])  # type: ignore[arg-type]
    assert info.value.field == "event"
    assert "expected a JSON object, got array" in info.value.reason


def test_event_error_is_value_error_and_pickles() -> None:
    error = EventError("priority", "'P1' is not one of LOW, NORMAL, HIGH, URGENT")
    assert isinstance(error, ValueError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.field, again.reason, str(again)) == (error.field, error.reason, str(error))


# --------------------------------------------------------------------------------------------
# Property: any valid event survives event_to_dict -> JSON -> event_from_dict

names = st.text(min_size=1, max_size=12)
optional_names = st.none() | names
events = st.builds(
    TicketEvent,
    event_id=names,
    ticket_id=names,
    type=st.sampled_from(EventType),
    occurred_at=st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1),
    status=st.none() | st.sampled_from(Status),
    priority=st.none() | st.sampled_from(Priority),
    channel=optional_names,
    category=optional_names,
    customer_id=optional_names,
    customer_tier=optional_names,
    group=optional_names,
    assignee_id=optional_names,
    support_level=st.none() | st.integers(0, 4),
    tags_added=st.lists(names, max_size=4).map(tuple),
    tags_removed=st.lists(names, max_size=4).map(tuple),
    csat=st.none() | st.integers(1, 5),
    attributes=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)


@given(events)
def test_round_trip_property(event: TicketEvent) -> None:
    data = event_to_dict(event)
    assert event_from_dict(data) == event
    assert event_from_dict(json.loads(json.dumps(data))) == event
    assert parse_ts(data["occurred_at"]) == event.occurred_at


@given(st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1))
def test_timestamp_round_trip_property(ms: int) -> None:
    text = format_ts(ms)
    assert len(text) == 24 and text.endswith("Z")
    assert parse_ts(text) == ms
