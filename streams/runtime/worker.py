"""The stream worker: ticket events in, escalations out, exactly once, SLA state per ticket.

A consume-transform-produce loop on confluent-kafka (KIP-447): one consumer in the
group reads `ticket-events` (read_committed), one transactional producer writes the
outputs, the last state of each ticket the transaction changed as a record of the
compacted changelog topic, and the consumed offsets, all in one transaction committed
every `commit_interval_ms`. Every
record goes to the partition of the input that caused it, so a partition's state and
outputs move together. streams.runtime.faust_runtime runs the same processor as a Faust app,
at a fraction of this loop's rate (bench/pipeline.py compares them).

Time: in wall-clock mode the loop itself ticks every `tick_ms`, between batches, so a
deadline fires with no new events and its state change is in the same transaction as
its escalation. In event-time mode (replays, the demo) event time advances the clock
and ticks come in-stream as ticket-events messages with the tick header; each partition's
event-time clock commits with its offset, so whoever resumes the partition resumes its clock
(streams.runtime.partition_time).

State lives in a store per partition (dicts, or RocksDB under the data dir), filled
from the changelog whenever the partition is assigned: the store receives writes before
their transaction commits, so only the changelog (read_committed) holds committed
state. A partition that comes back to this worker in a rebalance keeps its store when
the transaction committed on revocation and nobody committed the partition since;
anything else is restored, paused, a slice at a time between polls of the group.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

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

from schemas.codec import RegistryError
from streams.runtime import checkpoint, kafka_config
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.kafka_config import transactional_id
from streams.runtime.liveness import LOOP, probes
from streams.runtime.loop import ConsumeLoop
from streams.runtime.metrics import MetricsServer
from streams.runtime.partition_store import PartitionStore
from streams.runtime.partition_time import decode_partition_time, encode_partition_time
from streams.runtime.processor import Counters, Out, Savepoint, TicketProcessor, is_tick
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics
from streams.runtime.watchdog import Watchdog
from streams.runtime.worker_metrics import metrics_exposition

log = logging.getLogger("escalator.worker")

READY = "Worker ready"  # said after each assignment's restore (tests and the demo wait for it)
RESTART_EXIT_CODE = 75  # the supervisor in `escalator worker` restarts the child on this
RESTARTS_ENV = "ESCALATOR_WORKER_RESTARTS"  # consecutive restarts, set by the supervisor
BATCH = 500  # messages per consume() call
TIMEOUT_S = 30.0  # for transactional and offset calls that talk to the coordinator
WATCHDOG_SLACK_S = 15.0  # past its timeout, a transactional call that has not returned is hung
STATUS_EVERY_S = 30.0
MAX_REWINDS = 3  # transactions aborted in place in a row, before a restart
# A commit refused for these is redone in place (Worker._rewind); any other failure restarts.
STALE_GENERATION = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS})


def changelog_topic(settings: Settings) -> str:
    """The compacted topic of per-ticket state (Faust's name for it, so it carries over)."""
    return f"{settings.app_id}-tickets-changelog"


GROUP_METADATA = b"CGMDv2:"  # librdkafka's serialized group metadata, then the generation


def group_generation(metadata: object) -> int | None:
    """The group generation in a consumer's metadata, None when it is in none (or the
    client serializes it in a format this does not know: never trusted then)."""
    if not isinstance(metadata, bytes) or not metadata.startswith(GROUP_METADATA):
        return None
    start = len(GROUP_METADATA)
    if len(metadata) < start + 4:
        return None
    generation = int.from_bytes(metadata[start : start + 4], sys.byteorder, signed=True)
    return generation if generation >= 0 else None


class Processor(Protocol):
    """What the loop asks of its processor (streams.runtime.processor.TicketProcessor, made
    by build_processor): records for each message and tick, the due index of new
    partitions, and the counts of its status line."""

    counters: Counters

    def on_event(
        self, store: PartitionStore, raw: bytes | None, key: bytes | None, partition: int,
        offset: int, timestamp: int | None,
    ) -> list[Out]: ...  # fmt: skip

    def on_tick_message(
        self, store: PartitionStore, raw: bytes | None, key: bytes | None, partition: int,
        offset: int, timestamp: int | None,
    ) -> list[Out]: ...  # fmt: skip

    def on_tick(self, store: PartitionStore, partition: int, tick: int | None) -> list[Out]: ...

    def tick_clock(self) -> int: ...

    def rebuilding(self, store: Partitions, partitions: Iterable[int]) -> Iterator[int]: ...

    def forget(self, partitions: Iterable[int]) -> None: ...

    def clock_of(self, partition: int) -> int | None: ...

    def resume_clock(self, partition: int, watermark: int) -> None: ...

    def savepoint(self) -> Savepoint: ...

    def rewind(
        self, point: Savepoint, partition: int, undone: dict[bytes, bytes | None],
        kept: Callable[[bytes], bytes | None],
    ) -> None: ...  # fmt: skip


class Restart(Exception):
    """The worker must resume from committed offsets and state in a fresh process."""


# ---------------------------------------------------------------------- state


MEMTABLE_BYTES = 8 << 20
FRONT_KEYS = 4096  # per generation and partition: the latest writes a disk store keeps in memory
BLOCK_CACHE_BYTES = 16 << 20  # per worker, shared by its partitions' stores, indexes included


class LocalState:
    """The stores of the owned partitions: dicts (memory://) or one RocksDB per partition
    under the data dir (rocksdb://, state on disk rather than in memory).

    A RocksDB store closed cleanly keeps its files and a checkpoint (streams.runtime.checkpoint) of
    the changelog offset it holds; `open()` takes that checkpoint (deleting the file, so a
    crash from then on leaves none) and the worker decides whether to trust it. Any other
    store starts empty and is filled from the changelog."""

    def __init__(self, settings: Settings) -> None:
        self.rocksdb = settings.store.startswith("rocksdb://")
        # at least once, each write goes to the changelog with its message (Worker._send)
        self.log_writes = settings.processing_guarantee != "exactly_once"
        self.root = settings.data_dir / "tickets"
        self.stores: dict[int, PartitionStore] = {}
        self.dbs: dict[int, Any] = {}
        self.checkpoints: dict[int, Checkpoint] = {}  # taken by open(), not yet judged
        # the due index saved with each of those checkpoints, or why there is none
        self.indexes: dict[int, tuple[Any, str | None]] = {}
        self.block_cache: Any = None
        if self.rocksdb and self.root.exists():
            for path in self.root.iterdir():  # a store without a checkpoint is worthless
                if not (path / checkpoint.FILE).exists():
                    shutil.rmtree(path, ignore_errors=True)

    def open(self, partition: int, resume: bool = False) -> PartitionStore:
        """The partition's store: empty, or with `resume` what a clean close left on disk
        (its checkpoint then in `checkpoints[partition]`)."""
        self.close(partition)
        self.checkpoints.pop(partition, None)
        self.indexes.pop(partition, None)
        data: MutableMapping[bytes, bytes]
        if self.rocksdb:
            from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteOptions

            path = self.root / str(partition)
            taken = checkpoint.take(path) if resume and path.exists() else None
            if taken is None:
                shutil.rmtree(path, ignore_errors=True)
            else:
                self.checkpoints[partition] = taken
                self.indexes[partition] = checkpoint.take_index(path, taken)
            path.mkdir(parents=True, exist_ok=True)
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
            # No WAL: a store is flushed before its checkpoint is written, and a store
            # without a checkpoint is never read again.
            writes.disable_wal = True
            db.set_write_options(writes)
            self.dbs[partition] = db
            data = db
        else:
            data = {}
        front = FRONT_KEYS if self.rocksdb else 0
        store = self.stores[partition] = PartitionStore(data, front, self.log_writes)
        return store

    def close(self, partition: int, kept: Checkpoint | None = None, index: Any = None) -> None:
        """Close the store; with `kept` (the offsets it holds, all committed) a RocksDB
        store stays on disk for the next open, else its files are removed. `index`: the
        partition's due index, saved with the checkpoint (TicketProcessor.saved_index)."""
        store = self.stores.pop(partition, None)
        self.checkpoints.pop(partition, None)
        self.indexes.pop(partition, None)
        db = self.dbs.pop(partition, None)
        if db is None:
            return
        path = self.root / str(partition)
        if kept is not None and store is not None:
            store.flush_front()
            db.flush(True)  # the memtables: writes skip the WAL
            db.close()
            if index is not None:
                checkpoint.write_index(path, kept, index)  # first: a checkpoint names its index
            checkpoint.write(path, kept)
            return
        db.close()
        shutil.rmtree(path, ignore_errors=True)

    def close_all(self, kept: dict[int, Checkpoint] | None = None) -> None:
        for partition in list(self.stores):
            self.close(partition, (kept or {}).get(partition))

    def items(self, partitions: Iterable[int] | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every ticket of the given (default: all open) partitions: the processor rebuilds
        its due index from it."""
        wanted = list(self.stores) if partitions is None else list(partitions)
        for p in wanted:
            store = self.stores.get(p)
            if store is not None:
                yield from store.items()


class Partitions:
    """Some partitions of a LocalState, as the processor's Snapshot (a due index rebuilt for
    new partitions reads only their stores)."""

    def __init__(self, state: LocalState, partitions: Iterable[int]) -> None:
        self.state, self.partitions = state, list(partitions)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.state.items(self.partitions)


# ---------------------------------------------------------------------- clients


# ---------------------------------------------------------------------- loop


RESTORE_SLICE_S = 0.5  # changelog reading between two polls of the group consumer
RESTORE_SLICE_BUSY_S = 0.1  # ... while other partitions are processing
RESTORE_BATCH = 2000


@dataclass
class Restore:
    """An assignment whose stores are being filled from the changelog."""

    partitions: list[TopicPartition]  # as assigned (paused until restored)
    wanted: list[int]
    kept: int  # partitions whose store was kept (resumed from a checkpoint)
    started: float
    restoring: list[int]  # partitions whose store is filled from the changelog
    reader: Consumer | None = None  # of the non-empty changelog partitions among them
    todo: set[int] = field(default_factory=set)  # being read, not yet at their end
    backlog: list[Message] = field(default_factory=list)  # read, not yet loaded
    records: int = 0
    rebuild: Iterator[int] | None = None  # the due index, rebuilt once the stores are full
    tickets: int = 0
    resumed: dict[int, Checkpoint] = field(default_factory=dict)  # trusted checkpoints
    indexed: set[int] = field(default_factory=set)  # due index loaded with their checkpoint
    loaded: int = 0  # tickets in those loaded indexes


class Worker(ConsumeLoop):
    """The loop; `run()` until `stop()` (SIGTERM), or Restart on a transaction failure."""

    who = "worker"
    ready_text = READY

    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        topics: Topics,
        event_time: bool = False,
        out: TextIO = sys.stderr,
    ) -> None:
        """`processor`: made by the caller (build_processor), with the same `event_time`."""
        super().__init__(out, STATUS_EVERY_S, LOOP)
        self.settings = settings
        self.topics = topics
        self.source = topics.ticket_events
        self.changelog = changelog_topic(settings)
        self.event_time = event_time
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self.processor = processor
        self.state = LocalState(settings)
        self.owned: list[int] = []  # partitions restored and processing
        self.live: set[int] = set()  # the same, for the per-message check
        self.offsets: dict[int, int] = {}  # next offset per partition, not yet committed
        self.committed: dict[int, int] = {}  # next offset per partition, committed
        self.highs: dict[int, int] = {}  # high watermark per owned partition, read by the loop
        self.open = False  # a transaction is open (exactly-once)
        self.dirty = False  # records or offsets wait for the next commit
        self.group: Any = None  # the group generation of the assignment (KIP-447 fencing)
        self.restoring: Restore | None = None  # the assignment's stores being filled
        self.rebalancing = True
        self.watchdog_s = TIMEOUT_S + WATCHDOG_SLACK_S
        self.overrun: Callable[[str], None] = self._overrun  # tests replace it
        self.watchdog = Watchdog()
        self.failed: str | None = None  # a delivery failure, seen by the next commit
        self.fatal: str | None = None  # a fatal client error, seen by the loop
        self.abandoned = False  # restarting: commit nothing more
        self.rewinds = 0  # transactions aborted in place since the last commit
        self.savepoint: Savepoint | None = None  # the processor's, as the transaction began
        self.events = 0
        self.tick_s = settings.tick_ms / 1000
        self.commit_s = settings.commit_interval_ms / 1000
        self.next_tick = self.last_commit = self.last_highs = 0.0  # monotonic, set by begin()
        self.consumer = Consumer(
            {**kafka_config.worker_consumer(settings), "error_cb": self._client_error}
        )
        self.producer = Producer(
            {**kafka_config.worker_producer(settings), "error_cb": self._client_error,
             "on_delivery": self._delivery_failed}
        )  # fmt: skip

    @property
    def assignments(self) -> int:
        """Assignments restored so far (each said with READY; /startupz reads it)."""
        return self.readies

    # ------------------------------------------------------------------ run

    def begin(self) -> None:
        if self.exactly_once:
            self.producer.init_transactions(TIMEOUT_S)  # aborts this instance's open one
        self.consumer.subscribe(
            [self.source], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        self.next_tick = self.last_commit = self.last_highs = time.monotonic()
        self.savepoint = self.processor.savepoint()

    def turn(self) -> bool:
        now = time.monotonic()
        wait = 0.05 if self.event_time else min(max(self.next_tick - now, 0.0), 0.05)
        if self.restoring is not None:
            wait = 0.0
        batch = self.consumer.consume(BATCH, wait)
        handle = self._handle
        for msg in batch:
            handle(msg)
        if self.fatal:
            raise Restart(self.fatal)
        if self.restoring is not None:
            self._restore_slice()
        now = time.monotonic()
        if not self.event_time and now >= self.next_tick:
            self.next_tick = now + self.tick_s
            self._tick()
        self.producer.poll(0)
        if now - self.last_highs >= 1.0:
            self.last_highs = now
            self._read_highs()
        if self.dirty and now - self.last_commit >= self.commit_s:
            self._commit()
            self.last_commit = time.monotonic()
        return bool(batch)

    def end(self) -> None:
        if self.dirty:
            self._commit()

    def abandon(self, exc: BaseException) -> None:
        if isinstance(exc, (Restart, RegistryError)):
            self.abandoned = True

    def close(self) -> None:
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
        if store is None or p not in self.live:
            return  # fetched before its partition was revoked: the next owner reads it
        assert p is not None
        headers = msg.headers()
        kind, ts = msg.timestamp()
        timestamp = None if kind == TIMESTAMP_NOT_AVAILABLE else ts
        handle = self.processor.on_event
        if headers and is_tick(headers):
            handle = self.processor.on_tick_message
        offset = msg.offset() or 0
        outs = handle(store, msg.value(), msg.key(), p, offset, timestamp)
        self._send(p, outs, store)
        self.offsets[p] = offset + 1
        self.events += 1
        self.dirty = True

    def _tick(self) -> None:
        """Wall-clock tick for every owned partition: fire what is due by now."""
        now = self.processor.tick_clock()
        for p in self.owned:
            store = self.state.stores[p]
            outs = self.processor.on_tick(store, p, now)
            if outs or store.txn:  # wrote since the last commit (with its changelog records)
                self._send(p, outs, store)
                self.dirty = True

    def _send(self, partition: int, outs: list[Out], store: PartitionStore) -> None:
        """A message's outputs. Its state records go to the changelog now (at least once), or
        with the transaction's commit (exactly once: _send_states)."""
        if self.exactly_once and not self.open:
            self.producer.begin_transaction()
            self.open = True
        produce = self.producer.produce  # the client's own call; _produce when its queue is full
        for out in outs:
            try:
                produce(out.topic, out.value, out.key, partition)
            except BufferError:
                self._produce(out.topic, out.key, out.value, partition)
        if self.exactly_once:
            return
        pending = store.pending
        if pending:
            changelog = self.changelog
            for key, value in pending:
                try:
                    produce(changelog, value, key, partition)
                except BufferError:
                    self._produce(changelog, key, value, partition)
            pending.clear()

    def _send_states(self) -> None:
        """The open transaction's changelog records, as it commits: the last value each
        ticket was written in it (a store's `txn`), once. What the transaction wrote before
        that for the same ticket would be superseded within the same transaction, which a
        reader sees whole or not at all, so the changelog restores the same stores from
        fewer records (at 1,200 messages a transaction, 41% fewer)."""
        produce, changelog = self.producer.produce, self.changelog
        for partition, store in self.state.stores.items():
            if not store.txn:
                continue
            for key, value in store.txn.items():
                try:
                    produce(changelog, value, key, partition)
                except BufferError:
                    self._produce(changelog, key, value, partition)

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        """Send a record the client refused (its queue full), serving deliveries meanwhile."""
        self.producer.poll(0.01)
        while True:
            try:
                self.producer.produce(topic, value, key, partition)
                return
            except BufferError:
                self.producer.poll(0.01)

    # ------------------------------------------------------------------ commits

    def _offset(self, partition: int, offset: int) -> TopicPartition:
        """A partition's offset to commit, with its event-time clock (partition_time)."""
        clock = self.processor.clock_of(partition)
        if clock is None:
            return TopicPartition(self.source, partition, offset)
        return TopicPartition(self.source, partition, offset, encode_partition_time(clock))

    def _commit(self) -> None:
        """Outputs, changelog records and offsets become visible together (or, at least once:
        the records are delivered before the offsets are committed)."""
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
                    self._send_states()
                    fenced = {p: self.committed[p] for p in self.owned if p in self.committed}
                    fenced.update(self.offsets)
                    with self._watchdog("send_offsets_to_transaction"):
                        self.producer.send_offsets_to_transaction(
                            [self._offset(p, o) for p, o in sorted(fenced.items())],
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
                if self.offsets:
                    offsets = [self._offset(p, o) for p, o in sorted(self.offsets.items())]
                    self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if self.exactly_once and self.open and error.code() in STALE_GENERATION:
                self._rewind(error)
                return
            raise Restart(f"commit failed: {error}") from None
        for store in self.state.stores.values():
            store.commit()
        self.committed.update(self.offsets)
        self.offsets.clear()
        self.dirty = False
        self.rewinds = 0
        self.savepoint = self.processor.savepoint()

    def _rewind(self, error: KafkaError) -> None:
        """The transaction's offsets carried the generation before a rebalance this worker
        takes part in (still a member: an evicted one is an unknown member, and restarts),
        completed by the group before the new assignment reached this loop (KIP-447). Abort
        it and take back what it did (the stores' writes, the processor's index, clocks and
        counts, the consumer's positions), so the loop reads the same records again, under
        the new generation, with no restart and no restore. Refused again and again, it
        restarts."""
        self.rewinds += 1
        if self.rewinds > MAX_REWINDS or self.savepoint is None or not error.txn_requires_abort():
            raise Restart(f"commit failed ({self.rewinds} in a row): {error}")
        self.open = False
        try:
            self.producer.abort_transaction(TIMEOUT_S)
        except KafkaException as exc:
            raise Restart(f"commit failed ({error}), then its abort: {exc.args[0]}") from None
        for p, store in self.state.stores.items():
            undone = store.rollback()
            if undone or p in self.owned:
                self.processor.rewind(self.savepoint, p, undone, store.get)
        try:
            for p in self.owned:
                self.consumer.seek(TopicPartition(self.source, p, self.committed.get(p, 0)))
        except KafkaException as exc:
            raise Restart(f"commit failed ({error}), then rewinding: {exc.args[0]}") from None
        self.offsets.clear()
        self.dirty = False
        self.processor.counters.aborted += 1
        self.savepoint = self.processor.savepoint()
        self.say(f"transaction aborted, its records read again from the committed offsets: "
                 f"{error.str()}")  # fmt: skip

    def _watchdog(self, call: str) -> AbstractContextManager[None]:
        """librdkafka may not honour a transactional call's timeout after a broker restart
        (confluent-kafka-python reports #5456, #5511; bench/txn_offsets_hang.py reproduces it):
        a call still running `watchdog_s` later ends the process for a restart, as a Restart
        would, instead of stalling its partitions until max.poll.interval.ms evicts it."""
        return self.watchdog.guard(call, self.watchdog_s, self.overrun)

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
        """Partitions leave (cooperative: only these; the others keep processing). Commit the
        open transaction while the partitions are still ours (it may hold records of the
        revoked ones), then close their stores with a checkpoint of what they hold, so the
        partition coming back, or this worker restarting, reads only the changelog's tail."""
        revoked = {tp.partition for tp in partitions if tp.topic == self.source}
        # Cooperative: the revocation comes after the group's new generation was synced;
        # a commit under the old one would be refused (KIP-447 fencing by generation).
        self._refresh_group(consumer)
        self._drop_restoring(revoked)
        if not self.abandoned:
            leaving = sorted(revoked & set(self.owned))
            provable = self.exactly_once and self.state.rocksdb and self.group is not None
            if leaving and provable and not self.dirty:
                # A checkpoint says nobody else wrote to the changelog partition since this
                # worker's last commit; a stale revocation, served by a worker evicted while
                # stalled, would say it wrongly. A commit under its generation proves it
                # (a worker given its partitions by hand, in no group, has none to prove).
                self._send(leaving[0], [], self.state.stores[leaving[0]])
                self.dirty = True
            if self.dirty:
                self._commit()
            for p in leaving:
                kept = self._checkpoint(p)
                self.state.close(p, kept, None if kept is None else self.processor.saved_index(p))
        self._set_owned([p for p in self.owned if p not in revoked])
        self.processor.forget(revoked)
        if self.savepoint is not None:
            self.savepoint.forget(revoked)
        for p in revoked:
            self.committed.pop(p, None)
        try:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            leaving = [tp for tp in partitions if (tp.topic, tp.partition) in assigned]
            if leaving:
                consumer.incremental_unassign(leaving)
        except KafkaException as exc:
            # Revoked by close(): the handle is being destroyed and unassigns on its own.
            # Raised here, the error would leave the callback as a bare KafkaError, which no
            # `except` catches and which kills the thread.
            log.info("revocation while closing: %s", exc)

    def _refresh_group(self, consumer: Consumer) -> None:
        """The generation to commit under, as a rebalance callback runs. A consumer out of
        the group (evicted while stalled, serving stale callbacks on its way out) is in no
        generation: it keeps its last assignment's, which the coordinator refuses, so its
        commits fail. Taken as it is, its metadata would carry none (-1), which a
        transactional commit is not checked against: the zombie would commit."""
        try:
            group = consumer.consumer_group_metadata()
        except RuntimeError as exc:  # "Consumer group metadata not available"
            log.warning("no group metadata (%s): keeping the last generation's", exc)
            return
        if group_generation(group) is None:
            log.warning("the consumer is in no group generation: keeping the last one's")
            return
        self.group = group

    def _checkpoint(self, partition: int) -> Checkpoint | None:
        """What the partition's store holds, right after a commit (no transaction open): the
        changelog's end now, at or past every record this worker committed to it."""
        if self.open or self.dirty or self.rewinds or partition not in self.committed:
            return None  # (after a rewind, no commit proved this worker's generation current)
        try:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.changelog, partition), timeout=TIMEOUT_S
            )
        except KafkaException as exc:
            log.warning("no checkpoint for partition %d: %s", partition, exc)
            return None
        return Checkpoint(
            self.changelog, partition, high, self.committed[partition],
            transactional_id(self.settings), time.time(),
        )  # fmt: skip

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revocation (session expired): nothing of the open
        transaction may be committed, and no kept state may be trusted."""
        log.warning("partitions lost: %s", sorted(tp.partition for tp in partitions))
        self.rebalancing = True
        self._cancel_restore()
        self._set_owned([])
        self.committed.clear()
        if self.abandoned:
            # From consumer.close() on the way to a restart, which aborts the transaction
            # after it. Aborting here hung close() in the client's unassign that follows
            # this callback (seen in about 2 runs of 5 of the zombie test, librdkafka 2.16).
            return
        self._abort()

    def _abort(self) -> None:
        self.offsets.clear()
        self.dirty = False
        self.state.close_all()  # they hold writes of the aborted transaction: no checkpoint
        if self.exactly_once and self.open:
            self.open = False
            try:
                self.producer.abort_transaction(TIMEOUT_S)
            except KafkaException as exc:
                raise Restart(f"aborting a transaction failed: {exc.args[0]}") from None

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the new partitions paused, and restore their stores (from a checkpoint when
        it is trusted, else in full): the loop fills them a slice at a time between its
        polls, while the partitions it owns already keep processing, so however long a
        restore takes, the worker serves rebalances and stays in its group."""
        started = time.monotonic()
        self.rebalancing = True
        self._refresh_group(consumer)
        added = sorted(tp.partition for tp in partitions if tp.topic == self.source)
        if partitions:
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)  # nothing is read before its partition's state is complete
        if not added:
            if self.restoring is None:
                self._ready()
            return  # a rebalance that brings nothing new: a restore under way goes on
        # Committed offsets first: under read_committed this waits until no transaction of
        # a previous owner is pending on them, so the changelog read next is final.
        committed = consumer.committed(
            [TopicPartition(self.source, p) for p in added], timeout=TIMEOUT_S
        )
        self._resume_from(committed)
        again = self._cancel_restore()  # restarted with the new partitions
        self._begin_restore(sorted(set(again) | set(added)), started)

    def _resume_from(self, committed: list[TopicPartition]) -> None:
        """Partitions assigned anew go on from their committed offsets, and from the clock
        committed with each (an event-time worker's partition time), forgetting whatever
        this worker held of them before."""
        added = [tp.partition for tp in committed]
        self.processor.forget(added)
        if self.savepoint is not None:
            self.savepoint.forget(added)
        for tp in committed:
            self.committed[tp.partition] = max(tp.offset, 0)
            clock = decode_partition_time(tp.metadata) if self.event_time else None
            if clock is not None:
                self.processor.resume_clock(tp.partition, clock)
                if self.savepoint is not None:
                    self.savepoint.resume_clock(tp.partition, clock)

    def _drop_restoring(self, revoked: set[int]) -> None:
        """Stop restoring revoked partitions; the rest of the restore starts again."""
        restore = self.restoring
        if restore is None or not revoked & set(restore.wanted):
            return
        again = [p for p in self._cancel_restore() if p not in revoked]
        if again:
            self._begin_restore(again, restore.started)

    def _begin_restore(self, wanted: list[int], started: float) -> None:
        restore = self.restoring = Restore(
            [TopicPartition(self.source, p) for p in wanted], wanted, 0, started, list(wanted)
        )
        for p in wanted:
            self.state.open(p, resume=True)
        self._start_reader(restore)

    def _start_reader(self, restore: Restore) -> None:
        """Read the changelog partitions to restore that hold records: from a trusted
        checkpoint's offset (the store kept what is before it), else from their start into
        an empty store. How it decides: streams.runtime.checkpoint.distrust, README "Restarts"."""
        reader = restore.reader = Consumer(
            kafka_config.committed_reader(
                self.settings,
                f"{self.settings.app_id}-restore",  # never commits
                **{"enable.partition.eof": True, "error_cb": self._client_error},
            )
        )
        owner = transactional_id(self.settings)
        starts = []
        for p in restore.restoring:
            low, high = reader.get_watermark_offsets(
                TopicPartition(self.changelog, p), timeout=TIMEOUT_S
            )
            start = OFFSET_BEGINNING
            if self.state.rocksdb:
                taken = self.state.checkpoints.pop(p, None)
                why = checkpoint.distrust(
                    taken, changelog=self.changelog, partition=p, owner=owner,
                    committed=self.committed.get(p, 0), low=low, high=high,
                )  # fmt: skip
                if why is None and taken is not None:
                    start = taken.offset
                    restore.resumed[p] = taken
                    index, missing = self.state.indexes.pop(p, (None, "no due index saved"))
                    tickets = None if index is None else self.processor.load_index(p, index)
                    if tickets is not None:
                        restore.indexed.add(p)
                        restore.tickets += tickets
                        index_note = f"due index loaded ({tickets} tickets)"
                    else:
                        index_note = f"due index rebuilt: {missing or 'saved by another setup'}"
                    self.say(
                        f"partition {p}: from its checkpoint, changelog {start}..{high}; "
                        + index_note
                    )
                else:
                    if taken is not None:
                        self.state.open(p)  # what it holds may be wrong: start empty
                    self.say(f"partition {p}: restored in full, {low}..{high} ({why})")
            if high > max(start, low):
                restore.todo.add(p)
                starts.append(TopicPartition(self.changelog, p, start))
        restore.kept = len(restore.resumed)
        reader.assign(starts)

    def _restore_slice(self) -> None:
        """Load changelog records for up to a slice, up to each partition's last stable
        offset (where read_committed reports its end), then rebuild the due index of the
        restored partitions from their stores, also a slice at a time."""
        restore = self.restoring
        assert restore is not None
        stores, todo, clock = self.state.stores, restore.todo, time.monotonic
        indexed, reindex = restore.indexed, self.processor.reindex
        # Shorter slices while other partitions are processing: they wait meanwhile.
        deadline = clock() + (RESTORE_SLICE_S if not self.owned else RESTORE_SLICE_BUSY_S)
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
                    p, key = msg.partition() or 0, msg.key() or b""
                    store = stores[p]
                    if p in indexed:  # the tail after a checkpoint whose index was loaded
                        reindex(p, key, store.get(key), msg.value())
                    store.load(key, msg.value())
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
            rebuilt = [p for p in restore.wanted if p not in indexed]
            restore.rebuild = self.processor.rebuilding(Partitions(self.state, rebuilt), rebuilt)
            restore.loaded = restore.tickets
        for tickets in restore.rebuild:
            restore.tickets = restore.loaded + tickets
            if clock() > deadline:
                return
        self._restored()

    def _restored(self) -> None:
        """Every store of the restore is complete and indexed: start reading them."""
        restore = self.restoring
        assert restore is not None
        self.restoring = None
        self.consumer.resume(restore.partitions)
        self._set_owned(sorted(set(self.owned) | set(restore.wanted)))
        self.say(
            f"due index rebuilt: {restore.tickets} tickets on partitions {restore.wanted} "
            f"({restore.records} changelog records restored, {restore.kept} partitions kept, "
            f"{time.monotonic() - restore.started:.1f}s)"
        )
        self._ready()

    def _ready(self) -> None:
        self.rebalancing = False
        if self.owned:
            self.ready(f" (assignment {self.readies + 1}: partitions {self.owned})")

    def _set_owned(self, partitions: list[int]) -> None:
        self.owned = partitions
        self.live = set(partitions)

    def _cancel_restore(self) -> list[int]:
        """A rebalance or shutdown before the restore finished: its stores are incomplete.
        A store resumed from a checkpoint keeps it (replaying its tail again from there is
        idempotent); the others are removed. Returns the partitions it was restoring."""
        restore, self.restoring = self.restoring, None
        if restore is None:
            return []
        if restore.rebuild is not None:
            restore.rebuild.close()  # before any store it iterates is closed
        if restore.reader is not None:
            restore.reader.close()
        for p in restore.wanted:
            self.state.close(p, restore.resumed.get(p))
        return restore.wanted

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

    def status(self) -> None:
        lag = sum(n for _, _, n in self.lag())
        counters = self.processor.counters
        log.info(
            "%d events (%d duplicates, %d rejected), %d escalations; partitions %s, lag %d",
            self.events, counters.duplicates, sum(counters.rejected.values()),
            counters.escalations, self.owned, lag,
        )  # fmt: skip


