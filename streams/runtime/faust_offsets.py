"""Every ticket event once and in order on the Faust runtime, whatever its consumer delivers.

faust-streaming 0.15 can skip messages as a partition's stream resumes after an assignment:
a stream that takes a message while the app's flow control is still suspended drops it and
acks it (`Stream._c_aiter`, `skipped_value`), and a fetch batch cut short by a paused flow is
not fetched again. Seen under load after a restart: 7 or 8 events in a row of each partition
never reached the agent, and the acks of the skipped ones were committed. So the runtime keeps
the next offset it must process for each partition, from the group's committed offsets at
each assignment (before Faust resumes the streams), and reads a gap from the broker itself.
A gap the broker confirms (transaction markers, compaction) is passed over. For the same
reason Faust's commits are clamped to what was processed (ProcessedCommits): at a rebalance
or a stop its stream acks, unprocessed, what it takes while flow control is suspended, and a
scale-in lost those events to the next owner.

An event-time worker's partition clock commits with each offset, in the loop's format
(streams.runtime.partition_time; CommittedClocks), and an assignment resumes it with the
offset: Faust commits empty metadata, and a restarted worker then paged on a late event that
the undisturbed one silences.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.runtime import kafka_config
from streams.runtime.partition_time import (
    STORED_SUFFIX,
    decode_partition_time,
    encode_partition_time,
)
from streams.runtime.settings import Settings

READ_TIMEOUT_S = 60.0  # a gap the broker does not return in this long stops the worker
# metadata still settling (a new topic, a leader moving): asked again until READ_TIMEOUT_S
TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
})  # fmt: skip


@dataclass(frozen=True)
class Record:
    """A ticket-events message read from the broker beside Faust's consumer."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None  # ms
    headers: list[tuple[str, bytes]]


class Start(NamedTuple):
    """Where the group resumes a partition."""

    offset: int
    clock: int | None  # the event-time clock committed with the offset, if any


class Reader(Protocol):
    def starts(self, partitions: Iterable[int]) -> dict[int, Start]: ...

    def read(self, partition: int, start: int, end: int) -> list[Record]: ...


class MissingRecords(RuntimeError):
    """The broker did not return a gap's records: processing on would skip events."""


class BrokerReader:
    """Blocking reads beside Faust's consumer, called in an executor thread: the group's
    committed offsets through the admin API, and a range of one partition with a consumer of
    its own group id (assign only, nothing committed), so that nothing here ever speaks for
    the worker's group."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.admin_config = kafka_config.admin(settings)
        self.config = kafka_config.gap_reader(settings, group)
        self.consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self.consumer is None:
            self.consumer = Consumer(self.config)
        return self.consumer

    def starts(self, partitions: Iterable[int]) -> dict[int, Start]:
        """Where the group resumes each partition: its committed offset and the clock
        committed with it, or the earliest offset and no clock."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        request = ConsumerGroupTopicPartitions(self.group, tps)
        admin = AdminClient(self.admin_config)
        futures = admin.list_consumer_group_offsets([request], request_timeout=READ_TIMEOUT_S)
        committed = futures[self.group].result(timeout=READ_TIMEOUT_S).topic_partitions
        starts = {}
        for tp in committed:
            if tp.offset >= 0:
                starts[tp.partition] = Start(tp.offset, decode_partition_time(tp.metadata))
            else:
                starts[tp.partition] = Start(self._earliest(tp), None)
        return starts

    def _earliest(self, tp: TopicPartition) -> int:
        """The partition's first offset. Asked again while the client's metadata is settling:
        seen in CI as NOT_LEADER_FOR_PARTITION on a topic a second old."""
        deadline = time.monotonic() + READ_TIMEOUT_S
        while True:
            try:
                low, _ = self._client().get_watermark_offsets(tp, timeout=READ_TIMEOUT_S)
                return int(low)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() not in TRANSIENT or time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def read(self, partition: int, start: int, end: int) -> list[Record]:
        """The records of offsets start..end-1 that exist (a gap may hold none). The record at
        `end` exists (the consumer delivered it), so reading stops there."""
        client = self._client()
        client.assign([TopicPartition(self.topic, partition, start)])
        records: list[Record] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                for msg in client.consume(500, timeout=0.5):
                    if msg.error() is not None:
                        continue
                    offset = msg.offset()
                    if offset >= end:
                        return records
                    kind, at = msg.timestamp()
                    headers = list(msg.headers() or [])
                    records.append(Record(offset, msg.key(), msg.value(), at if kind else None,
                                          headers))  # fmt: skip
            raise MissingRecords(
                f"{self.topic} partition {partition}: offsets {start}..{end - 1} not read from "
                f"the broker in {READ_TIMEOUT_S:.0f} s"
            )
        finally:
            client.unassign()

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


