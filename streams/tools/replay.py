"""Replay recorded history onto `ticket-events`, and read output topics for people.

Replay uses an idempotent confluent-kafka producer (acks=all) keyed by ticket id
with the murmur2 partitioner, the one Java clients and aiokafka use, so a ticket
lands in the same partition whichever tool produced it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from schemas.codec import codec_for
from schemas.readable import describe
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import committed_reader, idempotent_producer
from streams.runtime.processor import SHADOW_RECORDS, TICK_HEADER, decode_shadow, encode_tick
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics
from streams.tools.history import LineError, count_lines, is_gzip, read_history
from streams.tools.progress import Progress


class DeliveryFailed(RuntimeError):
    pass


def replay(
    settings: Settings,
    path: Path,
    topics: Topics | None = None,
    rate: float | None = None,
    end_tick: bool = False,
    stderr: TextIO | None = None,
) -> tuple[int, int]:
    """Produce every valid event of a history file in file order; returns (sent, bad lines).

    With `end_tick`, finish with a clock tick at the last event time on every
    partition, so an event-time worker fires everything due by then.
    """
    topics = topics or Topics()
    stderr = stderr or sys.stderr
    codec = codec_for("TicketEvent", settings, topics)
    producer = Producer(idempotent_producer(settings))
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    total = None if is_gzip(path) else count_lines(path)
    progress = Progress("replay", total=total, stream=stderr)
    sent = bad = 0
    last = 0
    started = time.monotonic()
    for item in read_history(path):
        if isinstance(item, LineError):
            bad += 1
            stderr.write(f"skipped bad line: {item}\n")
            continue
        value = codec.encode(ticket_event_to_avro(item))
        while True:
            try:
                producer.produce(
                    topics.ticket_events, value=value, key=item.ticket_id.encode(),
                    on_delivery=on_delivery,
                )  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        last = max(last, item.occurred_at)
        producer.poll(0)
        progress.update()
        if failures:
            raise DeliveryFailed(f"delivery to {topics.ticket_events} failed: {failures[0]}")
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(60)
    if remaining or failures:
        raise DeliveryFailed(
            f"{remaining} events not acknowledged; first error: {failures[:1] or 'timeout'}"
        )
    if end_tick and last:
        send_ticks(settings, topics, last)
    progress.close()
    return sent, bad


def send_ticks(settings: Settings, topics: Topics, at: int) -> None:
    """A clock tick at `at` on every partition of ticket-events, after the events.

    It goes into ticket-events itself (marked by a header, no key) because only
    order within one partition is guaranteed: on the clock topic it could be
    read before the last events and fire deadlines those events would have met.
    """
    producer = Producer({**idempotent_producer(settings), "linger.ms": 0})
    meta = producer.list_topics(topics.ticket_events, timeout=30)
    for partition in meta.topics[topics.ticket_events].partitions:
        producer.produce(
            topics.ticket_events, value=encode_tick(at), partition=partition,
            headers=[(TICK_HEADER, b"1")],
        )  # fmt: skip
    if producer.flush(30):
        raise DeliveryFailed("clock ticks not acknowledged")


READABLE = {
    "escalations": "Escalation",
    "priority-bumps": "PriorityBump",
    "reminders": "Reminder",
    "ticket-events-dlq": "DeadLetter",
    "ops-alerts": "OpsAlert",
    "webhook-dlq": "WebhookDeadLetter",
    "redis-sink-dlq": "DeadLetter",
}
# `escalator worker --shadow-policy` writes escalations, bumps and reminders to one topic; the
# schema id in each record tells which (streams.runtime.processor.decode_shadow).
SHADOW = "shadow-escalations"


def _reader(topic: str, settings: Settings) -> Callable[[bytes], tuple[str, dict[str, Any]]]:
    """Decodes a record of `topic` into (its Avro type, the record)."""
    if topic == SHADOW:
        codecs = {name: codec_for(name, settings) for name in SHADOW_RECORDS}
        return lambda value: decode_shadow(codecs, value)
    kind = READABLE[topic]
    codec = codec_for(kind, settings)
    return lambda value: (kind, codec.decode(value))


def tail(
    settings: Settings,
    topic: str,
    topics: Topics | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_timeout: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Print committed records of an output topic as readable lines; returns how many."""
    topics = topics or Topics()
    out = out or sys.stdout
    if topic not in READABLE and topic != SHADOW:
        choices = ", ".join([*READABLE, SHADOW])
        raise ValueError(f"cannot tail {topic!r}; choose one of {choices}")
    read = _reader(topic, settings)
    name = topics.name(topic)
    consumer = Consumer(committed_reader(settings, f"escalator-tail-{time.time_ns()}"))
    try:
        meta = consumer.list_topics(name, timeout=30).topics.get(name)
        if meta is None or meta.error is not None:
            raise KafkaException(f"topic {name} not found")
        offset = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
        consumer.assign([TopicPartition(name, p, offset) for p in meta.partitions])
        count = 0
        idle_since = time.monotonic()
        while limit is None or count < limit:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                    break
                continue
            if msg.error():
                continue
            idle_since = time.monotonic()
            kind, record = read(msg.value())
            out.write(("SHADOW " if topic == SHADOW else "") + describe(kind, record) + "\n")
            out.flush()
            count += 1
        return count
    finally:
        consumer.close()
