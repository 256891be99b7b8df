"""The Faust runtime's pieces that need no broker (the pipeline tests run it on a real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.faust_offsets import (
    CommittedClocks,
    Cursor,
    ProcessedCommits,
    Record,
    Start,
)
from streams.runtime.faust_runtime import (
    ChangelogAcks,
    ChangelogError,
    FaustRuntime,
    TableStore,
    UncleanStop,
    clock_topic,
    guarantee,
)
from streams.runtime.partition_time import (
    STORED_SUFFIX,
    decode_partition_time,
    encode_partition_time,
)
from streams.runtime.settings import ConfigError, load_settings
from streams.runtime.topics import Topics
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import load_policy


def test_at_least_once_is_the_default_and_exactly_once_is_refused() -> None:
    assert guarantee({}) == "at_least_once"
    assert guarantee({"ESCALATOR_PROCESSING_GUARANTEE": "at_least_once"}) == "at_least_once"
    with pytest.raises(ConfigError, match="at-least-once only") as refused:
        guarantee({"ESCALATOR_PROCESSING_GUARANTEE": "exactly_once"})
    assert "\n" not in str(refused.value)


def test_writes_wait_for_apply_and_reads_see_them_first() -> None:
    table: dict[bytes, bytes] = {b"t1": b"old", b"t2": b"gone soon"}
    store = TableStore(table)
    store.put(b"t1", b"new")
    store.delete(b"t2")
    store.delete(b"never-there")
    assert store.get(b"t1") == b"new" and store.get(b"t2") is None
    assert table == {b"t1": b"old", b"t2": b"gone soon"}  # nothing written before delivery
    store.apply()
    assert table == {b"t1": b"new"}
    assert store.get(b"t1") == b"new" and not store.held


def test_the_table_and_its_changelog_keep_the_state_bytes(tmp_path: Path) -> None:
    """Raw codecs: a json codec fails every changelog record at recovery (seen on a rebalance
    before the table's types were bytes)."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_APP_ID": "x"})
    runtime = FaustRuntime(settings, load_policy(), Topics(""), event_time=False)
    changelog = runtime.table.changelog_topic
    assert changelog.get_topic_name() == "x-tickets-changelog"  # the loop's changelog topic
    assert (changelog.key_serializer, changelog.value_serializer) == ("raw", "raw")
    assert runtime.table.key_serializer == runtime.table.value_serializer == "raw"
    assert clock_topic(settings) == "x-clock"
    status, body = runtime.readiness()
    assert status == 503 and b'"ready": false' in body


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: float | None = None


@dataclass
class FakeEvent:
    message: FakeMessage


class HeldProducer:
    """Sends whose delivery the test decides."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, asyncio.Future[None]]] = []

    async def send(self, topic: str, key: Any, value: Any, partition: int, *_: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, future))
        return future


class FakeStream:
    def __init__(self, events: list[FakeEvent]) -> None:
        self.items = events

    async def events(self) -> AsyncIterator[FakeEvent]:
        for event in self.items:
            yield event


async def test_state_reaches_the_table_only_after_the_outputs_are_delivered(
    tmp_path: Path,
) -> None:
    """The no-loss rule of at-least-once: a state that has seen an event implies its outputs
    are on Kafka, so a crash before delivery repeats the event instead of dropping them."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)})
    topics = Topics("")
    runtime = FaustRuntime(settings, load_policy(), topics, event_time=True)
    table: dict[bytes, bytes] = {}
    runtime.store.table = table
    producer = HeldProducer()
    runtime.app._producer = producer
    codec = codec_for("TicketEvent", settings)
    created = TicketEvent("e1", "T-1", EventType.CREATED, 1_767_000_000_000,
                          tags_added=("legal",), channel="email")  # fmt: skip
    message = FakeMessage(topics.ticket_events, 2, 0, b"T-1",
                          codec.encode(ticket_event_to_avro(created)))  # fmt: skip
    agent = asyncio.create_task(runtime._tickets(FakeStream([FakeEvent(message)])))
    while not producer.sent:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert {topic for topic, _, _ in producer.sent} >= {topics.escalations}  # legal: escalated
    assert all(partition == 2 for _, partition, _ in producer.sent)  # the input's partition
    assert table == {} and not agent.done()  # held while the outputs are in flight
    for _, _, future in producer.sent:
        future.set_result(None)
    await asyncio.wait_for(agent, 5)
    assert list(table) == [b"T-1"]


class GivingUpProducer:
    """Faust's producer flush as it behaves under load: returns with records still unsent."""

    def __init__(self) -> None:
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1


def runtime_at(tmp_path: Path) -> FaustRuntime:
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)})
    return FaustRuntime(settings, load_policy(), Topics(""), event_time=True)


