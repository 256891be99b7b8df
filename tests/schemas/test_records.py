"""Record conversions and the dead-letter classifier."""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import AvroCodec, ErrorKind, load_ids, load_schema
from schemas.records import (
    DAY_MS,
    DEAD_LETTER_MAX_ORIGINAL,
    Rejected,
    dead_letter,
    decode_ticket_event,
    escalation_to_avro,
    ops_alert,
    ops_alert_id,
    priority_bump_to_avro,
    reminder_to_avro,
    ticket_event_from_avro,
    ticket_event_to_avro,
)
from streams.sla.actions import Escalation, Kind, PriorityBump, Reason, Reminder
from streams.sla.events import EventType, Priority, Status, TicketEvent

NOW = 1_800_000_000_000
CODEC = AvroCodec("TicketEvent")

FULL = TicketEvent(
    event_id="e1",
    ticket_id="t1",
    type=EventType.TAGS_CHANGED,
    occurred_at=NOW - 5_000,
    status=Status.OPEN,
    priority=Priority.HIGH,
    channel="email",
    category="billing",
    customer_id="c9",
    customer_tier="vip",
    group="tier2",
    assignee_id="a7",
    support_level=0,
    tags_added=("churn_risk", "legal"),
    tags_removed=("old",),
    csat=2,
    attributes={"region": "emea"},
)
MINIMAL = TicketEvent("e2", "t2", EventType.AGENT_REPLIED, NOW)


@pytest.mark.parametrize("event", [FULL, MINIMAL])
def test_ticket_event_round_trip(event: TicketEvent) -> None:
    record = ticket_event_to_avro(event)
    assert ticket_event_from_avro(record) == event
    assert ticket_event_from_avro(CODEC.decode(CODEC.encode(record))) == event
    assert decode_ticket_event(CODEC.encode(record), NOW, CODEC, 1_000_000) == event


def test_datetime_occurred_at_is_accepted() -> None:
    record = ticket_event_to_avro(MINIMAL)
    record["occurred_at"] = datetime.fromtimestamp(NOW / 1000, tz=UTC)
    assert ticket_event_from_avro(record).occurred_at == NOW


def _encode_raw(**fields: Any) -> bytes:
    """Wire bytes of a TicketEvent with arbitrary (schema-valid) values, bypassing the core."""
    record = {**ticket_event_to_avro(MINIMAL), **fields}
    return CODEC.encode(record)


@pytest.mark.parametrize(
    ("raw", "kind", "field"),
    [
        (b"\x00" * 2_000, ErrorKind.OVERSIZED, None),
        (None, ErrorKind.UNDECODABLE, None),
        (b'{"event_id":"e1"}', ErrorKind.UNDECODABLE, None),
        (b"\x00\x00\x00\x04\x00" + b"\x04e1", ErrorKind.UNKNOWN_SCHEMA, None),
        (b"\x00\x00\x00\x00\x02\x04e1", ErrorKind.SCHEMA_MISMATCH, None),
        (_encode_raw(event_id=""), ErrorKind.INVALID_FIELD, "event_id"),
        (_encode_raw(support_level=9), ErrorKind.INVALID_FIELD, "support_level"),
        (_encode_raw(csat=0), ErrorKind.INVALID_FIELD, "csat"),
        (_encode_raw(tags_added=["ok", ""]), ErrorKind.INVALID_FIELD, "tags_added[1]"),
        (_encode_raw(occurred_at=1_700_000_000), ErrorKind.TIMESTAMP_OUT_OF_RANGE, "occurred_at"),
        (
            _encode_raw(occurred_at=NOW + DAY_MS + 1),
            ErrorKind.TIMESTAMP_OUT_OF_RANGE,
            "occurred_at",
        ),
    ],
)
def test_rejected_kinds(raw: bytes | None, kind: ErrorKind, field: str | None) -> None:
    with pytest.raises(Rejected) as info:
        decode_ticket_event(raw, NOW, CODEC, max_bytes=1_024)
    assert info.value.kind is kind
    assert info.value.field == field
    assert info.value.reason


