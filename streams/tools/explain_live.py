"""`escalator explain --live`: a ticket's current state, read from the worker's changelog.

The compacted changelog topic holds every ticket's latest committed state (the worker writes
it in the transaction of the event that changed it), so reading it read_committed up to each
partition's end gives what a restarted worker would restore. A tombstone means the worker
dropped the ticket (closed and past its retention).
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.runtime.kafka_config import committed_reader
from streams.runtime.processor import decode_state
from streams.runtime.settings import Settings
from streams.runtime.worker import changelog_topic
from streams.sla.state import TicketState


def read_live_state(
    settings: Settings, ticket_id: str, timeout: float = 30.0
) -> tuple[TicketState | None, str]:
    """The ticket's latest state in the changelog (None if it has none), and where it was
    read (topic, partition and offset). Raises RuntimeError if the topic is missing or the
    end is not reached within `timeout` seconds."""
    topic = changelog_topic(settings)
    key = ticket_id.encode()
    group = f"{settings.app_id}-explain-{uuid.uuid4().hex[:8]}"  # never commits
    consumer = Consumer(committed_reader(settings, group, **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise RuntimeError(f"topic {topic} not found: is a worker running with this app id?")
        todo: set[int] = set()
        for p in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                todo.add(p)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        found: tuple[bytes | None, str] | None = None
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{topic}: partitions {sorted(todo)} not read to their end in {timeout:g} s"
                )
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition() or 0)
                        continue
                    raise RuntimeError(f"{topic}: {err.str()}")
                if msg.key() == key:
                    where = f"{topic} partition {msg.partition()} offset {msg.offset()}"
                    found = (msg.value(), where)
    finally:
        consumer.close()
    if found is None:
        return None, topic
    value, where = found
    if value is None:
        return None, f"{where} (a tombstone: the worker dropped the ticket)"
    try:
        _, state = decode_state(value)
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{where}: not a ticket state ({exc})") from None
    return state, where