async def test_offsets_are_committed_only_after_the_changelog_records_before_them(
    tmp_path: Path,
) -> None:
    """Faust flushes its producer and then commits offsets; its flush gives up after 0.1 s
    without a send, so under load offsets went out ahead of table writes still buffered, and
    a crash or a scale-in lost their events. The flush now waits for the broker's acks."""
    table = runtime_at(tmp_path).table
    producer = GivingUpProducer()
    acks = ChangelogAcks(producer, {table.name: table}, timeout_s=30)
    assert producer.flush is acks  # what Faust's commit calls
    first = table.send_changelog(0, b"T-1", b"state")
    commit = asyncio.create_task(producer.flush())
    await asyncio.sleep(0.05)
    assert not commit.done() and producer.flushes == 1  # Faust's flush returned
    later = table.send_changelog(0, b"T-2", b"state")  # an event past the committed offsets
    first.set_result(None)
    await asyncio.wait_for(commit, 5)  # not held by the later record
    assert table.unacked == {later}


async def test_the_cursor_lets_commit_only_what_a_flush_saw_acknowledged(tmp_path: Path) -> None:
    """Events processed while a flush waits have changelog records it does not wait for:
    their offsets wait for the next flush."""
    runtime = runtime_at(tmp_path)
    table, cursor = runtime.table, Cursor(FakeReader({}, {0: 0}))
    await cursor.reset([0])
    acks = ChangelogAcks(GivingUpProducer(), {table.name: table}, 30, cursor)
    cursor.done(0, 0)
    first = table.send_changelog(0, b"T-1", b"state")
    flush = asyncio.create_task(acks())
    await asyncio.sleep(0.05)
    cursor.done(0, 1)  # processed while the flush waits
    table.send_changelog(0, b"T-2", b"state")
    first.set_result(None)
    await asyncio.wait_for(flush, 5)
    assert cursor.durable == {0: 1} and cursor.next == {0: 2}


async def test_a_failed_or_unacknowledged_changelog_record_fails_the_commit(
    tmp_path: Path,
) -> None:
    table = runtime_at(tmp_path).table
    acks = ChangelogAcks(GivingUpProducer(), {table.name: table}, timeout_s=0.05)
    lost = table.send_changelog(0, b"T-1", b"state")
    with pytest.raises(ChangelogError, match="1 changelog records of table 'tickets' not ack"):
        await acks()
    lost.cancel()
    failed = table.send_changelog(1, b"T-2", b"state")
    failed.set_exception(OSError("broker gone"))
    await asyncio.sleep(0)
    with pytest.raises(ChangelogError, match="failed \\(broker gone\\): offsets not committed"):
        await ChangelogAcks(GivingUpProducer(), {table.name: table}, timeout_s=5)()


def test_a_start_after_an_unclean_stop_drops_the_local_table_files(tmp_path: Path) -> None:
    """RocksDB may hold writes whose changelog records never left a killed worker; a later
    owner of the partition would restore without them, so the table restores in full."""
    said: list[str] = []
    tables = tmp_path / "faust" / "v1" / "tables"
    (tables / "tickets-0.db").mkdir(parents=True)
    unclean = UncleanStop(tmp_path / "faust", tables, said.append)
    assert unclean.begin() is False  # first start: nothing to distrust
    assert (tables / "tickets-0.db").exists() and unclean.marker.exists()
    unclean.end()  # a clean stop
    assert not unclean.marker.exists()
    assert unclean.begin() is False and (tables / "tickets-0.db").exists() and not said
    # killed: no end(); the next start drops the files
    assert unclean.begin() is True
    assert not tables.exists() and unclean.marker.exists()
    assert said == ["the last stop was not clean: the table restores from its changelog"]


def test_the_runtime_checks_for_an_unclean_stop_where_its_table_files_are(tmp_path: Path) -> None:
    runtime = runtime_at(tmp_path)
    assert runtime.table.opening is runtime.unclean
    assert runtime.unclean.tabledir == Path(runtime.app.conf.tabledir)
    assert runtime.unclean.marker.parent == tmp_path / "faust"
    assert runtime.app.producer.flush is runtime.acks
    assert list(runtime.acks.tables.values()) == [runtime.table]  # the app's tables


