"""`escalator sink redis`: keeps the live escalation board in Redis, a projection of the
ticket-board topic.

The worker decides what the board shows of each ticket (streams.sla.board.follow) and
publishes it on the compacted `ticket-board` topic, feed lines included; this sink only mirrors
it: no policy, no clock, no other topic. One consumer group reads `ticket-board`
(read_committed, no auto-commit). Each batch becomes one idempotent Redis transaction
(connectors.sinks.board_store, which records the offsets it applied), and only after it
succeeded are the batch's offsets committed, synchronously. A crash between the two re-reads
the batch, which then changes nothing. While Redis is unreachable the batch is retried with
backoff and nothing is committed, so nothing is lost.

No record stops the sink: a record it cannot decode, and any record whose handling raises
(in decoding, or in applying it to the board, found by applying the batch record by record
when the whole batch fails other than by a Redis error), is parked on `redis-sink-dlq` (a
DeadLetter: original bytes, coordinates, error) before the batch's offsets are committed, and
the sink goes on.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import redis
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge, Histogram

from connectors.sinks.board_store import Applied, BoardKeys, BoardWriter, Update
from schemas.codec import DecodeError, ErrorKind, codec_for
from schemas.records import dead_letter, ticket_board_from_avro
from streams.runtime.kafka_config import committed_reader, idempotent_producer
from streams.runtime.loop import ConsumeLoop
from streams.runtime.settings import Settings, redact_url
from streams.runtime.topics import Topics

log = logging.getLogger("escalator.sink.redis")
Item = Update

COMPONENT = "sink-redis"
READY = "sink redis ready"
SOURCES = ("ticket-board",)

CONSUMED = Counter("escalator_redis_sink_consumed_total", "Records read, by topic", ["topic"])
APPLIED = Counter(
    "escalator_redis_sink_applied_total",
    "Records applied to the board (tombstones included)",
    ["topic"],
)
DUPLICATES = Counter(
    "escalator_redis_sink_duplicates_total",
    "Records at offsets the board had applied already (read again after a restart), changed "
    "nothing",
    ["topic"],
)
SKIPPED = Counter(
    "escalator_redis_sink_skipped_total",
    "Records not applied: undecodable (parked on redis-sink-dlq)",
    ["topic", "reason"],
)
WRITE_ERRORS = Counter(
    "escalator_redis_sink_write_errors_total",
    "Redis transactions that failed and were retried (nothing committed meanwhile)",
)
COMMIT_ERRORS = Counter(
    "escalator_redis_sink_commit_errors_total",
    "Offset commits that failed (the records are read again and change nothing)",
)
DEAD_LETTERS = Counter(
    "escalator_redis_sink_dead_letters_total",
    "Records parked on redis-sink-dlq: undecodable, or their handling raised",
    ["topic"],
)
OPEN = Gauge("escalator_board_open_escalations", "Tickets with an open escalation on the board")
LAG = Gauge("escalator_redis_sink_lag_records", "Records not read yet, by topic", ["topic"])
BATCH_SECONDS = Histogram(
    "escalator_redis_sink_batch_seconds",
    "Time to apply one batch to Redis",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


NOT_WRITABLE = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.ExecAbortError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
)


@dataclass
class Parked:
    """A record the sink could not handle, on its way to redis-sink-dlq."""

    msg: Message
    kind: ErrorKind
    error: str


@dataclass
class SinkOptions:
    group: str
    start: str = "earliest"  # where a group without committed offsets starts
    batch_size: int = 1000
    poll_s: float = 0.25
    heartbeat_s: float = 1.0
    unhealthy_after_s: float = 30.0  # /healthz fails when Redis or Kafka is down this long
    backoff_cap_s: float = 5.0


class Outage:
    """Since when a dependency has been failing (None while it works)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def ok(self) -> None:
        self.since = None

    def longer_than(self, seconds: float) -> bool:
        return self.since is not None and time.monotonic() - self.since > seconds


