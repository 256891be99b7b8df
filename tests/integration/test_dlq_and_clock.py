"""Bad input goes to the DLQ while good events around it are processed; the live clock."""

from __future__ import annotations

import copy
import io
import json
import struct
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer

from schemas.codec import codec_for, load_schema
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_history
from streams.tools.history import read_history, write_history
from streams.tools.replay import replay
from tests.support.live import event, now_ms
from tests.support.pipeline import RUNTIMES, Pipeline
from tests.support.policies import LIVE_POLICY

pytestmark = pytest.mark.integration

HOUR = 3_600_000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_bad_input_lands_in_the_dlq_with_its_reason(
    kafka_bootstrap: str, tmp_path: Path, runtime: str
) -> None:
    line = Pipeline(kafka_bootstrap, tmp_path, extra_env={"ESCALATOR_MAX_EVENT_BYTES": "4096"},
                    runtime=runtime)  # fmt: skip
    line.create_topics()
    try:
        worker = line.start_worker("w1", event_time=True)
        worker.wait_ready()
        codec = codec_for("TicketEvent", line.settings)
        now = now_ms()

        def good(ticket: str, tag: str) -> bytes:
            e = event(ticket, f"{ticket}-1", now - HOUR, tags_added=(tag,), channel="email")
            return codec.encode(ticket_event_to_avro(e))

        valid = good("T-bad", "x")
        header = valid[:5]
        # A writer with an extra enum symbol the reader does not know: an invalid enum value.
        schema = copy.deepcopy(load_schema("TicketEvent"))
        type_field = next(f for f in schema["fields"] if f["name"] == "type")
        type_field["type"]["symbols"].append("ESCALATE_NOW")
        body = io.BytesIO()
        record = ticket_event_to_avro(event("T-enum", "e1", now))
        record["type"] = "ESCALATE_NOW"
        fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
        cases: list[tuple[str, bytes, str, str | None]] = [
            ("T-good-1", good("T-good-1", "legal"), "", None),
            ("T-junk", b"not avro at all", "UNDECODABLE", None),
            ("T-magic", b"\x01" + valid[1:], "UNDECODABLE", None),
            ("T-id", b"\x00" + struct.pack(">I", 9999) + valid[5:], "UNKNOWN_SCHEMA", None),
            ("T-body", header + b"\xff\xff\xff", "SCHEMA_MISMATCH", None),
            ("T-enum", header + body.getvalue(), "SCHEMA_MISMATCH", None),
            ("T-empty", codec.encode(ticket_event_to_avro(event("T-empty", "", now))),
             "INVALID_FIELD", "event_id"),
            ("T-future",
             codec.encode(ticket_event_to_avro(event("T-future", "f1", now + 240 * HOUR))),
             "TIMESTAMP_OUT_OF_RANGE", "occurred_at"),
            ("T-1999", codec.encode(ticket_event_to_avro(event("T-1999", "o1", 946_684_799_000))),
             "TIMESTAMP_OUT_OF_RANGE", "occurred_at"),
            ("T-big", codec.encode(ticket_event_to_avro(
                event("T-big", "b1", now, attributes={"note": "x" * 10_000}))), "OVERSIZED", None),
            ("T-good-2", good("T-good-2", "churn_risk"), "", None),
        ]  # fmt: skip
        producer = Producer(idempotent_producer(line.settings))
        offsets: dict[str, tuple[int, int]] = {}

        def remember(err: Any, msg: Any) -> None:
            assert err is None, err
            offsets[msg.key().decode()] = (msg.partition(), msg.offset())

        for ticket, value, _, _ in cases:
            producer.produce(line.topics.ticket_events, value=value, key=ticket.encode(),
                             on_delivery=remember)  # fmt: skip
        assert producer.flush(30) == 0
        bad = [c for c in cases if c[2]]
        letters = line.read("ticket-events-dlq", "DeadLetter", expect=len(bad), timeout=90)
        by_key = {bytes(letter["original_key"]).decode(): letter for letter in letters}
        assert len(letters) == len(bad)
        for ticket, value, kind, field in bad:
            letter = by_key[ticket]
            assert letter["error_kind"] == kind, (ticket, letter["error"])
            assert letter["error"], ticket
            assert letter["field"] == field, (ticket, letter)
            assert (letter["partition"], letter["offset"]) == offsets[ticket]
            assert letter["source_topic"] == line.topics.ticket_events
            if kind != "OVERSIZED":
                assert bytes(letter["original"]) == value
        assert "invalid enum value" in by_key["T-enum"]["error"]
        # Good events before and after the bad ones were processed: their triggers fired.
        escalations = line.read("escalations", "Escalation", expect=2, timeout=60)
        reasons = {(e["ticket_id"], e["reason"]) for e in escalations}
        assert ("T-good-1", "LEGAL_THREAT") in reasons
        assert ("T-good-2", "CHURN_RISK") in reasons
        assert worker.proc.poll() is None, "the worker must keep running"
    finally:
        line.close()