def test_boundaries_pass() -> None:
    assert decode_ticket_event(_encode_raw(occurred_at=NOW + DAY_MS), NOW, CODEC, 1024)
    assert decode_ticket_event(_encode_raw(occurred_at=946_684_800_000), NOW, CODEC, 1024)
    raw = _encode_raw()
    assert decode_ticket_event(raw, NOW, CODEC, max_bytes=len(raw))
    with pytest.raises(Rejected) as info:
        decode_ticket_event(raw, NOW, CODEC, max_bytes=len(raw) - 1)
    assert info.value.kind is ErrorKind.OVERSIZED
    with pytest.raises(Rejected):
        decode_ticket_event(_encode_raw(occurred_at=NOW + 10), NOW, CODEC, 1024, max_future_ms=0)


def test_v1_written_event_passes_classifier() -> None:
    v1 = load_schema("TicketEvent")
    v1 = {
        **v1,
        "fields": [f for f in v1["fields"] if f["name"] not in ("support_level", "attributes")],
    }
    body = BytesIO()
    record = {
        k: v
        for k, v in ticket_event_to_avro(FULL).items()
        if k not in ("support_level", "attributes")
    }
    schemaless_writer(body, parse_schema(v1), record)
    raw = b"\x00" + load_ids()["TicketEvent"][1].to_bytes(4, "big") + body.getvalue()
    event = decode_ticket_event(raw, NOW, CODEC, 1024)
    assert event.support_level is None and event.attributes == {}
    assert event.tags_added == FULL.tags_added


def test_dead_letter_record_encodes() -> None:
    raw = b"\x01garbage"
    try:
        decode_ticket_event(raw, NOW, CODEC, 1024)
    except Rejected as rejected:
        record = dead_letter(
            raw,
            b"t1",
            "ticket-events",
            3,
            42,
            NOW - 1,
            rejected.kind,
            str(rejected),
            rejected.field,
            NOW,
        )
    dlq = AvroCodec("DeadLetter")
    decoded = dlq.decode(dlq.encode(record))
    assert decoded["original"] == raw and decoded["original_key"] == b"t1"
    assert decoded["error_kind"] == "UNDECODABLE"
    assert (decoded["partition"], decoded["offset"], decoded["timestamp"]) == (3, 42, NOW - 1)
    assert decoded["field"] is None and decoded["dead_lettered_at"] == NOW


def test_dead_letter_oversized_is_truncated_and_tombstone_empty() -> None:
    big = b"x" * (DEAD_LETTER_MAX_ORIGINAL + 10)
    record = dead_letter(big, None, "t", 0, 0, None, ErrorKind.OVERSIZED, "too big", None, NOW)
    assert len(record["original"]) == DEAD_LETTER_MAX_ORIGINAL
    record = dead_letter(None, None, "t", 0, 0, None, ErrorKind.UNDECODABLE, "none", None, NOW)
    assert record["original"] == b""
    AvroCodec("DeadLetter").encode(record)


def test_escalation_conversion() -> None:
    esc = Escalation(
        escalation_id="abc",
        ticket_id="t1",
        kind=Kind.HIERARCHICAL,
        level=2,
        from_level=1,
        target="support-manager",
        reason=Reason.FIRST_RESPONSE_BREACH,
        policy="vip",
        rule="matrix.L2",
        sla_metric="first_response",
        due_at=NOW - 10,
        fired_at=NOW - 5,
        event_id=None,
        cycle=1,
    )
    record = escalation_to_avro(esc, NOW)
    assert record["kind"] == "HIERARCHICAL" and type(record["kind"]) is str
    assert record["reason"] == "FIRST_RESPONSE_BREACH" and type(record["reason"]) is str
    assert (record["due_at"], record["fired_at"], record["emitted_at"]) == (NOW - 10, NOW - 5, NOW)
    assert record["event_id"] is None and record["sla_metric"] == "first_response"
    codec = AvroCodec("Escalation")
    assert codec.decode(codec.encode(record)) == record
    assert set(record) == {f["name"] for f in load_schema("Escalation")["fields"]}


def test_priority_bump_and_reminder_conversion() -> None:
    bump = PriorityBump("t1", Priority.NORMAL.value, "URGENT", Reason.CHURN_RISK, "abc", NOW, "e1")
    record = priority_bump_to_avro(bump, NOW + 1)
    codec = AvroCodec("PriorityBump")
    assert codec.decode(codec.encode(record)) == record
    assert record["old_priority"] == "NORMAL" and record["emitted_at"] == NOW + 1
    rem = Reminder("r1", "t1", "frontline", Reason.PENDING_TOO_LONG, "pending", NOW - 1, NOW)
    record = reminder_to_avro(rem, NOW + 2)
    codec = AvroCodec("Reminder")
    assert codec.decode(codec.encode(record)) == record
    assert record["reason"] == "PENDING_TOO_LONG"


