"""The Faust runtime: the same TicketProcessor as Faust agents over a table, beside the loop.

For teams that run Faust and want their own agents next to ours (`escalator worker
--runtime faust`, or `faust -A streams.cli.faust_app worker`). The loop
(streams.runtime.worker) stays
the default: it is faster and exactly-once; this runtime is at-least-once and consumers
de-duplicate on escalation_id. Like the loop it only adapts Kafka to the processor: the
processor, its metrics, DLQ records and settings are the loop's own (build_processor).

Design around the pitfalls in FAUST-KAFKA-NOTES.md:
- A table changes only inside stream iteration. The wall clock is therefore a timer that
  sends an empty message to each owned partition of the co-partitioned `<app id>-clock`
  topic, and the agent that reads ticket events reads those too and runs the tick: every
  table write happens while an event of the written partition is current, so the
  changelog record goes to that partition (never `use_partitioner`). One agent reads both
  topics, so ticks and events never interleave inside the processor.
- Event-time ticks are ticket-events messages with the tick header, as for the loop, and
  the event-time clock of each partition commits with its offset as the loop's does
  (faust_offsets.CommittedClocks; Faust's own commits carry no metadata).
- The table's key and value types are bytes, so its store and changelog use the raw codec:
  the processor's state bytes, and the changelog, are the loop's (another type means json).
- Faust's `exactly_once` sends outputs to topics its consumer does not read outside the
  transaction, so this runtime refuses it (`guarantee`).

No loss under at-least-once: a message's outputs are delivered (awaited) before its state
changes reach the table, so any stored state that has seen an event or fired a deadline
implies its escalations are on Kafka; a crash repeats work (the same escalation ids), never
skips it. Offsets are committed by Faust after its producer is flushed, and the flush waits
until the broker has every changelog record written so far (`ChangelogAcks`: Faust's own
gives up after 0.1 s without a send). A start after an unclean stop drops the local table
files and restores from the changelog (`UncleanStop`): RocksDB may hold writes whose
changelog records never left the process.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from streams.runtime.faust_offsets import (
    BrokerReader,
    CommittedClocks,
    Cursor,
    ProcessedCommits,
    Reader,
    faust_message,
)
from streams.runtime.processor import Out, TicketProcessor, build_processor, is_tick
from streams.runtime.settings import ConfigError, Settings
from streams.runtime.topics import Topics, ensure_topics
from streams.runtime.worker import READY
from streams.runtime.worker_metrics import metrics_exposition
from streams.sla.policy import Policy

TABLE = "tickets"  # Faust names its changelog <app id>-tickets-changelog: the loop's topic
GUARANTEE_ENV = "ESCALATOR_PROCESSING_GUARANTEE"
EVENT_TIME_ENV = "ESCALATOR_EVENT_TIME"  # on: event-time clock (for `faust -A ... worker`)
PREFIX_ENV = "ESCALATOR_TOPIC_PREFIX"  # an isolated pipeline (for `faust -A ... worker`)
BUFFER = 16_384  # stream_buffer_maxsize: measured to help (FAUST-KAFKA-NOTES.md)
CHANGELOG_ACK_TIMEOUT_S = 120.0  # a commit waits this long for the changelog, then fails
RUNNING = "RUNNING"  # in the Faust data dir while a worker runs: gone after a clean stop


# Ticks are triggers, worth nothing once read: kept an hour, in 10-minute segments (retention
# drops whole segments), not the week of a default topic (10 ticks/s for each partition).
CLOCK_TOPIC_CONFIG = {"retention.ms": str(3_600_000), "segment.ms": str(600_000)}


def clock_topic(settings: Settings) -> str:
    """The co-partitioned topic the wall-clock timer ticks each partition through."""
    return f"{settings.app_id}-clock"


def ensure_clock_topic(settings: Settings, topics: Topics) -> None:
    ensure_topics(settings, topics, [clock_topic(settings)], config=CLOCK_TOPIC_CONFIG)


def guarantee(env: Mapping[str, str]) -> str:
    """At-least-once unless asked otherwise; exactly_once is refused with one line."""
    asked = env.get(GUARANTEE_ENV) or "at_least_once"
    if asked != "at_least_once":
        raise ConfigError(
            f"{GUARANTEE_ENV}={asked}: the Faust runtime is at-least-once only (Faust's "
            "exactly_once sends outputs outside the transaction); set at_least_once, or use "
            "--runtime loop for exactly-once"
        )
    return asked


class ChangelogError(RuntimeError):
    """Changelog records not acknowledged: committing offsets past them could lose state."""


class ChangelogTable(faust.Table):  # type: ignore[misc]
    """A Faust table that keeps each changelog send until the broker acknowledges it.

    Faust commits offsets right after `producer.flush()`, and the flush of its send buffer
    returns once 0.1 s pass without a send (faust-streaming 0.15, ProducerBuffer.flush_atmost):
    under load it returned with table writes still in the buffer, the offsets of their events
    were committed, and a crash or a scale-in lost those events. `unacked` is what the flush
    must wait for (ChangelogAcks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacked: set[asyncio.Future[Any]] = set()
        self.failure: BaseException | None = None
        self.opening: UncleanStop | None = None  # checked before the store opens a file

    async def on_start(self) -> None:
        if self.opening is not None:
            self.opening.begin()
        await super().on_start()

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.unacked.add(fut)
        fut.add_done_callback(self._acked)
        return fut

    def _acked(self, fut: asyncio.Future[Any]) -> None:
        self.unacked.discard(fut)
        if not fut.cancelled() and fut.exception() is not None and self.failure is None:
            self.failure = fut.exception()


class ChangelogAcks:
    """The producer's flush, as Faust calls it before committing offsets, extended to return
    only once every changelog record sent before it is acknowledged. Records sent while it
    waits belong to events past the offsets being committed, so it waits for what was
    pending when it began (no livelock under a steady stream). A failed or unacknowledged
    record raises: the commit fails and the worker stops, so nothing is committed past it."""

    def __init__(
        self,
        producer: Any,
        tables: Mapping[str, Any],
        timeout_s: float,
        cursor: Cursor | None = None,
    ) -> None:
        self.flush = producer.flush
        self.tables = tables  # the app's, by name: an extension's tables are waited for too
        self.timeout_s = timeout_s
        self.cursor = cursor  # told what became durable (Cursor.settle)
        producer.flush = self

    async def __call__(self) -> None:
        mark = None if self.cursor is None else self.cursor.mark()
        await self.flush()
        tables = [t for t in self.tables.values() if isinstance(t, ChangelogTable)]
        for table in tables:
            pending = list(table.unacked)
            if pending:
                _, late = await asyncio.wait(pending, timeout=self.timeout_s)
                if late:
                    raise ChangelogError(
                        f"{len(late)} changelog records of table {table.name!r} not "
                        f"acknowledged in {self.timeout_s:.0f} s: offsets not committed"
                    )
            if table.failure is not None:
                raise ChangelogError(
                    f"a changelog record of table {table.name!r} failed ({table.failure}): "
                    "offsets not committed"
                )
        if mark is not None and self.cursor is not None:
            self.cursor.settle(mark)


class UncleanStop:
    """A file in the Faust data dir while a worker runs. Found at start, it means the last
    run did not stop cleanly: its RocksDB may hold writes whose changelog records were never
    sent, which a later owner of the partition would not have, so the table files go and the
    table restores from the changelog. A clean stop (every record acknowledged) removes it."""

    def __init__(self, datadir: Path, tabledir: Path, say: Callable[[str], None]) -> None:
        self.marker = datadir / RUNNING
        self.tabledir = tabledir
        self.say = say

    def begin(self) -> bool:
        """True when the local table files were dropped."""
        dropped = self.marker.exists() and self.tabledir.exists()
        if dropped:
            shutil.rmtree(self.tabledir)
            self.say("the last stop was not clean: the table restores from its changelog")
        self.marker.write_text("a worker runs on this data dir\n")
        return dropped

    def end(self) -> None:
        self.marker.unlink(missing_ok=True)


class TableStore:
    """The processor's StateStore over the Faust table, holding a message's writes back until
    its outputs are delivered (see `apply`); reads see the held writes first."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.held: dict[bytes, bytes | None] = {}  # None: deleted

    def get(self, key: bytes) -> bytes | None:
        if key in self.held:
            return self.held[key]
        value: bytes | None = self.table.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.held[key] = value

    def delete(self, key: bytes) -> None:
        self.held[key] = None

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        """Every ticket of the owned partitions (what the due index is rebuilt from)."""
        return list(self.table.items())

    def apply(self) -> None:
        """Write the held changes; only inside stream iteration, with an event of their
        partition current (FAUST-KAFKA-NOTES.md, Tables)."""
        table = self.table
        for key, value in self.held.items():
            if value is not None:
                table[key] = value
            elif key in table:
                del table[key]
        self.held.clear()


def broker_credentials(settings: Settings) -> Any:
    """Faust's credentials for the Kafka settings (None for PLAINTEXT)."""
    kafka = settings.kafka
    protocol = kafka.security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_file)
        if kafka.ssl_cert_file:
            context.load_cert_chain(kafka.ssl_cert_file, kafka.ssl_key_file)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism, ssl_context=context,
        )  # fmt: skip
    return None if context is None else faust.SSLCredentials(context)