@pytest.mark.serial
def test_live_clock_fires_a_breach_within_a_second_of_its_deadline(
    any_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = any_pipeline
    policy = tmp_path / "policy.yaml"
    policy.write_text(LIVE_POLICY)
    worker = pipeline.start_worker("w1", event_time=False, policy=policy)
    worker.wait_ready()
    time.sleep(2)  # let the first rebalance settle and ticks flow
    codec = codec_for("TicketEvent", pipeline.settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    created_at = now_ms() - 55_000  # first response due in ~5 s, with no further events
    deadline = created_at + 60_000
    ticket = event("T-live", "live-1", created_at, channel="chat")
    producer.produce(pipeline.topics.ticket_events, key=b"T-live",
                     value=codec.encode(ticket_event_to_avro(ticket)))  # fmt: skip
    assert producer.flush(30) == 0
    records = pipeline.read("escalations", "Escalation", expect=2, timeout=60, idle=0.5)
    breach = next(r for r in records if r["reason"] == "FIRST_RESPONSE_BREACH")
    assert breach["due_at"] == deadline
    assert breach["level"] == 2 and breach["target"] == "team-lead"
    # Emitted (engine's wall clock) and readable by a read_committed consumer within a second.
    assert 0 <= breach["emitted_at"] - deadline < 1000, breach["emitted_at"] - deadline
    assert breach["_received_at"] - deadline < 1000, breach["_received_at"] - deadline


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_poison_tickets_go_to_the_dlq_and_every_other_ticket_escalates(
    kafka_bootstrap: str, tmp_path: Path, runtime: str
) -> None:
    """A ticket with thousands of events, tag bombs and a ticket whose state would exceed the
    record limit: the worker stays up, the poison is on the DLQ, the rest escalates as the
    backtest says, at the same instants."""
    line = Pipeline(kafka_bootstrap, tmp_path, extra_env={"ESCALATOR_MAX_RECORD_BYTES": "65536"},
                    runtime=runtime)  # fmt: skip
    line.create_topics()
    try:
        normal = generate_history(agents=4, days=1, seed=3)
        start = normal[0].occurred_at
        replies = (EventType.CUSTOMER_REPLIED, EventType.AGENT_REPLIED)
        long_lived = [
            TicketEvent(f"long-{i:05d}", "T-long", replies[i % 2], start + 60_000 + i * 10)
            for i in range(6000)
        ]
        huge_id = "H" * 70_000  # fits an event, but not a 64 KiB state or escalation record
        huge = TicketEvent(
            "huge-1", huge_id, EventType.CREATED, start + 5000, tags_added=("legal",)
        )
        path = tmp_path / "history.jsonl"
        write_history(path, sorted([*normal, *long_lived, huge], key=lambda e: e.occurred_at))
        out = io.StringIO()
        backtest_events([load_policy()], lambda: read_history(path, numbered=True), [out])
        expected = {
            r["escalation_id"]: r["fired_at"]
            for r in map(json.loads, out.getvalue().splitlines())
            if r["action"] == "escalation" and r["ticket_id"] != huge_id
        }
        assert len(expected) > 20

        worker = line.start_worker("w1", event_time=True)
        worker.wait_ready()
        codec = codec_for("TicketEvent", line.settings)
        producer = Producer(idempotent_producer(line.settings))
        for i in range(3):  # each event adds a thousand distinct tags
            tags = tuple(f"tag-{i}-{j:04d}" for j in range(1000))
            bomb = TicketEvent(
                f"bomb-{i}", "T-tags", EventType.TAGS_CHANGED, start + 10 + i, tags_added=tags
            )
            producer.produce(line.topics.ticket_events, codec.encode(ticket_event_to_avro(bomb)),
                             b"T-tags")  # fmt: skip
        assert producer.flush(30) == 0
        sent, bad = replay(line.settings, path, line.topics, end_tick=True)
        assert bad == 0 and sent == len(normal) + len(long_lived) + 1

        letters = line.read("ticket-events-dlq", "DeadLetter", expect=4, timeout=120)
        kinds = sorted((letter["error_kind"], letter["field"]) for letter in letters)
        assert kinds == [("INVALID_FIELD", "tags_added")] * 3 + [("OVERSIZED", None)]
        [oversized] = [letter for letter in letters if letter["error_kind"] == "OVERSIZED"]
        assert "record limit" in oversized["error"] and "HHHH" in oversized["error"]
        records = line.read("escalations", "Escalation", expect=len(expected), timeout=180)
        assert {r["escalation_id"]: r["fired_at"] for r in records} == expected
        assert worker.proc.poll() is None, "the worker must keep running"
    finally:
        line.close()