def test_ops_alert_id_is_deterministic() -> None:
    a = ops_alert("VOLUME_SURGE", "email/billing", 0, 60_000, 40, 10.0, 30.0, "surge", NOW)
    b = ops_alert("VOLUME_SURGE", "email/billing", 0, 60_000, 41, 10.0, 30.0, "surge", NOW + 5)
    assert (
        a["alert_id"] == b["alert_id"] == ops_alert_id("VOLUME_SURGE", "email/billing", 0, 60_000)
    )
    assert a["alert_id"] != ops_alert_id("VOLUME_SURGE", "chat/billing", 0, 60_000)
    codec = AvroCodec("OpsAlert")
    assert codec.decode(codec.encode(a)) == a


def _enum_symbols(name: str, field: str) -> list[str]:
    spec = next(f for f in load_schema(name)["fields"] if f["name"] == field)["type"]
    if isinstance(spec, list):
        spec = next(s for s in spec if isinstance(s, dict))
    return list(spec["symbols"])


@pytest.mark.parametrize(
    ("schema", "field", "enum"),
    [
        ("TicketEvent", "type", EventType),
        ("TicketEvent", "status", Status),
        ("TicketEvent", "priority", Priority),
        ("Escalation", "kind", Kind),
        ("PriorityBump", "old_priority", Priority),
        ("DeadLetter", "error_kind", ErrorKind),
    ],
)
def test_schema_enums_match_python_enums(schema: str, field: str, enum: Any) -> None:
    carried = {EventType.ESCALATION_ACKNOWLEDGED}  # on Avro: TAGS_CHANGED + an attribute
    assert _enum_symbols(schema, field) == [m.value for m in enum if m not in carried]


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: _encode_raw()[:5] + b),
    st.integers(-(2**63), 2**63 - 1),
)
def test_arbitrary_bytes_and_extreme_timestamps_never_raise_out_of_decode(
    raw: bytes, occurred_at: int
) -> None:
    for value in (raw, _encode_raw(occurred_at=occurred_at)):
        try:
            event = decode_ticket_event(value, NOW, CODEC, max_bytes=1_024)
        except Rejected as exc:
            assert exc.kind in ErrorKind and exc.reason
        else:
            assert 946_684_800_000 <= event.occurred_at <= NOW + DAY_MS


ACK = TicketEvent(
    "e3", "t3", EventType.ESCALATION_ACKNOWLEDGED, NOW,
    attributes={"escalation_id": "abc123", "acknowledged_by": "agent-7"},
)  # fmt: skip


def test_an_acknowledgement_travels_as_a_tags_changed_carrier_and_comes_back() -> None:
    from schemas.records import EVENT_TYPE_ATTRIBUTE

    record = ticket_event_to_avro(ACK)
    assert record["type"] == "TAGS_CHANGED" and record["tags_added"] == []
    assert record["attributes"][EVENT_TYPE_ATTRIBUTE] == "ESCALATION_ACKNOWLEDGED"
    assert ticket_event_from_avro(record) == ACK
    assert decode_ticket_event(CODEC.encode(record), NOW, CODEC, 1 << 20) == ACK


def test_an_old_reader_sees_the_acknowledgement_as_a_tags_change_that_changes_nothing() -> None:
    from fastavro import schemaless_reader

    from schemas.codec import load_history

    raw = BytesIO()
    schemaless_writer(raw, parse_schema(load_schema("TicketEvent")), ticket_event_to_avro(ACK))
    for old in load_history("TicketEvent").values():
        raw.seek(0)
        record = schemaless_reader(raw, parse_schema(load_schema("TicketEvent")), old)
        assert (record["type"], record["tags_added"]) == ("TAGS_CHANGED", [])


def test_an_unknown_carried_type_stays_a_tags_change() -> None:
    from schemas.records import EVENT_TYPE_ATTRIBUTE

    record = ticket_event_to_avro(MINIMAL)
    record.update(type="TAGS_CHANGED", attributes={EVENT_TYPE_ATTRIBUTE: "MERGED"})
    assert ticket_event_from_avro(record).type is EventType.TAGS_CHANGED
