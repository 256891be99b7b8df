"""The stream worker: ticket events in, escalations out, exactly once, SLA state per ticket.

A consume-transform-produce loop on confluent-kafka (KIP-447): one consumer in the
group reads `ticket-events` (read_committed), one transactional producer writes the
outputs, every state change as a record of the compacted changelog topic, and the
consumed offsets, all in one transaction committed every `commit_interval_ms`. Every
record goes to the partition of the input that caused it, so a partition's state and
outputs move together. Faust did the same job at about a tenth of the rate
(bench/pipeline.py, issue #4); streams.faust_app runs the same processor as a Faust app.

Time: in wall-clock mode the loop itself ticks every `tick_ms`, between batches, so a
deadline fires with no new events and its state change is in the same transaction as
its escalation. In event-time mode (replays, the demo) event time advances the clock
and ticks come in-stream as ticket-events messages with the tick header.

State lives in a store per partition (dicts, or RocksDB under the data dir), filled
from the changelog whenever the partition is assigned: the store receives writes before
their transaction commits, so only the changelog (read_committed) holds committed
state. A partition that comes back to this worker in a rebalance keeps its store when
the transaction committed on revocation and nobody committed the partition since;
anything else is restored, paused, a slice at a time between polls of the group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.codec import RegistryError, codecs_for
from streams.liveness import LOOP, probes
from streams.metrics import MetricsServer
from streams.processor import Out, TicketProcessor, is_tick
from streams.settings import Settings
from streams.sla.engine import Engine
from streams.sla.policy import Policy
from streams.topics import Topics
from streams.worker_metrics import WorkerStats, metrics_exposition

log = logging.getLogger("escalator.worker")

CODECS = ("TicketEvent", "Escalation", "PriorityBump", "Reminder", "DeadLetter")
READY = "Worker ready"  # said after each assignment's restore (tests and the demo wait for it)
RESTART_EXIT_CODE = 75  # the supervisor in `escalator worker` restarts the child on this
RESTARTS_ENV = "ESCALATOR_WORKER_RESTARTS"  # consecutive restarts, set by the supervisor
BATCH = 500  # messages per consume() call
TIMEOUT_S = 30.0  # for transactional and offset calls that talk to the coordinator
WATCHDOG_SLACK_S = 15.0  # past its timeout, a transactional call that has not returned is hung
STATUS_EVERY_S = 30.0


def changelog_topic(settings: Settings) -> str:
    """The compacted topic of per-ticket state (Faust's name for it, so it carries over)."""
    return f"{settings.app_id}-tickets-changelog"


def transactional_id(settings: Settings) -> str:
    """Stable per instance, so a restarted instance aborts its own open transaction at once
    (init_transactions) instead of readers waiting out transaction.timeout.ms. Zombies are
    fenced by the group generation (KIP-447), not by this id."""
    instance = settings.instance_id
    if not instance:
        where = hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
        instance = f"{socket.gethostname()}-{where}"
    return f"{settings.app_id}-worker-{instance}"


def build_processor(
    settings: Settings, policy: Policy, topics: Topics, event_time: bool
) -> TicketProcessor:
    """The processor every runtime drives (this loop, streams.faust_app), from the settings."""
    codecs = codecs_for(CODECS, settings, topics)
    metrics = None
    if settings.metrics_enabled:
        metrics = WorkerStats((s.name for s in policy.sla_policies), live=not event_time)
    return TicketProcessor(
        Engine(policy), topics, codecs, settings.max_event_bytes, event_time, metrics=metrics,
        max_skew_ms=settings.max_clock_skew_ms, max_record_bytes=settings.max_record_bytes,
    )  # fmt: skip


class Restart(Exception):
    """The worker must resume from committed offsets and state in a fresh process."""


# ---------------------------------------------------------------------- state


_ABSENT = object()
MEMTABLE_BYTES = 8 << 20
FRONT_KEYS = 4096  # per generation and partition: the latest writes a disk store keeps in memory
BLOCK_CACHE_BYTES = 16 << 20  # per worker, shared by its partitions' stores, indexes included


class PartitionStore:
    """One partition's ticket states (the processor's StateStore); writes are queued so the
    loop sends them to the changelog in the transaction of the message that caused them.

    With `front` (a disk store), the latest writes stay in memory, in two generations of up
    to `front` keys, and reach the disk only when they age out: a busy ticket's next event
    reads and writes a dict, while RocksDB holds the tickets that went quiet. Nothing is lost
    by keeping them in memory: the store is never reopened, the changelog is the durable copy.
    """

    __slots__ = ("data", "pending", "front", "young", "old")

    def __init__(self, data: MutableMapping[bytes, bytes], front: int = 0) -> None:
        self.data = data
        self.pending: list[tuple[bytes, bytes | None]] = []
        self.front = front
        self.young: dict[bytes, bytes | None] = {}  # None: deleted
        self.old: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if self.front:
            value = self.young.get(key, _ABSENT)
            if value is _ABSENT:
                value = self.old.get(key, _ABSENT)
                if value is _ABSENT:
                    return self.data.get(key)
            return value  # type: ignore[return-value]
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.append((key, value))
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        self.pending.append((key, None))
        self._write(key, None)

    def _write(self, key: bytes, value: bytes | None) -> None:
        if not self.front:
            self._store(key, value)
            return
        young = self.young
        young[key] = value
        if len(young) >= self.front:
            # The old generation goes to disk, except what the young one overrides.
            for old_key, old_value in self.old.items():
                if old_key not in young:
                    self._store(old_key, old_value)
            self.old = young
            self.young = {}

    def _store(self, key: bytes, value: bytes | None) -> None:
        data = self.data
        if value is not None:
            data[key] = value
        elif key in data:
            del data[key]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (key, value), streamed: a partition may hold more tickets than memory.
        Writes during the iteration do not disturb it (a dict's keys are listed first, a
        RocksDB iterator reads a snapshot, the front is copied: at most 2 x `front` keys)."""
        data = self.data
        if not self.front:
            for key in list(data):
                value = data.get(key)
                if value is not None:
                    yield key, value
            return
        front = dict(self.old)
        front.update(self.young)
        for key, value in data.items():
            if key not in front:
                yield key, value
        for key, latest in front.items():
            if latest is not None:
                yield key, latest

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply a changelog record (a restore: nothing to send)."""
        self.young.pop(key, None)
        self.old.pop(key, None)
        self._store(key, value)


class LocalState:
    """The stores of the owned partitions: dicts (memory://) or one RocksDB per partition
    under the data dir (rocksdb://, state on disk rather than in memory). A store always
    starts empty and is filled from the changelog, never reused from an earlier run."""

    def __init__(self, settings: Settings) -> None:
        self.rocksdb = settings.store.startswith("rocksdb://")
        self.root = settings.data_dir / "tickets"
        self.stores: dict[int, PartitionStore] = {}
        self.dbs: dict[int, Any] = {}
        self.block_cache: Any = None
        if self.rocksdb and self.root.exists():
            shutil.rmtree(self.root)

    def open(self, partition: int) -> PartitionStore:
        self.close(partition)
        data: MutableMapping[bytes, bytes]
        if self.rocksdb:
            from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteOptions

            path = self.root / str(partition)
            shutil.rmtree(path, ignore_errors=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            options = Options(raw_mode=True)
            # Recent writes live in the store's front: small memtables keep memory per
            # partition bounded (RocksDB's default is up to 2 x 64 MB each).
            options.set_write_buffer_size(MEMTABLE_BYTES)
            options.set_max_write_buffer_number(2)
            # One block cache for all the partitions (RocksDB's default is 32 MB per store),
            # holding the tables' indexes and filters too: outside it they grow with the data.
            if self.block_cache is None:
                self.block_cache = Cache(BLOCK_CACHE_BYTES)
            tables = BlockBasedOptions()
            tables.set_block_cache(self.block_cache)
            tables.set_cache_index_and_filter_blocks(True)
            tables.set_pin_l0_filter_and_index_blocks_in_cache(True)
            options.set_block_based_table_factory(tables)
            db = Rdict(str(path), options)
            writes = WriteOptions()
            writes.disable_wal = True  # never reopened: the changelog is the durable copy
            db.set_write_options(writes)
            self.dbs[partition] = db
            data = db
        else:
            data = {}
        store = self.stores[partition] = PartitionStore(data, FRONT_KEYS if self.rocksdb else 0)
        return store

    def close(self, partition: int) -> None:
        self.stores.pop(partition, None)
        db = self.dbs.pop(partition, None)
        if db is not None:
            db.close()
            shutil.rmtree(self.root / str(partition), ignore_errors=True)

    def close_all(self) -> None:
        for partition in list(self.stores):
            self.close(partition)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every owned ticket (the processor rebuilds its due index from it)."""
        for store in list(self.stores.values()):
            yield from store.items()


# ---------------------------------------------------------------------- clients


def consumer_config(settings: Settings) -> dict[str, Any]:
    exactly_once = settings.processing_guarantee == "exactly_once"
    return {
        **settings.kafka.confluent(),
        "group.id": settings.app_id,
        # read_committed also makes the committed-offset fetch wait for a previous
        # owner's pending transaction (KIP-447 require_stable) before we restore.
        "isolation.level": "read_committed" if exactly_once else "read_uncommitted",
        "queued.max.messages.kbytes": 8192,  # prefetch ~2 s of events, not librdkafka's 64 MB
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": min(3000, settings.session_timeout_ms // 3),
        "partition.assignment.strategy": "range",  # eager: revoke all, then assign
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    config = {
        **settings.kafka.confluent(),
        "enable.idempotence": True,
        "acks": "all",
        # Records wait this long to share a produce request; a commit sends what waits.
        "linger.ms": settings.producer_linger_ms,
        "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": max(2 * settings.max_event_bytes, 1_048_588),  # DLQ letters
        "delivery.report.only.error": True,
    }
    if settings.processing_guarantee == "exactly_once":
        config["transactional.id"] = transactional_id(settings)
        # A crashed worker's open transaction holds back read_committed readers of its
        # partitions until it times out, unless the same instance restarts first.
        config["transaction.timeout.ms"] = max(settings.session_timeout_ms, 10_000)
    return config


# ---------------------------------------------------------------------- loop


RESTORE_SLICE_S = 0.5  # changelog reading between two polls of the group consumer
RESTORE_BATCH = 2000


@dataclass
class Restore:
    """An assignment whose stores are being filled from the changelog."""

    partitions: list[TopicPartition]  # as assigned (paused until restored)
    wanted: list[int]
    kept: int  # partitions whose store was kept
    started: float
    restoring: list[int]  # partitions whose store starts empty
    reader: Consumer | None = None  # of the non-empty changelog partitions among them
    todo: set[int] = field(default_factory=set)  # being read, not yet at their end
    backlog: list[Message] = field(default_factory=list)  # read, not yet loaded
    records: int = 0
    rebuild: Iterator[int] | None = None  # the due index, rebuilt once the stores are full
    tickets: int = 0


class Worker:
    """The loop; `run()` until `stop()` (SIGTERM), or Restart on a transaction failure."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        topics: Topics,
        event_time: bool = False,
        out: TextIO = sys.stderr,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.source = topics.ticket_events
        self.changelog = changelog_topic(settings)
        self.event_time = event_time
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self.out = out
        self.processor = build_processor(settings, policy, topics, event_time)
        self.state = LocalState(settings)
        self.owned: list[int] = []
        self.offsets: dict[int, int] = {}  # next offset per partition, not yet committed
        self.committed: dict[int, int] = {}  # next offset per partition, committed
        self.highs: dict[int, int] = {}  # high watermark per owned partition, read by the loop
        self.open = False  # a transaction is open (exactly-once)
        self.dirty = False  # records or offsets wait for the next commit
        self.clean_revoke = False  # the last revocation committed: kept stores are current
        self.group: Any = None  # the group generation of the assignment (KIP-447 fencing)
        self.restoring: Restore | None = None  # the assignment's stores being filled
        self.assignments = 0
        self.rebalancing = True
        self.running = True
        self.watchdog_s = TIMEOUT_S + WATCHDOG_SLACK_S
        self.overrun: Callable[[str], None] = self._overrun  # tests replace it
        self.failed: str | None = None  # a delivery failure, seen by the next commit
        self.fatal: str | None = None  # a fatal client error, seen by the loop
        self.abandoned = False  # restarting: commit nothing more
        self.events = 0
        self.consumer = Consumer({**consumer_config(settings), "error_cb": self._client_error})
        self.producer = Producer(
            {**producer_config(settings), "error_cb": self._client_error,
             "on_delivery": self._delivery_failed}
        )  # fmt: skip

    def say(self, text: str) -> None:
        self.out.write(f"escalator worker: {text}\n")
        self.out.flush()

    def stop(self) -> None:
        self.running = False

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        if self.exactly_once:
            self.producer.init_transactions(TIMEOUT_S)  # aborts this instance's open one
        self.consumer.subscribe(
            [self.source], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        tick_s = self.settings.tick_ms / 1000
        commit_s = self.settings.commit_interval_ms / 1000
        next_tick = last_commit = last_status = last_highs = time.monotonic()
        consume, handle = self.consumer.consume, self._handle
        try:
            while self.running:
                LOOP.beat()  # issue #18: /healthz is the loop's progress (streams.liveness)
                now = time.monotonic()
                wait = 0.05 if self.event_time else min(max(next_tick - now, 0.0), 0.05)
                if self.restoring is not None:
                    wait = 0.0
                for msg in consume(BATCH, wait):
                    handle(msg)
                if self.fatal:
                    raise Restart(self.fatal)
                if self.restoring is not None:
                    self._restore_slice()
                    continue
                now = time.monotonic()
                if not self.event_time and now >= next_tick:
                    next_tick = now + tick_s
                    self._tick()
                self.producer.poll(0)
                if now - last_highs >= 1.0:
                    last_highs = now
                    self._read_highs()
                if self.dirty and now - last_commit >= commit_s:
                    self._commit()
                    last_commit = time.monotonic()
                if now - last_status >= STATUS_EVERY_S:
                    last_status = now
                    self._status()
            if self.dirty:
                self._commit()
        except (Restart, RegistryError):
            self.abandoned = True
            raise
        finally:
            self._close()

    def _close(self) -> None:
        self._cancel_restore()
        try:
            if self.abandoned:
                # A loss queued since the last poll (max.poll.interval.ms exceeded) is served
                # here rather than inside close(): there, the client's unassign after the
                # callback could wait forever holding the GIL (librdkafka 2.16).
                self.consumer.consume(BATCH, 0)
            self.consumer.close()  # leaves the group (revocation commits what is left)
        except KafkaException as exc:
            log.warning("closing the consumer: %s", exc)
        if self.open:
            try:
                self.producer.abort_transaction(TIMEOUT_S)
            except KafkaException as exc:
                log.warning("aborting the open transaction: %s", exc)
        self.producer.flush(TIMEOUT_S)
        self.state.close_all()

    # ------------------------------------------------------------------ messages

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            self._consume_error(err)
            return
        p = msg.partition()
        store = self.state.stores.get(p)
        if store is None or self.rebalancing:
            return  # fetched before its partition was revoked: the next owner reads it
        assert p is not None
        headers = msg.headers()
        kind, ts = msg.timestamp()
        timestamp = None if kind == TIMESTAMP_NOT_AVAILABLE else ts
        handle = self.processor.on_event
        if headers and is_tick(headers):
            handle = self.processor.on_tick_message
        outs = handle(store, msg.value(), msg.key(), p, msg.offset() or 0, timestamp)
        self._send(p, outs, store)
        self.offsets[p] = (msg.offset() or 0) + 1
        self.events += 1
        self.dirty = True

    def _tick(self) -> None:
        """Wall-clock tick for every owned partition: fire what is due by now."""
        now = self.processor.tick_clock()
        for p in self.owned:
            store = self.state.stores[p]
            outs = self.processor.on_tick(store, p, now)
            if outs or store.pending:
                self._send(p, outs, store)
                self.dirty = True

    def _send(self, partition: int, outs: list[Out], store: PartitionStore) -> None:
        if self.exactly_once and not self.open:
            self.producer.begin_transaction()
            self.open = True
        produce = self._produce
        for out in outs:
            produce(out.topic, out.key, out.value, partition)
        if store.pending:
            changelog = self.changelog
            for key, value in store.pending:
                produce(changelog, key, value, partition)
            store.pending.clear()

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, partition)
                return
            except BufferError:
                self.producer.poll(0.01)

    # ------------------------------------------------------------------ commits

    def _commit(self) -> None:
        """Outputs, changelog records and offsets become visible together (or, at least once:
        the records are delivered before the offsets are committed)."""
        offsets = [TopicPartition(self.source, p, o) for p, o in sorted(self.offsets.items())]
        try:
            if self.exactly_once:
                if self.open:
                    # Every owned partition's offset, new or not, under the generation of the
                    # assignment: the group coordinator rejects them once this worker's
                    # partitions went to another (KIP-447), which fails the commit of a
                    # zombie's transaction, ticks' escalations included. The generation is the
                    # assignment's, not the consumer's current one: a consumer that noticed its
                    # eviction sends none, and the broker accepts a transactional commit without
                    # one.
                    fenced = {p: self.committed[p] for p in self.owned if p in self.committed}
                    fenced.update(self.offsets)
                    with self._watchdog("send_offsets_to_transaction"):
                        self.producer.send_offsets_to_transaction(
                            [TopicPartition(self.source, p, o) for p, o in sorted(fenced.items())],
                            self.group,
                            TIMEOUT_S,
                        )
                    with self._watchdog("commit_transaction"):
                        self._retrying(self.producer.commit_transaction)
                    self.open = False
            else:
                if self.producer.flush(TIMEOUT_S) > 0:
                    raise Restart("records still undelivered after 30 s")
                if self.failed:
                    raise Restart(self.failed)
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise Restart(f"commit failed: {exc.args[0]}") from None
        self.committed.update(self.offsets)
        self.offsets.clear()
        self.dirty = False

    @contextmanager
    def _watchdog(self, call: str) -> Iterator[None]:
        """librdkafka may not honour a transactional call's timeout after a broker restart
        (confluent-kafka-python reports #5456, #5511; bench/txn_offsets_hang.py reproduces it):
        a call still running `watchdog_s` later ends the process for a restart, as a Restart
        would, instead of stalling its partitions until max.poll.interval.ms evicts it."""
        timer = threading.Timer(self.watchdog_s, self.overrun, (call,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _overrun(self, call: str) -> None:
        self.say(f"{call} still blocked {self.watchdog_s:.0f} s after it began: restarting")
        os._exit(RESTART_EXIT_CODE)

    def _retrying(self, call: Any) -> None:
        for attempt in range(3):
            try:
                call(TIMEOUT_S)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or attempt == 2:
                    raise

    def _delivery_failed(self, error: KafkaError | None, msg: Message) -> None:
        if error is not None:
            self.failed = f"delivery to {msg.topic()}[{msg.partition()}] failed: {error.str()}"
            log.error("%s", self.failed)

    # ------------------------------------------------------------------ rebalances

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what was processed while the generation is still ours (eager protocol); the
        stores stay, for the partitions that come back in the assignment."""
        self.rebalancing = True
        self._cancel_restore()
        if self.abandoned:
            self.owned = []
            return
        if self.dirty:
            self._commit()
        self.owned = []
        self.clean_revoke = True

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revocation (session expired): nothing of the open
        transaction may be committed, and no kept state may be trusted."""
        log.warning("partitions lost: %s", sorted(tp.partition for tp in partitions))
        self.rebalancing = True
        self._cancel_restore()
        self.owned = []
        self.clean_revoke = False
        if self.abandoned:
            # From consumer.close() on the way to a restart, which aborts the transaction
            # after it. Aborting here hung close() in the client's unassign that follows
            # this callback (seen in about 2 runs of 5 of the zombie test, librdkafka 2.16).
            return
        self._abort()

    def _abort(self) -> None:
        self.offsets.clear()
        self.dirty = False
        self.state.close_all()
        if self.exactly_once and self.open:
            self.open = False
            try:
                self.producer.abort_transaction(TIMEOUT_S)
            except KafkaException as exc:
                raise Restart(f"aborting a transaction failed: {exc.args[0]}") from None

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the assignment paused, and start restoring what is not kept: the loop fills
        the stores a slice at a time between its polls, so however long a restore takes, the
        worker serves rebalances and stays in its group (max.poll.interval.ms)."""
        started = time.monotonic()
        wanted = sorted(tp.partition for tp in partitions if tp.topic == self.source)
        self.group = consumer.consumer_group_metadata()
        # Committed offsets first: under read_committed this waits until no transaction of
        # a previous owner is pending on them, so the changelog read next is final.
        committed = {
            tp.partition: max(tp.offset, 0)
            for tp in (
                consumer.committed(
                    [TopicPartition(self.source, p) for p in wanted], timeout=TIMEOUT_S
                )
                if wanted
                else []
            )
        }
        # A kept store is current only if nobody committed the partition since this worker.
        kept = {
            p
            for p in set(self.state.stores) & set(wanted)
            if self.clean_revoke and self.committed.get(p) == committed[p]
        }
        for p in set(self.state.stores) - kept:
            self.state.close(p)
        self.processor.forget(set(self.processor.due) - set(wanted))
        self.committed = committed
        consumer.assign(partitions)
        consumer.pause(partitions)  # nothing is read before its partition's state is complete
        restore = Restore(
            partitions, wanted, len(kept), started, [p for p in wanted if p not in kept]
        )
        self.restoring = restore
        for p in restore.restoring:
            self.state.open(p)
        if restore.restoring:
            self._start_reader(restore)

    def _start_reader(self, restore: Restore) -> None:
        """Read the changelog partitions to restore that hold records, from their start."""
        reader = restore.reader = Consumer(
            {
                **self.settings.kafka.confluent(),
                "group.id": f"{self.settings.app_id}-restore",  # never commits
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "error_cb": self._client_error,
            }
        )
        for p in restore.restoring:
            low, high = reader.get_watermark_offsets(
                TopicPartition(self.changelog, p), timeout=TIMEOUT_S
            )
            if high > low:
                restore.todo.add(p)
        reader.assign([TopicPartition(self.changelog, p, OFFSET_BEGINNING) for p in restore.todo])

    def _restore_slice(self) -> None:
        """Load changelog records for up to RESTORE_SLICE_S, up to each partition's last
        stable offset (where read_committed reports its end), then rebuild the due index
        from the full stores, also a slice at a time."""
        restore = self.restoring
        assert restore is not None
        stores, todo, clock = self.state.stores, restore.todo, time.monotonic
        deadline = clock() + RESTORE_SLICE_S
        while todo and clock() < deadline:
            assert restore.reader is not None
            batch = restore.backlog or restore.reader.consume(RESTORE_BATCH, 0.1)
            restore.backlog = []
            for i, msg in enumerate(batch):
                if i % 100 == 99 and clock() > deadline:  # a slow disk: the rest comes next
                    restore.backlog = batch[i:]
                    break
                err = msg.error()
                if err is None:
                    stores[msg.partition() or 0].load(msg.key() or b"", msg.value())
                    restore.records += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    todo.discard(msg.partition() or 0)
                else:
                    self._consume_error(err)
        if todo:
            return
        if restore.rebuild is None:
            if restore.reader is not None:
                restore.reader.close()
                restore.reader = None
            restore.rebuild = self.processor.rebuilding(self.state, restore.wanted)
        for tickets in restore.rebuild:
            restore.tickets = tickets
            if clock() > deadline:
                return
        self._restored()

    def _restored(self) -> None:
        """Every store of the assignment is complete and indexed: start reading."""
        restore = self.restoring
        assert restore is not None
        self.restoring = None
        self.consumer.resume(restore.partitions)
        self.owned = restore.wanted
        self.rebalancing = False
        self.assignments += 1
        self.say(
            f"due index rebuilt: {restore.tickets} tickets on partitions {restore.wanted} "
            f"({restore.records} changelog records restored, {restore.kept} partitions kept, "
            f"{time.monotonic() - restore.started:.1f}s)"
        )
        self.say(f"{READY} (assignment {self.assignments}: partitions {restore.wanted})")

    def _cancel_restore(self) -> None:
        """A rebalance or shutdown before the restore finished: its stores are incomplete."""
        restore, self.restoring = self.restoring, None
        if restore is None:
            return
        if restore.rebuild is not None:
            restore.rebuild.close()  # before any store it iterates is closed
        for p in restore.restoring:
            self.state.close(p)
        if restore.reader is not None:
            restore.reader.close()

    # ------------------------------------------------------------------ errors, status

    def _consume_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise Restart(f"consumer: {err.str()}")
        log.warning("consumer: %s", err.str())

    def _client_error(self, err: KafkaError) -> None:
        """librdkafka's own reports (a broker down, an authentication failure): it retries;
        a fatal error restarts the worker at its next commit or consume."""
        if err.fatal():
            self.fatal = f"fatal client error: {err.str()}"
        log.warning("kafka: %s", err.str())

    def _read_highs(self) -> None:
        """librdkafka's cached high watermarks (no request), read on the loop's thread: from
        the metrics thread the call waits while consume() runs, and the loop hardly pauses."""
        consumer, source = self.consumer, self.source
        self.highs = {
            p: consumer.get_watermark_offsets(TopicPartition(source, p), cached=True)[1]
            for p in self.owned
        }

    def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, high watermark - committed offset) per owned partition, as of
        the last second; safe to call from the metrics thread."""
        out = []
        highs = self.highs
        for p in list(self.owned):
            high = highs.get(p, -1)
            done = self.committed.get(p)
            if done is not None and high >= 0:
                out.append((self.source, p, max(high - done, 0)))
        return out

    def readiness(self) -> tuple[int, bytes]:
        """/readyz: 200 once the state of every assigned partition is restored."""
        partitions = [] if self.rebalancing else list(self.owned)
        ready = not self.rebalancing and bool(partitions)
        body = {"ready": ready, "recovered": not self.rebalancing, "partitions": partitions}
        return (200 if ready else 503), json.dumps(body).encode()

    def _status(self) -> None:
        lag = sum(n for _, _, n in self.lag())
        counters = self.processor.counters
        log.info(
            "%d events (%d duplicates, %d rejected), %d escalations; partitions %s, lag %d",
            self.events, counters.duplicates, sum(counters.rejected.values()),
            counters.escalations, self.owned, lag,
        )  # fmt: skip


def serve(worker: Worker, settings: Settings) -> MetricsServer:
    """/healthz, /startupz, /readyz and /metrics on the web port, on a background thread."""
    render = metrics_exposition(worker.processor, worker.lag)
    healthy, pages = probes(worker, settings)  # issue #18: /healthz and /startupz
    return MetricsServer(
        settings.web_host, settings.web_port, healthy, render=render,
        pages={"/readyz": worker.readiness, **pages},
    ).start()  # fmt: skip


def run_worker(settings: Settings, policy: Policy, topics: Topics, event_time: bool) -> int:
    """The `escalator worker` child's body: stops cleanly on SIGTERM/SIGINT."""
    try:
        worker = Worker(settings, policy, topics, event_time)
    except RegistryError as exc:  # unreachable, or it refuses a schema (incompatible)
        sys.stderr.write(f"escalator worker: {exc}\n")
        return 2
    server = serve(worker, settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        worker.run()
    except (Restart, RegistryError) as exc:  # a registry outage: nothing dead-lettered
        restarts = int(os.environ.get(RESTARTS_ENV) or 0)
        worker.say(f"{exc}; restarting from the committed offsets (restart {restarts + 1})")
        return RESTART_EXIT_CODE
    finally:
        server.stop()
    return 0