class DeliveringProducer:
    async def send(self, *_: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FakeReader:
    """The broker beside Faust's consumer: committed offsets and the partition's records."""

    def __init__(
        self,
        records: dict[int, list[Record]],
        starts: dict[int, int],
        clocks: dict[int, int] | None = None,
    ) -> None:
        self.records = records
        self.starts_at = starts
        self.clocks = clocks or {}
        self.reads: list[tuple[int, int, int]] = []

    def starts(self, partitions: Any) -> dict[int, Start]:
        return {p: Start(self.starts_at[p], self.clocks.get(p)) for p in partitions}

    def read(self, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.records[partition] if start <= r.offset < end]


class AckingConsumer:
    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack(self, message: Any) -> bool:
        self.acked.append((message.partition, message.offset))
        return True


async def test_events_the_consumer_skips_are_read_from_the_broker_in_order(
    tmp_path: Path,
) -> None:
    """Faust 0.15's streams can drop (and ack) messages as they resume after an assignment;
    seen after a restart under load: 7 events in a row of each partition never processed."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)})
    topics = Topics("")
    codec = codec_for("TicketEvent", settings)
    created = 1_767_000_000_000

    def record(offset: int, n: int) -> Record:
        event = TicketEvent(f"e{n}", f"T-{n}", EventType.CREATED, created + n, channel="email")
        value = codec.encode(ticket_event_to_avro(event))
        return Record(offset, f"T-{n}".encode(), value, created + n, [])

    log = [record(offset, offset) for offset in range(8)]  # partition 1, offsets 0..7
    reader = FakeReader({1: log}, {1: 2})  # the group had committed offset 2
    runtime = FaustRuntime(settings, load_policy(), topics, event_time=True, reader=reader)
    table: dict[bytes, bytes] = {}
    runtime.store.table = table
    runtime.app._producer = DeliveringProducer()
    consumer = runtime.app._consumer = AckingConsumer()
    await runtime.cursor.reset([1])

    def delivered(offset: int) -> FakeEvent:
        r = log[offset]
        return FakeEvent(FakeMessage(topics.ticket_events, 1, offset, r.key, r.value))

    # offsets 2 and 3 delivered, 4..5 skipped by the consumer, 6 delivered, 3 again, 7
    stream = FakeStream([delivered(o) for o in (2, 3, 6, 3, 7)])
    await asyncio.wait_for(runtime._tickets(stream), 10)
    assert reader.reads == [(1, 4, 6)]
    assert sorted(table) == [f"T-{n}".encode() for n in range(2, 8)]  # each once: 2..7
    assert runtime.events == 6  # offset 3 delivered again is not processed again
    assert consumer.acked == [(1, 4), (1, 5)]  # Faust commits past what it never delivered
    assert runtime.cursor.next == {1: 8} and (runtime.cursor.gaps, runtime.cursor.read) == (1, 2)
    assert runtime.cursor.clock == {1: created + 7}  # the partition's clock after offset 7


async def test_a_gap_the_broker_confirms_is_passed_over(tmp_path: Path) -> None:
    """Transaction markers and compaction leave offsets with no record: nothing to read."""
    cursor = Cursor(FakeReader({0: []}, {0: 10}))
    await cursor.reset([0])
    assert cursor.step(0, 10) is True
    cursor.done(0, 10)
    assert cursor.step(0, 13) is False
    assert await cursor.fill(0, 13) == []
    cursor.done(0, 13)
    assert cursor.next == {0: 14} and cursor.gaps == 0
    assert cursor.step(0, 12) is None  # before the cursor: processed already
    assert cursor.step(0, 14) is True


class CommittingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True


async def test_offsets_past_what_was_processed_are_never_committed(tmp_path: Path) -> None:
    """Faust acks the messages its stream skips (flow control suspended at a rebalance or a
    stop), so its offsets can pass events nobody processed: a scale-in lost them."""
    cursor = Cursor(FakeReader({}, {0: 5, 1: 7}))
    await cursor.reset([0, 1])
    consumer = CommittingConsumer()
    ProcessedCommits(consumer, cursor, "ticket-events")
    cursor.done(0, 5)  # offset 5 processed; 6..9 skipped and acked by Faust's stream
    offsets = {TP("ticket-events", 0): 10, TP("ticket-events", 1): 7, TP("x-clock", 0): 99,
               TP("ticket-events", 2): 4}  # fmt: skip
    assert await consumer._commit(offsets) is True  # before a flush: 5's changelog unsure
    assert consumer.commits.pop()[TP("ticket-events", 0)] == 5
    cursor.settle(cursor.mark())  # a flush saw offset 5's changelog records acknowledged
    assert await consumer._commit(offsets) is True
    # partition 2 is not assigned (no cursor): not committed
    assert consumer.commits == [
        {TP("ticket-events", 0): 6, TP("ticket-events", 1): 7, TP("x-clock", 0): 99}
    ]
    assert await consumer._commit({TP("ticket-events", 2): 4}) is False
    assert len(consumer.commits) == 1


async def test_the_cursor_keeps_each_partitions_clock_with_what_may_be_committed() -> None:
    """An event-time partition's clock commits with its offset (streams.runtime.
    partition_time): the one of the last flushed point, resumed from the group's commit."""
    cursor = Cursor(FakeReader({}, {0: 5, 1: 7}, clocks={0: 1_000}))
    await cursor.reset([0, 1])
    assert (cursor.clock, cursor.durable_clock) == ({0: 1_000}, {0: 1_000})
    assert decode_partition_time(cursor.metadata(0)) == 1_000 and cursor.metadata(1) == ""
    cursor.done(0, 5, 2_000)
    cursor.done(1, 7, 3_000)
    assert decode_partition_time(cursor.metadata(0)) == 1_000  # not flushed yet
    mark = cursor.mark()
    cursor.done(0, 6, 4_000)  # processed while the flush waits
    cursor.settle(mark)
    assert cursor.durable == {0: 6, 1: 8} and cursor.durable_clock == {0: 2_000, 1: 3_000}
    assert [decode_partition_time(cursor.metadata(p)) for p in (0, 1)] == [2_000, 3_000]
    cursor.done(1, 8)  # the wall clock (or no clock yet) leaves the clock as it was
    assert cursor.clock == {0: 4_000, 1: 3_000}
    await cursor.reset([0])  # a new assignment: a mark from before it settles nothing
    stale = (mark[0], {0: 99}, {0: 9_999})
    cursor.settle(stale)
    assert cursor.durable == {0: 5} and cursor.durable_clock == {0: 1_000}


