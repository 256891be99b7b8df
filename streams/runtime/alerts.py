"""`escalator alerts`: queue-level ops alerts from `queue-stats`, exactly once, to `ops-alerts`.

One process reads every partition of `queue-stats` (the worker's per-queue counts, see
streams.runtime.queue_stats), aggregates them in event-time hopping windows with the pure core
(streams.sla.queues), and produces an Avro `OpsAlert` for each alert of a closed window.

Exactly once, in a consume-transform-produce loop with a transactional producer:
each batch of stats, the alerts of the windows it closes and the consumed offsets are one
transaction (offsets committed with send_offsets_to_transaction to the group
``<app id>-alerts``; the transactional id is the same, so a second instance fences the
first). On start the process re-reads `queue-stats` from the beginning up to the committed
offsets without producing: the alerts of that prefix were committed with it. Then it
closes windows up to that prefix's watermark, silently, and continues. So a crash or
restart never loses or repeats an alert for read_committed consumers.

Watermark: each message carries its partition's clock (`wm`); the watermark is the
smallest clock over all partitions minus `ops_alerts.allowed_lateness`. A window closes
when its end is at or before the watermark. A stat older than its own partition's clock
(the one its message carries) minus the lateness is late: dropped and counted (logged),
never half-counted.

Queue aggregation needs every partition, so run one instance (the partitions are
assigned, not balanced by the group); a second instance fences the first. Any Kafka
transaction error ends the process with exit code 1; restarting it is safe.

/metrics and /healthz on ESCALATOR_METRICS_PORT, as a sink's: what it read since it was
ready and the alerts it committed (a rebuild re-reads what an earlier run counted, so it
counts nothing: a restart never shows as a burst), and its watermark; /healthz fails once
the loop, the rebuild included, has not turned for ESCALATOR_LIVENESS_STALL_S.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from schemas.codec import codec_for
from schemas.readable import describe
from schemas.records import ops_alert
from streams.runtime.kafka_config import committed_reader, transactional_producer
from streams.runtime.loop import ConsumeLoop
from streams.runtime.queue_stats import StatMessage, decode_stat
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics
from streams.sla.events import format_ts
from streams.sla.policy import Policy
from streams.sla.queues import AlertKind, PartitionClock, QueueAlert, QueueWindows

log = logging.getLogger("escalator.alerts")

READY = "alerts ready"
COMPONENT = "alerts"

STATS_READ = Counter(
    "escalator_ops_stats_total",
    "Queue stats escalator alerts read since it was ready, by outcome: counted in the windows, "
    "late (older than their partition's clock less ops_alerts.allowed_lateness: dropped), "
    "duplicate (counted already), bad (undecodable: skipped)",
    ["outcome"],
)
OUTCOMES = ("counted", "late", "duplicate", "bad")
ALERTS_SENT = Counter(
    "escalator_ops_alerts_sent_total", "Queue ops alerts committed to ops-alerts, by kind", ["kind"]
)
WATERMARK = Gauge(
    "escalator_ops_alerts_watermark_timestamp_seconds",
    "Event time up to which escalator alerts closes windows: the slowest queue-stats "
    "partition's clock less ops_alerts.allowed_lateness (0 until every partition has sent one)",
)


@dataclass
class Stats:
    rebuilt: int = 0
    consumed: int = 0
    alerts: int = 0
    bad: int = 0
    transactions: int = 0
    started: float = field(default_factory=time.monotonic)


def _where(msg: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message."""
    return msg.partition() or 0, msg.offset() or 0


