"""The Faust worker: ticket events and clock ticks in, escalations out, state in a table.

One agent consumes `ticket-events` and `escalator-clock` together, so a clock
tick for partition p is processed in-stream on partition p: every table write
is changelogged in the same transaction as the outputs and the input offsets
(Faust only lets tables change inside stream iteration). Ticks come from a
timer through a plain producer, outside the transactions, so they are visible
at once; in event-time mode (replays, the demo) there is no timer and event
time itself advances the clock.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import time
from collections.abc import Iterable
from typing import Any

import faust
from confluent_kafka import Producer
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST

from schemas.codec import codec_for
from streams import transactions
from streams.processor import Out, TicketProcessor, decode_tick, encode_tick, is_tick
from streams.settings import Settings
from streams.sla.engine import Engine
from streams.sla.policy import Policy
from streams.topics import Topics
from streams.worker_metrics import WorkerStats, consumer_lag, metrics_exposition

log = logging.getLogger("escalator.worker")

CODECS = ("TicketEvent", "Escalation", "PriorityBump", "Reminder", "DeadLetter")


class TableStore:
    """The Faust table seen through the processor's StateStore protocol.

    Writes go to the table's local store at once, and their changelog records are
    collected so the agent can send them itself with the message's outputs. Faust's
    own path (`table[key] = value`) queues changelog records in a buffer that its
    exactly-once commit does not flush first, so a record could land in the next
    transaction while the input offset is committed in this one: a crash in between
    lost state (seen in the crash test). Sent by the agent, the record is part of the
    same transaction as the outputs and the offset.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: list[tuple[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.table.data.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.table.data[key] = value
        self.pending.append((key, value))

    def delete(self, key: bytes) -> None:
        self.table.data.pop(key, None)
        self.pending.append((key, None))

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return list(self.table.data.items())

    def flush(self) -> list[Out]:
        """The changelog records of the writes so far, for the agent to send with its
        outputs (each reports its delivery to the table, as Faust's own sends do)."""
        topic, sent = self.changelog, self.table._on_changelog_sent
        pending, self.pending = self.pending, []
        return [Out(topic, key, value, sent) for key, value in pending]

    @property
    def changelog(self) -> str:
        name: str = self.table.changelog_topic.get_topic_name()
        return name


async def send_raw(app: faust.App, source_topic: str, partition: int, outs: Iterable[Out]) -> None:
    """Send records caused by a message of `source_topic[partition]` in that message's
    transaction (see streams.transactions.transactional_id), through Faust's producer but
    without its per-message layers: raw bytes need no serializer, future message or sensor,
    which cost more than the send."""
    producer = app.producer
    if not app.in_transaction:
        await producer.maybe_start()
    tid = transactions.transactional_id(app, source_topic, partition)
    for out in outs:
        sent: Any = await producer.send(
            out.topic, out.key, out.value, partition, None, None, transactional_id=tid
        )
        if out.on_sent is not None:
            sent.add_done_callback(out.on_sent)


RESTART_EXIT_CODE = 75  # the supervisor in `escalator worker` restarts the child on this
RESTARTS_ENV = "ESCALATOR_WORKER_RESTARTS"  # consecutive restarts, set by the supervisor
MAX_GAP_RESTARTS = 3


class OffsetGuard:
    """Makes sure no ticket-events offset is committed without being processed.

    Seen in the crash test: after a restart, Faust's fetcher sometimes delivers
    the first messages a few offsets past the committed position and records the
    jump as a "gap" that its commit then treats as done, so those events were
    never applied (lost escalations). ticket-events has no transaction markers or
    compaction (its producers are idempotent, not transactional), so every offset
    is a record and a jump is always a skip. Seeking back inside Faust did not
    re-deliver them, so the guard stops the process at once, before the message
    after the gap is acknowledged and any commit can cover the gap; the
    supervisor starts a fresh process, which resumes from the committed offset.
    """

    def __init__(self, app: Any, topic: str) -> None:
        self.app = app
        self.topic = topic
        self.expected: dict[int, int] = {}

    def reset(self, partitions: Iterable[int]) -> None:
        """After an assignment: expect each partition's committed offset first."""
        self.expected.clear()
        committed = getattr(self.app.consumer, "_committed_offset", {})
        for partition in partitions:
            offset = committed.get(TP(self.topic, partition))
            if offset is not None and offset >= 0:
                self.expected[partition] = offset

    def check(self, partition: int, offset: int) -> None:
        want = self.expected.get(partition)
        if want is not None and offset > want:
            restarts = int(os.environ.get(RESTARTS_ENV) or 0)
            if restarts < MAX_GAP_RESTARTS:
                log.error(
                    "%s[%d]: offsets %d..%d were skipped by the consumer; restarting the "
                    "worker so they are processed (nothing was committed past them)",
                    self.topic, partition, want, offset - 1,
                )  # fmt: skip
                logging.shutdown()
                os._exit(RESTART_EXIT_CODE)
            # A stalled pipeline is an outage too: after a few tries, go on, loudly.
            log.critical(
                "%s[%d]: offsets %d..%d skipped again after %d restarts; continuing without "
                "them: their events are NOT applied",
                self.topic, partition, want, offset - 1, restarts,
            )  # fmt: skip
        self.expected[partition] = max(offset + 1, want or 0)


def prepare_state_dir(settings: Settings) -> bool:
    """Drop local table state under exactly-once; True if there was any.

    RocksDB receives table writes before their transaction commits, so after a
    crash it can hold changes whose outputs were aborted; re-processing would see
    those events as duplicates and never emit their escalations. A clean stop is
    no proof either: Faust's final commit can fail on shutdown ("Not in the middle
    of a transaction", seen in worker logs) and leave the last writes uncommitted.
    So under exactly-once every start restores from the changelog, which holds
    committed data only. Restart time grows with the changelog (compacted: one
    record per live ticket), the price of not losing escalations.
    """
    data = settings.data_dir
    had_state = data.exists() and any(data.iterdir())
    wiped = settings.processing_guarantee == "exactly_once" and had_state
    if wiped:
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    return wiped


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = None
    if kafka.security_protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_file)
        if kafka.ssl_cert_file:
            context.load_cert_chain(kafka.ssl_cert_file, kafka.ssl_key_file)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


def faust_app(settings: Settings) -> faust.App:
    """The worker's Faust app with its Kafka, table and commit settings and no agents yet
    (bench/pipeline.py measures Faust's own floor with it)."""
    transactions.install()
    return faust.App(
        settings.app_id,
        broker="kafka://" + settings.kafka.bootstrap.replace(",", ";"),
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # Under exactly-once, outputs become readable when their transaction commits:
        # this interval bounds detection latency and costs throughput when short.
        broker_commit_interval=settings.commit_interval_ms / 1000.0,
        # A crashed worker holds its partitions until its session expires (Faust's default is
        # 60 s): a shorter session moves them to the restarted or surviving worker sooner.
        broker_session_timeout=settings.session_timeout_ms / 1000.0,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_ms / 3000.0),
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000.0,
    )


