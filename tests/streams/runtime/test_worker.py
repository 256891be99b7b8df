"""streams.runtime.worker pieces that need no broker: state stores, client settings, readiness.
The loop itself is proven against the real broker in tests/integration/test_pipeline.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.runtime.kafka_config import transactional_id, worker_consumer, worker_producer
from streams.runtime.partition_store import PartitionStore
from streams.runtime.settings import load_settings
from streams.runtime.worker import BLOCK_CACHE_BYTES, LocalState


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_partition_store_queues_every_write_at_least_once(
    tmp_path: Path, store: str, guarantee: str
) -> None:
    """At least once, each write goes to the changelog with its message; exactly once, the
    transaction's last values go as it commits (test_a_full_producer_queue_...), nothing queued."""
    state = LocalState(
        load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": store,
                       "ESCALATOR_PROCESSING_GUARANTEE": guarantee})
    )  # fmt: skip
    part = state.open(3)
    assert part.get(b"a") is None
    part.put(b"a", b"1")
    part.put(b"b", b"2")
    part.delete(b"a")
    part.delete(b"never-there")
    assert part.get(b"a") is None and part.get(b"b") == b"2"
    assert list(part.items()) == [(b"b", b"2")]
    queued = [(b"a", b"1"), (b"b", b"2"), (b"a", None), (b"never-there", None)]
    assert part.pending == (queued if guarantee == "at_least_once" else [])
    assert part.txn == {b"a": None, b"b": b"2", b"never-there": None}
    assert list(state.items()) == [(b"b", b"2")]
    state.close_all()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_reopened_partition_starts_empty_and_restores_without_queueing(
    tmp_path: Path, store: str
) -> None:
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": store})
    state = LocalState(settings)
    state.open(0).put(b"stale", b"x")
    part = state.open(0)  # a new assignment: only the changelog counts
    assert part.get(b"stale") is None
    part.load(b"t1", b"s1")
    part.load(b"t2", b"s2")
    part.load(b"t1", None)  # a tombstone
    assert list(part.items()) == [(b"t2", b"s2")] and part.pending == []
    state.close_all()
    assert not state.stores
    if store == "rocksdb://":
        assert not any((tmp_path / "tickets").iterdir())  # closed stores leave no files


def test_exactly_once_clients(tmp_path: Path) -> None:
    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_SESSION_TIMEOUT_MS": "9000",
         "ESCALATOR_APP_ID": "esc", "ESCALATOR_INSTANCE_ID": "escalator-worker-2"}
    )  # fmt: skip
    consumer = worker_consumer(settings)
    assert consumer["group.id"] == "esc"
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["session.timeout.ms"] == 9000 and consumer["heartbeat.interval.ms"] == 3000
    producer = worker_producer(settings)
    assert producer["transactional.id"] == "esc-worker-escalator-worker-2"
    assert producer["transaction.timeout.ms"] == 10_000
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True


def test_at_least_once_has_no_transactions(tmp_path: Path) -> None:
    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_PROCESSING_GUARANTEE": "at_least_once"}
    )
    assert "transactional.id" not in worker_producer(settings)
    assert worker_consumer(settings)["isolation.level"] == "read_uncommitted"


def test_without_an_instance_id_the_data_dir_tells_instances_apart(tmp_path: Path) -> None:
    one = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path / "w1")})
    two = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path / "w2")})
    assert transactional_id(one) != transactional_id(two)
    assert transactional_id(one) == transactional_id(one)


def test_readiness_waits_for_an_assignment(tmp_path: Path) -> None:
    from streams.runtime.processor import build_processor
    from streams.runtime.topics import Topics
    from streams.runtime.worker import Worker
    from streams.sla.policy import load_policy

    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": "memory://",
         "ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )  # fmt: skip
    topics = Topics("t-")
    worker = Worker(settings, build_processor(settings, load_policy(), topics, True), topics,
                    event_time=True)  # fmt: skip
    status, body = worker.readiness()
    assert status == 503 and json.loads(body) == {"ready": False, "recovered": False,
                                                  "partitions": []}  # fmt: skip
    worker.rebalancing, worker.owned = False, [0, 2]
    status, body = worker.readiness()
    assert status == 200 and json.loads(body)["partitions"] == [0, 2]
    assert worker.changelog == "escalator-tickets-changelog"


def offline_worker(tmp_path: Path, store: str, guarantee: str = "exactly_once") -> Any:
    """A wall-clock Worker with the processor `escalator worker` makes, on topics `t-*`,
    its clients pointed at no broker (a test swaps in fakes)."""
    from streams.runtime.processor import build_processor
    from streams.runtime.topics import Topics
    from streams.runtime.worker import Worker
    from streams.sla.policy import load_policy

    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": store,
         "ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1",
         "ESCALATOR_PROCESSING_GUARANTEE": guarantee}
    )  # fmt: skip
    topics = Topics("t-")
    return Worker(settings, build_processor(settings, load_policy(), topics, False), topics)