class RedisSink(ConsumeLoop):
    """The consumer loop: `run()` until `stop()`."""

    who = "sink redis"
    ready_text = READY

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        options: SinkOptions,
        keys: BoardKeys | None = None,
        client: redis.Redis | None = None,
        out: TextIO = sys.stderr,
    ) -> None:
        super().__init__(out, math.inf)  # no status line: the heartbeat is on the board
        self.settings = settings
        self.options = options
        self.keys = keys or BoardKeys.from_settings(settings, topics.prefix)
        self.client = client or settings.redis.client(decode_responses=True)
        self.writer = BoardWriter(self.client, self.keys, settings.connectors.board_stream_maxlen)
        self.sources = {topics.name(base): base for base in SOURCES}
        self.board_codec = codec_for("TicketBoard", settings, topics)
        self.dlq_codec = codec_for("DeadLetter", settings, topics)
        self.dlq_topic = topics.redis_sink_dlq
        self.producer = Producer({**idempotent_producer(settings), "linger.ms": 0})
        self.consumer = Consumer(
            committed_reader(
                settings,
                options.group,
                **{
                    "auto.offset.reset": options.start,
                    # Same partition of every topic to one member: one ticket, one writer.
                    "partition.assignment.strategy": "range",
                    "error_cb": self._kafka_error,
                },
            )
        )
        self.redis_down = Outage()
        self.kafka_down = Outage()
        self.started_at = int(time.time() * 1000)
        self.counts = {"consumed": 0, "applied": 0, "duplicates": 0, "batches": 0, "parked": 0}
        self._next_beat = 0.0

    def healthy(self) -> bool:
        limit = self.options.unhealthy_after_s
        return not (self.redis_down.longer_than(limit) or self.kafka_down.longer_than(limit))

    def _kafka_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.kafka_down.failed()
        log.warning("kafka: %s", err)

    # ------------------------------------------------------------------ loop

    def begin(self) -> None:
        self.consumer.subscribe(list(self.sources))
        self.ready(
            f": reading {', '.join(self.sources)} as group {self.options.group}, "
            f"board {self.keys.prefix}* on {redact_url(self.settings.redis.url)}, "
            f"parking on {self.dlq_topic}"
        )

    def turn(self) -> bool:
        messages = self.consumer.consume(self.options.batch_size, self.options.poll_s)
        items: list[tuple[Message, Item]] = []
        parked: list[Parked] = []
        offsets = self._collect(messages, items, parked)
        if messages:
            self.kafka_down.ok()
        if offsets and self._write(items, parked):
            self._park(parked)
            self._commit(offsets)
        self._beat()
        return bool(messages)

    def end(self) -> None:
        self.say(
            f"stopped: {self.counts['consumed']:,} records read, {self.counts['applied']:,} "
            f"applied, {self.counts['duplicates']:,} duplicates, {self.counts['parked']:,} parked"
        )

    def _collect(
        self, messages: list[Message], items: list[tuple[Message, Item]], parked: list[Parked]
    ) -> dict[tuple[str, int], int]:
        """Decode a poll's messages into items (or parked records), and the offsets to commit
        after them."""
        offsets: dict[tuple[str, int], int] = {}
        now = int(time.time() * 1000)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer: %s", err)
                continue
            topic = msg.topic() or ""
            offsets[(topic, msg.partition() or 0)] = (msg.offset() or 0) + 1
            base = self.sources[topic]
            CONSUMED.labels(base).inc()
            self.counts["consumed"] += 1
            try:
                item = self._take(base, msg, now)
            except DecodeError as exc:
                SKIPPED.labels(base, "undecodable").inc()
                parked.append(Parked(msg, exc.kind, str(exc)))
                continue
            except Exception as exc:  # anything else: park it, never stop on one record
                parked.append(Parked(msg, ErrorKind.INVALID_FIELD, _failure("read", exc)))
                continue
            if isinstance(item, str):
                SKIPPED.labels(base, item).inc()
            elif item is not None:
                items.append((msg, item))
        return offsets

    def _take(self, base: str, msg: Message, now: int) -> Item | str | None:
        """One record's update for the board (raises DecodeError, or ValueError for a
        tombstone without a key)."""
        value, key = msg.value(), msg.key()
        if value is None:
            if not key:
                raise ValueError("a tombstone without a key (the key is the ticket id)")
            record = None
            ticket_id = key.decode()
        else:
            record = ticket_board_from_avro(self.board_codec.decode(value))
            ticket_id = record.view.ticket_id
        return Update(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, ticket_id, record)

    def _write(self, items: list[tuple[Message, Item]], parked: list[Parked]) -> bool:
        """Apply the items in one transaction; when that raises other than by a Redis error,
        apply them one by one and park those that raise. False if stopped first."""
        try:
            return self._apply([item for _, item in items])
        except Exception as whole:
            log.warning("a batch failed (%s); applying it record by record", whole)
        for msg, item in items:
            try:
                if not self._apply([item]):
                    return False
            except Exception as exc:
                parked.append(Parked(msg, ErrorKind.INVALID_FIELD, _failure("apply", exc)))
        return True

    def _apply(self, batch: list[Item]) -> bool:
        """Apply a batch, retrying with backoff while Redis fails; False if stopped first.
        Redis refusing a command (ResponseError) is the record's fault, unless it refuses
        every write (read-only replica, out of memory, cluster down): that is an outage."""
        delay = 0.1
        while self.running:
            started = time.monotonic()
            try:
                applied = self.writer.apply(batch)
            except redis.RedisError as exc:
                if isinstance(exc, redis.ResponseError) and not isinstance(exc, NOT_WRITABLE):
                    raise
                WRITE_ERRORS.inc()
                self.redis_down.failed()
                log.warning("redis: %s; retrying in %.1fs (nothing committed)", exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, self.options.backoff_cap_s)
                continue
            BATCH_SECONDS.observe(time.monotonic() - started)
            self.redis_down.ok()
            self._count(applied)
            return True
        return False

    def _count(self, applied: Applied) -> None:
        APPLIED.labels(SOURCES[0]).inc(applied.records + applied.tombstones)
        DUPLICATES.labels(SOURCES[0]).inc(applied.duplicates)
        self.counts["applied"] += applied.records + applied.tombstones
        self.counts["duplicates"] += applied.duplicates
        self.counts["batches"] += 1

    def _park(self, parked: list[Parked]) -> None:
        """Produce the parked records and wait for the broker's acks; the offsets are
        committed after, so a failure here re-reads them (raises KafkaException)."""
        if not parked:
            return
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        at = int(time.time() * 1000)
        for item in parked:
            msg = item.msg
            kind, stamp = msg.timestamp()
            record = dead_letter(
                msg.value(), msg.key(), msg.topic() or "", msg.partition() or 0,
                msg.offset() or 0, stamp if kind != 0 else None, item.kind, item.error, None, at,
            )  # fmt: skip
            self.producer.produce(self.dlq_topic, self.dlq_codec.encode(record), msg.key(),
                                  on_delivery=on_delivery)  # fmt: skip
        left = self.producer.flush(30)
        if errors or left:
            raise KafkaException(errors[0] if errors else KafkaError(KafkaError._MSG_TIMED_OUT))
        for item in parked:
            base = self.sources[item.msg.topic() or ""]
            DEAD_LETTERS.labels(base).inc()
            log.warning("parked %s[%d]@%d on %s: %s", item.msg.topic(), item.msg.partition(),
                        item.msg.offset(), self.dlq_topic, item.error)  # fmt: skip
        self.counts["parked"] += len(parked)

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        positions = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            self.consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as exc:
            COMMIT_ERRORS.inc()
            log.warning("commit failed (the batch will be read again, harmlessly): %s", exc)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def _beat(self) -> None:
        """At most every heartbeat_s: lag, open count and the heartbeat on the board."""
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.options.heartbeat_s
        lag = self._lag()
        if self.kafka_down.since is not None:
            try:
                self.consumer.list_topics(timeout=2)
                self.kafka_down.ok()
            except KafkaException:
                pass
        try:
            OPEN.set(self.writer.open_count())
            self.writer.heartbeat(
                {**self.counts, "lag": sum(lag.values()) if lag else -1,
                 "started_at": self.started_at, "group": self.options.group}
            )  # fmt: skip
            self.redis_down.ok()
        except redis.RedisError:
            self.redis_down.failed()

    def _lag(self) -> dict[str, int]:
        """Records between the position and the end, by topic (from the fetcher's cache).
        Empty (the heartbeat's lag -1: unknown) until every assigned partition's end is
        known: a partition not fetched yet is not caught up, whatever the others say."""
        lag: dict[str, int] = {}
        unknown = False
        try:
            assigned = self.consumer.assignment()
            for tp in self.consumer.position(assigned):
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    unknown = True
                    continue
                at = tp.offset if tp.offset >= 0 else low
                base = self.sources[tp.topic]
                lag[base] = lag.get(base, 0) + max(high - at, 0)
        except KafkaException:
            return {}
        for base, value in lag.items():
            LAG.labels(base).set(value)
        return {} if unknown else lag

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)


def _failure(step: str, exc: Exception) -> str:
    return f"cannot {step} the record: {type(exc).__name__}: {exc}"


def run_redis_sink(settings: Settings, topics: Topics, options: SinkOptions) -> int:
    """The `escalator sink redis` command body; stops cleanly on SIGTERM/SIGINT."""
    return RedisSink(settings, topics, options).main_serving(settings.connectors, COMPONENT)
