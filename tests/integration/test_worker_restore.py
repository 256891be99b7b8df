"""Issue #22 item 3 on the real broker: a store resumed from its checkpoint brings back the
due index saved with it, so the restore reads neither the changelog nor the store; the
changelog's tail updates that index, and a damaged index file costs a rebuild, never a
different index."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition

from streams.runtime import checkpoint
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.partition_store import PartitionStore
from streams.runtime.processor import build_processor
from streams.runtime.worker import Worker, changelog_topic
from streams.sla.policy import load_policy
from tests.support.live import now_ms
from tests.support.pipeline import Pipeline
from tests.support.processor import index_of
from tests.support.workers import ticket_state, worker_settings

pytestmark = pytest.mark.integration

TICKETS = 200


def test_a_restart_from_a_checkpoint_loads_the_due_index_instead_of_reading_the_store(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(pipeline, "w1")
    changelog = changelog_topic(settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    for i in range(TICKETS):
        producer.produce(changelog, key=b"T-%d" % i, value=ticket_state(f"T-{i}", now_ms()),
                         partition=0)  # fmt: skip
    assert producer.flush(30) == 0
    reads: list[bytes] = []
    items = PartitionStore.items

    def counted(self: PartitionStore) -> Iterator[tuple[bytes, bytes]]:
        for key, value in items(self):
            reads.append(key)
            yield key, value

    monkeypatch.setattr(PartitionStore, "items", counted)
    out = io.StringIO()
    processor = build_processor(settings, load_policy(), pipeline.topics, False)
    worker = Worker(settings, processor, pipeline.topics, out=out)
    source = TopicPartition(pipeline.topics.ticket_events, 0)
    index_file = settings.data_dir / "tickets" / "0" / checkpoint.INDEX_FILE

    def revoke() -> None:  # closes the store with its checkpoint and due index
        worker._revoked(worker.consumer, [source])

    def assign() -> None:
        worker._assigned(worker.consumer, [source])
        while worker.restoring is not None:
            worker._restore_slice()

    deadline = time.monotonic() + 60
    while True:  # a broker just started may not know the group's coordinator yet
        try:
            worker.consumer.committed([source], timeout=10)
            break
        except KafkaException:
            assert time.monotonic() < deadline, "no group coordinator after 60 s"
            time.sleep(0.5)
    try:
        assign()
        assert len(reads) == TICKETS  # a full restore rebuilds from the store
        full = index_of(worker.processor, 0)
        assert len(full[0]) == TICKETS and full[1] is not None  # gauges too
        reads.clear()

        revoke()
        assert index_file.exists()
        assign()
        assert reads == [], "the store was read although its due index was saved"
        assert f"due index loaded ({TICKETS} tickets)" in out.getvalue()
        assert index_of(worker.processor, 0) == full

        revoke()  # then records after the checkpoint: a new ticket and a deleted one
        producer.produce(changelog, key=b"T-new", value=ticket_state("T-new", now_ms()),
                         partition=0)  # fmt: skip
        producer.produce(changelog, key=b"T-3", value=None, partition=0)
        assert producer.flush(30) == 0
        assign()
        assert reads == []
        assert "(2 changelog records restored, 1 partitions kept" in out.getvalue()
        tailed = index_of(worker.processor, 0)
        rebuilt = build_processor(settings, load_policy(), pipeline.topics, False)
        rebuilt.rebuild(worker.state.stores[0], [0])
        assert tailed == index_of(rebuilt, 0)
        assert {key for _, key in tailed[0]} == {b"T-%d" % i for i in range(TICKETS)} - {b"T-3"} | {
            b"T-new"
        }
        reads.clear()

        revoke()
        raw = index_file.read_bytes()
        index_file.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
        assign()
        assert len(reads) == TICKETS, "a damaged index must be rebuilt from the store"
        assert "due index rebuilt: due index file unusable: checksum" in out.getvalue()
        assert index_of(worker.processor, 0) == tailed
    finally:
        worker.shutdown()