class FakeProducer:
    """Records the transactional calls the worker makes (no broker)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def begin_transaction(self) -> None:
        self.calls.append(("begin", None))

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
        self.calls.append(("produce", (topic, partition)))

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        self.calls.append(("offsets", ([(tp.topic, tp.partition, tp.offset) for tp in offsets],
                                       group)))  # fmt: skip

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(("commit", None))


def test_a_tick_only_transaction_sends_the_offsets_of_every_owned_partition(
    tmp_path: Path,
) -> None:
    """KIP-447 fences a zombie through the offsets its transaction sends: a transaction with
    only a tick's escalations must send them too, under the assignment's generation."""
    from streams.runtime.processor import Out

    worker = offline_worker(tmp_path, "memory://")
    producer = FakeProducer()
    worker.producer = producer  # type: ignore[assignment]
    worker.group = "generation 7 of the assignment"
    worker.owned, worker.committed = [0, 2], {0: 5, 1: 9, 2: 7}  # 1: no longer owned
    store = worker.state.open(2)
    worker._send(2, [Out("t-escalations", b"k", b"v")], store)  # a tick fired on partition 2
    worker._commit()
    offsets = [call for call in producer.calls if call[0] == "offsets"]
    source = "t-ticket-events"
    assert offsets == [("offsets", ([(source, 0, 5), (source, 2, 7)], worker.group))]
    assert [name for name, _ in producer.calls] == ["begin", "produce", "offsets", "commit"]
    # With consumed messages, their offsets count and the others are still sent.
    worker.offsets = {2: 8}
    worker._send(2, [], store)
    worker._commit()
    assert producer.calls[-2] == ("offsets", ([(source, 0, 5), (source, 2, 8)], worker.group))
    assert worker.committed == {0: 5, 1: 9, 2: 8}


def test_a_full_producer_queue_delays_a_record_and_loses_or_reorders_none(
    tmp_path: Path,
) -> None:
    """The client refuses a record while its queue is full (BufferError): the worker serves
    its deliveries and sends that record again, outputs with their message, the changelog as
    the transaction commits (each ticket's last state once, before the offsets), each in
    order."""
    from streams.runtime.processor import Out

    class FullProducer(FakeProducer):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[tuple[str, bytes | None, bytes, int]] = []
            self.refuse = {1, 2, 4}  # the produce() calls (from 0) that find the queue full
            self.attempts = 0

        def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
            self.attempts += 1
            if self.attempts - 1 in self.refuse:
                raise BufferError("Local: Queue full")
            self.sent.append((topic, value, key, partition))
            self.calls.append(("produce", (topic, partition)))

        def poll(self, timeout: float) -> int:
            self.calls.append(("poll", timeout))
            return 0

    worker = offline_worker(tmp_path, "memory://")
    producer = FullProducer()
    worker.producer = producer  # type: ignore[assignment]
    store = worker.state.open(3)
    store.put(b"T-1", b"state 1")
    store.delete(b"T-2")
    outs = [Out("t-escalations", b"T-1", b"e1"), Out("t-reminders", b"T-1", b"r1")]
    worker._send(3, outs, store)
    assert producer.sent == [("t-escalations", b"e1", b"T-1", 3), ("t-reminders", b"r1", b"T-1", 3)]
    store.put(b"T-1", b"state 2")  # a later message of the same transaction
    worker._send(3, [], store)
    # no per-write queue: the transaction's last value of each key is what commits
    assert store.pending == [] and store.txn == {b"T-1": b"state 2", b"T-2": None}
    worker._commit()
    changelog = worker.changelog
    assert producer.sent[2:] == [(changelog, b"state 2", b"T-1", 3), (changelog, None, b"T-2", 3)]
    assert [call for call in producer.calls if call[0] == "poll"] == [("poll", 0.01)] * 3
    names = [name for name, _ in producer.calls if name != "poll"]
    assert names == ["begin", "produce", "produce", "produce", "produce", "offsets", "commit"]
    assert store.pending == [] and store.txn == {} and store.get(b"T-1") == b"state 2"


def test_at_least_once_sends_each_state_with_its_message(tmp_path: Path) -> None:
    """No transaction to compact the changelog in: every write goes with its message."""
    worker = offline_worker(tmp_path, "memory://", "at_least_once")
    producer = FakeProducer()
    worker.producer = producer  # type: ignore[assignment]
    store = worker.state.open(1)
    store.put(b"T-1", b"state 1")
    worker._send(1, [], store)
    store.put(b"T-1", b"state 2")
    worker._send(1, [], store)
    changelog = worker.changelog
    assert producer.calls == [("produce", (changelog, 1))] * 2 and store.pending == []


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_store_streams_its_items_without_copying_the_partition(
    tmp_path: Path, store: str
) -> None:
    """The due index is rebuilt from items(): a partition's states must never be materialised
    (tens of thousands of 700-byte states against the chart's 1 GiB limit)."""
    import tracemalloc

    state = LocalState(
        load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": store})
    )
    part = state.open(0)
    count, size = 40_000, 500
    for i in range(count):
        part.load(b"ticket-%06d" % i, bytes(size))  # 20 MB of states
    for i in range(10):
        part.put(b"ticket-%06d" % i, b"recent")  # the front's latest writes count too
    part.delete(b"ticket-000010")
    tracemalloc.start()
    try:
        seen = recent = 0
        for _, value in state.items():
            seen += 1
            recent += value == b"recent"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count - 1 and recent == 10
    # A list of the partition's items would take count x size = 20 MB; keys alone ~2 MB.
    assert peak < 4 << 20, f"iterating the store peaked at {peak / 1e6:.1f} MB"
    state.close_all()


def test_a_transactional_call_that_ignores_its_timeout_restarts_the_worker(
    tmp_path: Path,
) -> None:
    """librdkafka can block send_offsets_to_transaction past its timeout after a broker
    restart (bench/txn_offsets_hang.py): the watchdog ends the process for a restart."""
    import threading

    from streams.runtime.processor import Out

    worker = offline_worker(tmp_path, "memory://")
    released = threading.Event()

    class HangingProducer(FakeProducer):
        def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
            released.wait(10)  # a hang: the timeout it was given is ignored

    overruns: list[str] = []
    worker.producer = HangingProducer()  # type: ignore[assignment]
    worker.watchdog_s = 0.2
    worker.overrun = lambda call: (overruns.append(call), released.set())  # type: ignore[assignment,func-returns-value]
    worker.owned, worker.committed = [0], {0: 5}
    worker._send(0, [Out("t-escalations", b"k", b"v")], worker.state.open(0))
    worker._commit()
    assert overruns == ["send_offsets_to_transaction"]
    # and a call that returns in time leaves the timer unfired
    worker.producer = FakeProducer()  # type: ignore[assignment]
    worker._send(0, [Out("t-escalations", b"k", b"v")], worker.state.open(0))
    worker._commit()
    time.sleep(0.4)
    assert overruns == ["send_offsets_to_transaction"]


def test_the_stores_of_a_worker_share_one_bounded_block_cache(tmp_path: Path) -> None:
    """RocksDB's default is a 32 MB block cache per store, with the tables' indexes and filters
    outside any cache (growing with the data): a worker's memory grew with its partitions and
    its state."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": "rocksdb://"})
    state = LocalState(settings)
    for p in (0, 1):
        state.open(p)
        db = state.dbs[p]
        for i in range(20_000):
            db[b"T%07d" % i] = b"x" * 200
        db.flush()
        assert db.get(b"T0000001") == b"x" * 200
    try:
        for db in state.dbs.values():
            assert db.property_int_value("rocksdb.block-cache-capacity") == BLOCK_CACHE_BYTES
            assert db.property_int_value("rocksdb.estimate-table-readers-mem") < 16_384
        usage = [db.property_int_value("rocksdb.block-cache-usage") for db in state.dbs.values()]
        assert usage[0] == usage[1] > 0  # one cache: each store reports the shared usage
    finally:
        state.close_all()


def test_the_worker_drives_the_processor_it_is_given(tmp_path: Path) -> None:
    """The composition root makes the processor (build_processor); the worker only calls it:
    a record's outputs come from the given processor, in the record's transaction."""
    from streams.runtime.processor import Counters, Out
    from streams.runtime.topics import Topics
    from streams.runtime.worker import Worker

    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": "memory://",
         "ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    )  # fmt: skip
    seen: list[tuple[Any, ...]] = []

    class Processor:
        counters = Counters()

        def on_event(self, store: PartitionStore, raw: bytes | None, key: bytes | None,
                     partition: int, offset: int, timestamp: int | None) -> list[Out]:  # fmt: skip
            seen.append((raw, key, partition, offset, timestamp))
            return [Out("t-escalations", b"T-1", b"fired")]

    class Message:
        def error(self) -> None:
            return None

        def partition(self) -> int:
            return 2

        def offset(self) -> int:
            return 41

        def headers(self) -> None:
            return None

        def timestamp(self) -> tuple[int, int]:
            return 1, 1_700_000_000_000

        def value(self) -> bytes:
            return b"event"

        def key(self) -> bytes:
            return b"T-1"

    worker = Worker(settings, Processor(), Topics("t-"))  # type: ignore[arg-type]
    producer = FakeProducer()
    worker.producer = producer  # type: ignore[assignment]
    worker.state.open(2)
    worker._set_owned([2])
    worker._handle(Message())  # type: ignore[arg-type]
    assert seen == [(b"event", b"T-1", 2, 41, 1_700_000_000_000)]
    assert producer.calls == [("begin", None), ("produce", ("t-escalations", 2))]
    assert worker.offsets == {2: 42}


class RefusingProducer(FakeProducer):
    """Refuses the offsets of the next `refusals` transactions as a coordinator refuses a
    generation that moved on (an abortable error), and records the aborts."""

    def __init__(self, refusals: int, code: int = KafkaError.ILLEGAL_GENERATION) -> None:
        super().__init__()
        self.refusals, self.code = refusals, code

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        super().send_offsets_to_transaction(offsets, group, timeout)
        if self.refusals:
            self.refusals -= 1
            refused = KafkaError(self.code, "refused", txn_requires_abort=True)
            raise KafkaException(refused)

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(("abort", None))

    def poll(self, timeout: float) -> int:
        return 0


class Seeking:
    """The group consumer's seek(), recorded."""

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def close(self) -> None:
        pass


def test_a_refused_transaction_is_aborted_and_read_again_without_a_restart(
    tmp_path: Path,
) -> None:
    """A rebalance completes between two polls: the next commit carries the generation
    before it and is refused. The worker aborts, takes back the transaction's state and
    reads from the committed offsets again: the second attempt sends what the first did,
    from the same state, and the store, index and counts are as if it ran once."""
    from schemas.records import ticket_event_to_avro
    from streams.runtime.worker import Restart
    from streams.sla.events import EventType, TicketEvent

    worker = offline_worker(tmp_path, "memory://")
    worker.consumer.close()
    worker.consumer = Seeking()  # type: ignore[assignment]
    producer = worker.producer = RefusingProducer(refusals=1)  # type: ignore[assignment]
    worker.savepoint = worker.processor.savepoint()
    worker.state.open(1)
    worker._set_owned([1])
    worker.committed = {1: 40}
    codec = worker.processor.codecs["TicketEvent"]
    now = int(time.time() * 1000)

    class Message:
        def __init__(self, offset: int, ticket: str) -> None:
            created = TicketEvent(event_id=f"{ticket}-1", ticket_id=ticket,
                                  type=EventType.CREATED, occurred_at=now - 3_600_000,
                                  channel="chat")  # fmt: skip
            self.raw, self.at, self.ticket = (
                codec.encode(ticket_event_to_avro(created)),
                offset,
                ticket,
            )

        def error(self) -> None:
            return None

        def partition(self) -> int:
            return 1

        def offset(self) -> int:
            return self.at

        def headers(self) -> None:
            return None

        def timestamp(self) -> tuple[int, int]:
            return 1, now

        def value(self) -> bytes:
            return self.raw

        def key(self) -> bytes:
            return self.ticket.encode()

    def attempt() -> list[tuple[str, Any]]:
        start = len(producer.calls)
        for offset, ticket in ((40, "T-1"), (41, "T-2")):
            worker._handle(Message(offset, ticket))  # type: ignore[arg-type]
        worker._commit()
        return producer.calls[start:]

    first = attempt()
    store = worker.state.stores[1]
    assert [name for name, _ in first][-2:] == ["offsets", "abort"]
    assert worker.consumer.seeks == [("t-ticket-events", 1, 40)]  # type: ignore[attr-defined]
    assert store.get(b"T-1") is None and store.get(b"T-2") is None
    assert worker.processor.scheduled.get(1, {}) == {}  # type: ignore[attr-defined]
    assert worker.processor.counters.events == 0 and worker.processor.counters.aborted == 1
    assert worker.committed == {1: 40} and not worker.offsets and not worker.open
    assert worker._checkpoint(1) is None  # until a commit proves the generation current
    second = attempt()  # the same records, read again
    assert second == [("begin", None), *first[1:-1], ("commit", None)]
    assert store.get(b"T-1") is not None and store.get(b"T-2") is not None
    assert set(worker.processor.scheduled[1]) == {b"T-1", b"T-2"}  # type: ignore[attr-defined]
    assert worker.processor.counters.events == 2 and worker.committed == {1: 42}
    assert worker.processor.metrics is None or worker.processor.metrics.keys == {1: 2}

    # Refused again and again (evicted, not told yet): a restart, as before.
    producer.refusals = 10
    worker.rewinds = 0
    with pytest.raises(Restart, match="4 in a row"):
        for _ in range(4):
            attempt()
    # Refused as an unknown member (evicted: its partitions may have another owner by now):
    # a restart at once, and no checkpoint on the way out.
    producer.refusals, producer.code = 1, KafkaError.UNKNOWN_MEMBER_ID
    worker.rewinds = 0
    with pytest.raises(Restart, match="Unknown member|UNKNOWN_MEMBER_ID|refused"):
        attempt()
    assert worker.rewinds == 0


def test_the_group_generation_is_read_from_the_clients_metadata() -> None:
    """A consumer in no generation (never joined, or evicted) must not lend its metadata to a
    commit: the coordinator checks no generation against it."""
    from confluent_kafka import Consumer

    from streams.runtime.worker import group_generation

    consumer = Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"})
    try:
        assert group_generation(consumer.consumer_group_metadata()) is None  # not joined: -1
    finally:
        consumer.close()
    assert group_generation(b"CGMDv2:" + (7).to_bytes(4, "little", signed=True) + b"g\0m\0") == 7
    assert group_generation(b"CGMDv3:\x07\x00\x00\x00g\0") is None  # a format it does not know
    assert group_generation(None) is None


class Revoking(Seeking):
    """The group consumer as a revocation callback sees it."""

    def consumer_group_metadata(self) -> bytes:
        return b"CGMDv2:" + (8).to_bytes(4, "little", signed=True) + b"g\0m\0"

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 12

    def assignment(self) -> list[TopicPartition]:
        return []


@pytest.mark.parametrize("refused", [False, True])
def test_a_store_is_kept_on_revocation_only_after_a_commit_under_the_generation(
    tmp_path: Path, refused: bool
) -> None:
    """Nothing to commit when a partition leaves: the worker still commits (only the offsets)
    before it writes the store's checkpoint. An evicted worker serving a stale revocation
    has that commit refused, so it keeps no store whose checkpoint would skip the records
    the partition's new owner wrote meanwhile."""
    from streams.runtime import checkpoint
    from streams.runtime.worker import Restart

    worker = offline_worker(tmp_path, "rocksdb://")
    worker.consumer.close()
    consumer = worker.consumer = Revoking()  # type: ignore[assignment]
    producer = RefusingProducer(1 if refused else 0, KafkaError.UNKNOWN_MEMBER_ID)
    worker.producer = producer  # type: ignore[assignment]
    worker.savepoint = worker.processor.savepoint()
    worker.state.open(0)
    worker._set_owned([0])
    worker.committed = {0: 5}
    source = TopicPartition("t-ticket-events", 0)
    if refused:
        with pytest.raises(Restart):
            worker._revoked(consumer, [source])  # type: ignore[arg-type]
    else:
        worker._revoked(consumer, [source])  # type: ignore[arg-type]
    names = [name for name, _ in producer.calls]
    assert names == ["begin", "offsets"] + ([] if refused else ["commit"])  # (restart: aborts)
    assert producer.calls[1][1] == ([("t-ticket-events", 0, 5)], consumer.consumer_group_metadata())
    kept = (tmp_path / "tickets" / "0" / checkpoint.FILE).exists()
    assert kept is not refused
    worker.state.close_all()


def test_the_worker_collects_cycles_less_often_and_never_walks_its_setup() -> None:
    """tune_collector: young collections every GC_YOUNG_THRESHOLD net allocations instead of
    Python's 700, and what exists before the loop starts is frozen out of every collection."""
    import gc

    from streams.runtime.worker import GC_YOUNG_THRESHOLD, tune_collector

    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_a_rewind_leaves_a_partition_forgotten_since_the_savepoint_forgotten() -> None:
    """Partition 1 was owned when the transaction began, then revoked and assigned again
    (the processor forgot its clock): an abort must not put back the earlier ownership's."""
    from streams.runtime.processor import build_processor
    from streams.runtime.topics import Topics
    from streams.sla.policy import load_policy

    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    processor = build_processor(settings, load_policy(), Topics("t-"), True)
    processor.watermark.update({0: 100, 1: 200})
    point = processor.savepoint()
    processor.forget([1])
    point.forget([1])
    processor.watermark.update({0: 150, 1: 900})  # the new ownership's events, then an abort
    for p in (0, 1):
        processor.rewind(point, p, {}, lambda key: None)
    assert processor.watermark == {0: 100}