class AlertsProcess(ConsumeLoop):
    """The evaluator; `run()` until stopped."""

    who = "alerts"
    ready_text = READY

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        topics: Topics,
        group: str,
        out: TextIO = sys.stderr,
        wall_clock: Callable[[], int] = lambda: int(time.time() * 1000),
        status_every: float = 30.0,
    ) -> None:
        super().__init__(out, status_every)
        self.settings = settings
        self.config = policy.ops_alerts
        self.topics = topics
        self.group = group
        self.wall_clock = wall_clock
        self.windows = QueueWindows(self.config)
        self.clock: PartitionClock | None = None
        self.codec = codec_for("OpsAlert", settings, topics)
        self.stats = Stats()
        self.consumer = Consumer(
            committed_reader(
                settings, group, **{"auto.offset.reset": "earliest", "enable.partition.eof": True}
            )
        )
        self.producer = Producer(transactional_producer(settings, group, **{"linger.ms": 5}))

    def healthy(self) -> bool:
        """/healthz: running, and the loop (or the rebuild) turned within the stall limit."""
        return self.running and self.heartbeat.still_for() < self.settings.liveness_stall_s

    def _outcomes(self) -> tuple[int, int, int, int]:
        """Stats read so far, by OUTCOMES (counted, late, duplicate, bad)."""
        w = self.windows
        return w.added, w.late, w.duplicates, self.stats.bad

    # ------------------------------------------------------------------ stats

    def _take(self, msg: Message) -> StatMessage | None:
        """Decode one message and advance the clock; None if it counts nothing."""
        assert self.clock is not None
        try:
            decoded = decode_stat(msg.value())
        except ValueError as exc:
            self.stats.bad += 1
            log.warning("skipped %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            return None
        stat = decoded.stat
        partition = _where(msg)[0]
        on_time = self.clock.observe(partition, decoded.wm, None if stat is None else stat.at)
        if stat is None:
            return None
        if not on_time or not self.windows.add(stat):
            if not on_time:
                self.windows.late += 1
            return None
        return decoded

    # ------------------------------------------------------------------ phases

    def _partitions(self) -> list[int]:
        name = self.topics.queue_stats
        meta = self.consumer.list_topics(name, timeout=30).topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {name} not found; start a worker or create the topics")
        return sorted(meta.partitions)

    def rebuild(self, partitions: list[int]) -> None:
        """Read up to the committed offsets without producing, then continue from them."""
        name = self.topics.queue_stats
        committed = self.consumer.committed(
            [TopicPartition(name, p) for p in partitions], timeout=30
        )
        target = {tp.partition: max(tp.offset, 0) for tp in committed}
        todo = {p for p in partitions if target[p] > 0}
        self.consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        self.consumer.pause([TopicPartition(name, p) for p in partitions if p not in todo])
        if todo:
            self.say(
                f"rebuilding windows from {name} up to the committed offsets "
                f"(offsets {sum(target.values()):,} in all), no alerts sent for them"
            )

        def done(p: int) -> None:
            if p in todo:
                todo.discard(p)
                self.consumer.pause([TopicPartition(name, p)])

        while todo and self.running:
            self.heartbeat.beat()  # a long rebuild is progress, not a stall
            for msg in self.consumer.consume(1000, 0.5):
                p, offset = _where(msg)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done(p)
                        continue
                    raise RuntimeError(f"consuming {name}: {err}")
                if p in todo and offset < target[p]:
                    self._take(msg)
                    self.stats.rebuilt += 1
                else:
                    done(p)  # at or past the committed offset: read again below
        # Continue each partition exactly at its committed offset (whatever was fetched past it).
        # A partition stays paused across assign(), so resume them explicitly.
        self.consumer.unassign()
        start = [TopicPartition(name, p, target[p] or OFFSET_BEGINNING) for p in partitions]
        self.consumer.assign(start)
        self.consumer.resume(start)

    def begin(self) -> None:
        self.producer.init_transactions(60)  # fences an older instance, aborts its open transaction
        partitions = self._partitions()
        self.clock = PartitionClock(partitions, self.config.allowed_lateness)
        t0 = time.monotonic()
        self.rebuild(partitions)
        watermark = self.clock.watermark
        skipped = 0
        if watermark is not None:
            skipped = sum(len(w.alerts) for w in self.windows.close_until(watermark))
            WATERMARK.set(watermark / 1000)
        if self.stats.rebuilt:
            self.say(
                f"rebuilt {self.stats.rebuilt:,} stats in {time.monotonic() - t0:.1f}s "
                f"({skipped} alerts already sent), watermark "
                f"{format_ts(watermark) if watermark is not None else 'not yet known'}"
            )
        self.ready(
            f": {len(partitions)} partitions of {self.topics.queue_stats} -> "
            f"{self.topics.ops_alerts}, window {self.config.window // 60000}m hop "
            f"{self.config.hop // 60000}m, lateness {self.config.allowed_lateness // 1000}s"
        )

    def turn(self) -> bool:
        batch = self.consumer.consume(1000, 0.5)
        if batch:
            self.process(batch)
        return bool(batch)

    def end(self) -> None:
        self.status()

    def process(self, batch: list[Message]) -> None:
        """One transaction: the batch's stats, the alerts of the windows they close, offsets."""
        assert self.clock is not None
        offsets: dict[int, int] = {}
        before = self._outcomes()
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consuming {self.topics.queue_stats}: {err}")
            self._take(msg)
            self.stats.consumed += 1
            p, offset = _where(msg)
            offsets[p] = offset + 1
        if not offsets:
            return
        alerts: list[QueueAlert] = []
        watermark = self.clock.watermark
        if watermark is not None:
            for window in self.windows.close_until(watermark):
                alerts.extend(window.alerts)
        self.producer.begin_transaction()
        now = self.wall_clock()
        for alert in alerts:
            record = ops_alert(
                alert.kind, alert.queue, alert.window_start, alert.window_end, alert.observed,
                alert.baseline, alert.threshold, alert.message, now,
            )  # fmt: skip
            assert record["alert_id"] == alert.alert_id
            self._produce(self.topics.ops_alerts, alert.queue.encode(), self.codec.encode(record))
            log.info("%s", describe("OpsAlert", record))
        name = self.topics.queue_stats
        self.producer.send_offsets_to_transaction(
            [TopicPartition(name, p, o) for p, o in sorted(offsets.items())],
            self.consumer.consumer_group_metadata(),
            30,
        )
        self.producer.commit_transaction(60)
        self.stats.transactions += 1
        self.stats.alerts += len(alerts)
        for outcome, after, earlier in zip(OUTCOMES, self._outcomes(), before, strict=True):
            if after > earlier:
                STATS_READ.labels(outcome).inc(after - earlier)
        for alert in alerts:
            ALERTS_SENT.labels(alert.kind.value).inc()
        if watermark is not None:
            WATERMARK.set(watermark / 1000)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.05)

    def status(self) -> None:
        assert self.clock is not None
        watermark = self.clock.watermark
        self.say(
            f"{self.stats.consumed:,} stats read, {self.stats.alerts} alerts sent, "
            f"{self.windows.late} late, {self.windows.duplicates} duplicate, "
            f"{self.stats.bad} bad, {len(self.windows.queues)} queues, watermark "
            f"{format_ts(watermark) if watermark is not None else 'waiting for all partitions'}"
        )

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)


def run_alerts(settings: Settings, policy: Policy, topics: Topics, group: str) -> int:
    """The `escalator alerts` command body, serving /metrics and /healthz; stops cleanly on
    SIGTERM/SIGINT."""
    process = AlertsProcess(settings, policy, topics, group)
    for outcome in OUTCOMES:  # every series from the start: rate() needs the zero
        STATS_READ.labels(outcome)
    for kind in AlertKind:
        ALERTS_SENT.labels(kind.value)
    return process.main_serving(settings.connectors, COMPONENT)