class AiokafkaConsumer:
    def __init__(self) -> None:
        self.commits: list[Any] = []

    async def commit(self, offsets: Any = None) -> None:
        self.commits.append(offsets)


class FaustConsumer:
    def __init__(self, consumer: AiokafkaConsumer) -> None:
        self._thread = self
        self.consumer = consumer

    def _ensure_consumer(self) -> AiokafkaConsumer:
        return self.consumer


async def test_faust_commits_carry_each_partitions_clock() -> None:
    """Faust commits with empty metadata: its aiokafka consumer's commit adds the clock to
    each ticket-events offset, and leaves other topics' (the clock topic's) as they were."""
    cursor = Cursor(FakeReader({}, {0: 5, 1: 7}, clocks={0: 1_000}))
    await cursor.reset([0, 1])
    aiokafka = AiokafkaConsumer()
    CommittedClocks.install(FaustConsumer(aiokafka), cursor, "ticket-events")
    CommittedClocks.install(FaustConsumer(aiokafka), cursor, "ticket-events")  # once only
    assert isinstance(aiokafka.commit, CommittedClocks)
    assert aiokafka.commit.commit.__self__ is aiokafka  # type: ignore[attr-defined]
    await aiokafka.commit({TP("ticket-events", 0): (5, ""), TP("ticket-events", 1): (7, ""),
                           TP("x-clock", 0): (3, "")})  # fmt: skip
    (offsets,) = aiokafka.commits
    assert offsets[TP("x-clock", 0)] == (3, "") and offsets[TP("ticket-events", 1)] == (7, "")
    # the bytes the loop's commits store (confluent-kafka adds the NUL: partition_time)
    assert offsets[TP("ticket-events", 0)] == (5, encode_partition_time(1_000) + STORED_SUFFIX)
    await aiokafka.commit()  # no offsets: aiokafka's own (never called so by Faust)
    assert aiokafka.commits[-1] is None