def build_app(
    settings: Settings,
    policy: Policy,
    topics: Topics | None = None,
    event_time: bool = False,
) -> faust.App:
    """A Faust app wired to the SLA engine; start it with faust.Worker or app.main()."""
    topics = topics or Topics()
    app = faust_app(settings)
    codecs = {name: codec_for(name, settings) for name in CODECS}
    metrics = None
    if settings.metrics_enabled:
        metrics = WorkerStats((sla.name for sla in policy.sla_policies), live=not event_time)
    processor = TicketProcessor(
        Engine(policy), topics, codecs, settings.max_event_bytes, event_time, metrics=metrics
    )
    app.escalator_processor = processor  # type: ignore[attr-defined]
    source = app.topic(
        topics.ticket_events, topics.clock, key_serializer="raw", value_serializer="raw"
    )
    table = app.Table(
        "tickets",
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options={"driver": "rocksdict"},
        help="SLA state per ticket",
    )
    store = TableStore(table)
    assigned: set[int] = set()
    stale = {"rebuild": True}

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        stale["rebuild"] = True

    def owned() -> set[int]:
        return {
            tp.partition for tp in app.consumer.assignment() if tp.topic == topics.ticket_events
        }

    guard = OffsetGuard(app, topics.ticket_events)
    barrier = transactions.commit_barrier(app)

    @app.agent(source, name="tickets")
    async def tickets(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            if stale["rebuild"]:
                stale["rebuild"] = False
                now_owned = owned()
                processor.forget(assigned - now_owned)
                count = processor.rebuild(store, now_owned)
                assigned.clear()
                assigned.update(now_owned)
                guard.reset(now_owned)
                log.info("due index rebuilt: %d tickets on partitions %s", count, sorted(now_owned))
            if message.topic == topics.ticket_events:
                guard.check(message.partition, message.offset)
            if message.topic == topics.clock or is_tick(message.headers):
                outs = processor.on_tick(store, message.partition, decode_tick(event.value))
            else:
                timestamp = int(message.timestamp * 1000) if message.timestamp else None
                outs = processor.on_event(
                    store, event.value, message.key, message.partition, message.offset, timestamp
                )
            async with barrier:  # one transaction for this message's records
                outs += store.flush()
                await send_raw(app, message.topic, message.partition, outs)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """Liveness: the event loop answers."""
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Readiness: tables recovered and ticket-events partitions assigned."""
        recovered = app.tables.recovery.completed.is_set()
        partitions = sorted(owned()) if recovered else []
        ready = recovered and not app.rebalancing and bool(partitions)
        body = {"ready": ready, "recovered": recovered, "partitions": partitions}
        return web.json(body, status=200 if ready else 503)

    render_metrics = metrics_exposition(
        processor, lambda: consumer_lag(app, (topics.ticket_events, topics.clock))
    )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        """Prometheus metrics (only build_info and process metrics with ESCALATOR_METRICS=off)."""
        return web.bytes(render_metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if not event_time:
        ticker = Producer({**settings.kafka.confluent(), "linger.ms": 0, "acks": 1})

        @app.timer(interval=settings.tick_ms / 1000.0)
        async def clock() -> None:
            now = encode_tick(int(time.time() * 1000))
            for partition in owned():
                ticker.produce(topics.clock, value=now, partition=partition)
            ticker.poll(0)

    return app