class Cursor:
    """The first offset of each assigned partition not yet processed in full, and the
    partition's event-time clock there."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.next: dict[int, int] = {}
        self.clock: dict[int, int] = {}  # none on the wall clock, or before any event
        # `next` and `clock` as of the last flush that saw every changelog record before it
        # acknowledged (ChangelogAcks): what may be committed
        self.durable: dict[int, int] = {}
        self.durable_clock: dict[int, int] = {}
        self.resets = 0
        self.gaps = 0  # gaps found with records in them
        self.read = 0  # events read from the broker for them

    async def reset(self, partitions: Iterable[int]) -> None:
        """At each assignment, before the streams resume: where the group resumes."""
        loop = asyncio.get_running_loop()
        starts = await loop.run_in_executor(None, self.reader.starts, list(partitions))
        self.next = {p: start.offset for p, start in starts.items()}
        self.clock = {p: start.clock for p, start in starts.items() if start.clock is not None}
        self.durable = dict(self.next)
        self.durable_clock = dict(self.clock)
        self.resets += 1

    def step(self, partition: int, offset: int) -> bool | None:
        """True: the message is the next one (process it, then `done`); None: delivered
        again (processed already); False: a gap before it (`fill` it first)."""
        expected = self.next.get(partition)
        if expected is None or offset == expected:
            return True
        if offset < expected:
            return None
        return False

    def done(self, partition: int, offset: int, clock: int | None = None) -> None:
        """The message is processed; `clock`: the partition's event-time clock after it."""
        self.next[partition] = offset + 1
        if clock is not None:
            self.clock[partition] = clock

    def mark(self) -> tuple[int, dict[int, int], dict[int, int]]:
        """Where the cursor is as a flush begins (see `settle`)."""
        return self.resets, dict(self.next), dict(self.clock)

    def settle(self, mark: tuple[int, dict[int, int], dict[int, int]]) -> None:
        """The flush that began at `mark` has every changelog record before it on the broker:
        what was processed by then may be committed (unless an assignment came since)."""
        resets, processed, clocks = mark
        if resets == self.resets:
            self.durable = processed
            self.durable_clock = clocks

    def metadata(self, partition: int) -> str:
        """The metadata to commit with the partition's offset: its durable clock. Faust may
        commit an offset short of `durable` (its acks lag), and that clock is still right
        for it: the events in between are on the changelog, so their second reading finds
        them seen and does nothing the clock could change."""
        clock = self.durable_clock.get(partition)
        return "" if clock is None else encode_partition_time(clock) + STORED_SUFFIX

    async def fill(self, partition: int, offset: int) -> list[Record]:
        """The records the consumer did not deliver before `offset`, from the broker."""
        loop = asyncio.get_running_loop()
        start = self.next[partition]
        records = await loop.run_in_executor(None, self.reader.read, partition, start, offset)
        if records:
            self.gaps += 1
            self.read += len(records)
        return records

    def clamp(self, offsets: Mapping[Any, int], topic: str) -> dict[Any, int]:
        """Offsets to commit, none of `topic` past what was processed with its changelog
        records on the broker: Faust acks the messages it skips, so its own offsets can pass
        events nobody processed (seen at a scale-in: the leaving worker committed them, the
        next owner never read them)."""
        out = {}
        durable = self.durable
        for tp, offset in offsets.items():
            if tp.topic != topic:
                out[tp] = offset
            elif tp.partition in durable:
                out[tp] = min(offset, durable[tp.partition])
        return out


class ProcessedCommits:
    """The Faust consumer's offset commit, clamped by the cursor (Cursor.clamp)."""

    def __init__(self, consumer: Any, cursor: Cursor, topic: str) -> None:
        self.commit = consumer._commit
        self.cursor = cursor
        self.topic = topic
        consumer._commit = self

    async def __call__(self, offsets: Mapping[Any, int]) -> bool:
        clamped = self.cursor.clamp(offsets, self.topic)
        if not clamped:
            return False
        committed: bool = await self.commit(clamped)
        return committed


class CommittedClocks:
    """aiokafka's commit, which Faust calls with empty metadata, with each partition of
    `topic` carrying the cursor's clock (Cursor.metadata). Runs on the consumer's thread; it
    only reads the cursor."""

    def __init__(self, consumer: Any, cursor: Cursor, topic: str) -> None:
        self.commit = consumer.commit
        self.cursor = cursor
        self.topic = topic
        consumer.commit = self

    @classmethod
    def install(cls, faust_consumer: Any, cursor: Cursor, topic: str) -> None:
        """Once the Faust consumer's aiokafka consumer exists (at the first assignment)."""
        consumer = faust_consumer._thread._ensure_consumer()
        if not isinstance(consumer.commit, cls):
            cls(consumer, cursor, topic)

    async def __call__(self, offsets: Mapping[Any, Any] | None = None) -> Any:
        if offsets:
            metadata = self.cursor.metadata
            offsets = {
                tp: (_offset(value), metadata(tp.partition)) if tp.topic == self.topic else value
                for tp, value in offsets.items()
            }
        return await self.commit(offsets)


def _offset(value: Any) -> int:
    """aiokafka takes an offset or an (offset, metadata) pair."""
    return value if isinstance(value, int) else int(value[0])


def faust_message(topic: str, partition: int, record: Record) -> Any:
    """A Faust message for a record read beside its consumer, for the consumer's ack (its
    commits advance only over offsets it saw acked)."""
    from faust.types.tuples import Message

    timestamp = record.timestamp / 1000 if record.timestamp is not None else 0.0
    return Message(topic, partition, record.offset, timestamp, 0, record.headers,
                   record.key, record.value, None)  # fmt: skip