def serve(worker: Worker, settings: Settings) -> MetricsServer:
    """/healthz, /startupz, /readyz and /metrics (the processor's metrics: a TicketProcessor)
    on the web port, on a background thread."""
    render = metrics_exposition(worker.processor, worker.lag)  # type: ignore[arg-type]
    healthy, pages = probes(worker, settings)  # /healthz and /startupz
    return MetricsServer(
        settings.web_host, settings.web_port, healthy, render=render,
        pages={"/readyz": worker.readiness, **pages},
    ).start()  # fmt: skip


# Allocations (net of frees) between two young collections of the cyclic collector; Python's
# default is 700. The loop allocates a few records per event and keeps the states it caches,
# so at 700 the collector ran dozens of times a second and walked them again and again (about
# 4% of the processor's time); the cycles it finds (exceptions' tracebacks) can wait.
GC_YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect cycles less often, and never walk what exists once the worker is built (the
    policy, the modules, the clients: gc.freeze)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    gc.freeze()


def run_worker(
    settings: Settings, processor: TicketProcessor, topics: Topics, event_time: bool
) -> int:
    """The `escalator worker` child's body: stops cleanly on SIGTERM/SIGINT, asks for a
    restart (RESTART_EXIT_CODE) on a Restart or a registry outage."""
    worker = Worker(settings, processor, topics, event_time)
    tune_collector()
    server = serve(worker, settings)
    try:
        return worker.main(server)
    except (Restart, RegistryError) as exc:  # a registry outage: nothing dead-lettered
        restarts = int(os.environ.get(RESTARTS_ENV) or 0)
        worker.say(f"{exc}; restarting from the committed offsets (restart {restarts + 1})")
        return RESTART_EXIT_CODE