class FaustRuntime:
    """The Faust app over one processor; `app` is what `faust -A` and extensions use."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        topics: Topics,
        event_time: bool,
        processor: TicketProcessor | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.event_time = event_time
        self.processor = processor or build_processor(settings, policy, topics, event_time)
        self.source = topics.ticket_events
        self.clock = clock_topic(settings)
        self.owned: list[int] = []
        self.recovered = False
        self.assignments = 0
        self.events = 0
        datadir = settings.data_dir / "faust"
        datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
        self.app = app = faust.App(
            settings.app_id,
            broker=[f"kafka://{host}" for host in settings.kafka.bootstrap.split(",")],
            broker_credentials=broker_credentials(settings),
            store=settings.store,
            datadir=str(datadir),
            processing_guarantee="at_least_once",
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval_ms / 1000,
            broker_session_timeout=settings.session_timeout_ms / 1000,
            broker_heartbeat_interval=min(3000, settings.session_timeout_ms // 3) / 1000,
            producer_linger=0.0,  # a message's outputs are awaited: lingering only delays it
            producer_max_request_size=max(2 * settings.max_event_bytes, 1_048_588),
            stream_buffer_maxsize=BUFFER,
            web_enabled=True,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            Table=ChangelogTable,
        )
        # bytes key and value types make Faust pick the "raw" codec for the store and, as the
        # table builds its changelog topic from them, for recovery (with any other type it
        # picks "json"; FAUST-KAFKA-NOTES.md): the changelog holds the loop's state bytes.
        table = app.Table(
            TABLE, default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions
        )
        table.on_recover(self._recovered)
        self.table = table
        self.unclean = table.opening = UncleanStop(datadir, Path(app.conf.tabledir), self.say)
        self.cursor = Cursor(reader or BrokerReader(settings, self.source, settings.app_id))
        self.acks = ChangelogAcks(app.producer, app.tables, CHANGELOG_ACK_TIMEOUT_S, self.cursor)
        self.commits = ProcessedCommits(app.consumer, self.cursor, self.source)
        app.on_before_shutdown.connect(self._stopped_cleanly)
        self.store = TableStore(table)
        names = [self.source] if event_time else [self.source, self.clock]
        self.input = app.topic(*names, key_type=bytes, value_type=bytes)
        app.agent(self.input, name="escalator.tickets")(self._tickets)
        if not event_time:
            app.timer(settings.tick_ms / 1000, name="escalator.wall_clock")(self._wall_clock)
        app.on_partitions_revoked.connect(self._revoked)
        self._pages()

    # ------------------------------------------------------------------ agents

    async def _tickets(self, stream: Any) -> None:
        """Ticket events and clock ticks of one partition at a time -> processor -> outputs
        to the input's partition; then the state changes, once the outputs are delivered.
        Ticket events go through the cursor: each once, in order, none skipped."""
        processor, store, producer = self.processor, self.store, self.app.producer
        source, cursor = self.source, self.cursor
        async for event in stream.events():
            msg = event.message
            p = msg.partition
            if msg.topic != source:
                outs = processor.on_tick(store, p, processor.tick_clock())
                if outs:
                    await self._deliver(producer, p, outs)
                store.apply()
                continue
            step = cursor.step(p, msg.offset)
            if step is None:
                continue  # delivered again after a seek: processed already
            if step is False:
                await self._missed(producer, p, msg.offset)
            timestamp = int(msg.timestamp * 1000) if msg.timestamp else None
            await self._event(producer, p, msg.offset, msg.key, msg.value, timestamp, msg.headers)
            cursor.done(p, msg.offset, processor.clock_of(p))

    async def _event(
        self,
        producer: Any,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: Any,
    ) -> None:
        processor, store = self.processor, self.store
        handle = processor.on_tick_message if is_tick(headers) else processor.on_event
        outs = handle(store, value, key, partition, offset, timestamp)
        self.events += 1
        if outs:
            await self._deliver(producer, partition, outs)
        store.apply()

    async def _missed(self, producer: Any, partition: int, offset: int) -> None:
        """The events Faust's consumer skipped before this offset, read from the broker and
        processed first, each acked so that Faust's commits move past them."""
        start = self.cursor.next[partition]
        records = await self.cursor.fill(partition, offset)
        if not records:
            return  # nothing there (transaction markers, compaction)
        self.say(
            f"partition {partition}: offsets {start}..{offset - 1} were not delivered by "
            f"Faust's consumer; {len(records)} events read from the broker"
        )
        ack = self.app.consumer.ack
        for record in records:
            await self._event(producer, partition, record.offset, record.key, record.value,
                              record.timestamp, record.headers)  # fmt: skip
            self.cursor.done(partition, record.offset, self.processor.clock_of(partition))
            ack(faust_message(self.source, partition, record))

    async def _deliver(self, producer: Any, partition: int, outs: list[Out]) -> None:
        sent = [
            await producer.send(out.topic, out.key, out.value, partition, None, None)
            for out in outs
        ]
        await asyncio.gather(*sent)

    async def _wall_clock(self) -> None:
        """Every tick_ms: a tick to each owned partition of the clock topic (the agent fires
        what is due, as tables change only inside stream iteration)."""
        if not self.recovered:
            return
        producer = self.app.producer
        for p in self.owned:
            await producer.send(self.clock, b"", b"", p, None, None)

    # ------------------------------------------------------------------ rebalances

    async def _stopped_cleanly(self, app: Any, **kwargs: Any) -> None:
        """After the consumer stopped and committed: once every changelog record is on the
        broker, the local table files are as good as the changelog."""
        await self.acks()
        self.unclean.end()

    async def _revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        self.recovered = False

    async def _recovered(self) -> None:
        """After every assignment's recovery: the due index from the table (before any event
        of the assignment is processed: Faust resumes the streams after this)."""
        actives = self.app.assignor.assigned_actives()
        wanted = sorted(tp.partition for tp in actives if tp.topic == self.source)
        cursor = self.cursor
        await cursor.reset(wanted)  # before Faust resumes the streams (and acks any)
        self.processor.forget(set(self.owned) - set(wanted))  # the previous assignment's
        for p, clock in cursor.clock.items():  # each partition resumes from its offset's
            self.processor.resume_clock(p, clock)
        if self.event_time:
            CommittedClocks.install(self.app.consumer, cursor, self.source)
        tickets = self.processor.rebuild(self.store, wanted)
        self.owned = wanted
        self.recovered = True
        self.assignments += 1
        self.say(f"due index rebuilt: {tickets} tickets on partitions {wanted} (Faust table)")
        self.say(f"{READY} (assignment {self.assignments}: partitions {wanted})")

    def say(self, text: str) -> None:
        sys.stderr.write(f"escalator worker: {text}\n")
        sys.stderr.flush()

    # ------------------------------------------------------------------ web

    def lag(self) -> list[tuple[str, int, int]]:
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        out = []
        for p in list(self.owned):
            tp = TP(self.source, p)
            high, done = consumer.highwater(tp), committed.get(tp)
            if done is not None and high is not None and high >= 0:
                out.append((self.source, p, max(high - done, 0)))
        return out

    def readiness(self) -> tuple[int, bytes]:
        """/readyz as the loop answers it: 200 once every assigned partition is recovered."""
        partitions = list(self.owned) if self.recovered else []
        ready = self.recovered and bool(partitions)
        body = {"ready": ready, "recovered": self.recovered, "partitions": partitions}
        return (200 if ready else 503), json.dumps(body).encode()

    def _pages(self) -> None:
        """The loop's /healthz, /readyz, /startupz and /metrics on Faust's web server."""
        render = metrics_exposition(self.processor, self.lag)
        runtime = self

        @self.app.page("/metrics")
        class Metrics(faust.web.View):  # type: ignore[misc]
            async def get(self, request: Any) -> Any:
                return self.bytes(render(), content_type="text/plain; version=0.0.4")

        @self.app.page("/readyz")
        class Ready(faust.web.View):  # type: ignore[misc]
            async def get(self, request: Any) -> Any:
                status, body = runtime.readiness()
                return self.bytes(body, content_type="application/json", status=status)

        @self.app.page("/healthz")
        class Healthy(faust.web.View):  # type: ignore[misc]
            async def get(self, request: Any) -> Any:
                return self.bytes(b"ok\n", content_type="text/plain")

        @self.app.page("/startupz")
        class Started(faust.web.View):  # type: ignore[misc]
            """The chart's startup probe: passes once the first assignment is recovered."""

            async def get(self, request: Any) -> Any:
                started = runtime.assignments > 0
                body = json.dumps({"started": started}).encode()
                return self.bytes(
                    body, content_type="application/json", status=200 if started else 503
                )


def run_faust_worker(runtime: FaustRuntime, loglevel: str) -> int:
    """`escalator worker --runtime faust`: Faust's own worker (signals, logging, web)."""
    from faust.worker import Worker

    worker = Worker(runtime.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
