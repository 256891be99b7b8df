"""Exactly-once without Faust: the worker's TicketProcessor in a confluent-kafka transactional loop.

    .venv/bin/python bench/eos_loop.py [--agents 400] [--days 3] [--commit-ms 100]

Why: the Faust worker drains ~1,200 events/s exactly-once and Faust's own floor here
(bench/pipeline.py) is below the 10,000 events/s goal, so this measures the alternative
before anyone builds it: one consumer (read_committed, no auto commit) and one
transactional producer (KIP-447: offsets sent with the consumer's group metadata), the
processor on a dict store whose writes also go to a changelog topic, every output and
changelog record to the input's partition, a transaction committed every ~100 ms.
Figures, never pass/fail; progress on stderr.

1. History, prefixed topics and a replay to ticket-events, as bench/pipeline.py does.
2. Ceiling: bench/pipeline.py's bare consumer + fastavro decode.
3. The loop drains the backlog, metrics off and then on (streams.worker_metrics), each
   with its own consumer group, transactional.id and output topics; events/s until every
   message is processed and its offset committed, and events per CPU second of this
   process (librdkafka's threads included).
4. Check: escalations read back read_committed against the event-time backtest's.

Needs Kafka (deploy/local/services up kafka, or ESCALATOR_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from pipeline import ceiling  # bench/pipeline.py (this directory is on sys.path)

from connectors.generator import generate_to_file
from connectors.history import read_history
from schemas.codec import codec_for
from streams.backtest import EventTimeDriver, backtest_events
from streams.processor import TicketProcessor, decode_tick, is_tick
from streams.progress import Progress
from streams.replay import replay
from streams.settings import Settings, load_settings
from streams.sla.actions import Escalation
from streams.sla.engine import Engine
from streams.sla.policy import Policy, load_policy
from streams.topics import Topics, ensure_topics
from streams.worker import CODECS
from streams.worker_metrics import WorkerStats

GOAL = 10_000


class ChangelogStore:
    """The processor's StateStore as a dict; each put/delete is also queued for the changelog."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.pending: list[tuple[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.pending.append((key, value))

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)
        self.pending.append((key, None))

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return self.data.items()


@dataclass
class LoopRun:
    """What one drain of the backlog by the transactional loop measured."""

    label: str
    events: int = 0
    wall: float = 0.0  # first message -> last commit returned
    cpu: float = 0.0  # process CPU over the same span
    commits: int = 0
    commit_wall: float = 0.0  # in send_offsets_to_transaction + commit + begin
    batches: int = 0
    sent: int = 0  # records produced: outputs + changelog
    escalations: Counter[str] | None = None

    @property
    def rate(self) -> float:
        return self.events / max(self.wall, 1e-9)

    @property
    def per_cpu(self) -> float:
        return self.events / max(self.cpu, 1e-9)


def eos_loop(
    settings: Settings,
    policy: Policy,
    source: str,
    out: Topics,
    total: int,
    metrics: bool,
    commit_ms: int,
    batch: int,
    linger_ms: int,
) -> LoopRun:
    """Drain `source` once (consume, process, produce, commit in transactions)."""
    run = LoopRun(f"metrics {'on' if metrics else 'off'}")
    changelog = f"{out.prefix}{settings.app_id}-tickets-changelog"
    outputs = [out.escalations, out.priority_bumps, out.reminders, out.dlq, out.queue_stats]
    ensure_topics(settings, out, [*outputs, changelog])
    codecs = {name: codec_for(name, settings) for name in CODECS}
    stats = WorkerStats((s.name for s in policy.sla_policies), live=False) if metrics else None
    processor = TicketProcessor(Engine(policy), out, codecs, settings.max_event_bytes,
                                event_time=True, metrics=stats)  # fmt: skip
    store = ChangelogStore()
    processor.rebuild(store, range(settings.partitions))  # one consumer owns every partition
    run_id = uuid.uuid4().hex[:8]
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"eosbench-{run_id}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    producer = Producer({**settings.kafka.confluent(), "transactional.id": f"eosbench-{run_id}",
                         "linger.ms": linger_ms, "acks": "all",
                         "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    producer.init_transactions(30)
    consumer.subscribe([source])
    producer.begin_transaction()
    produce, pending = producer.produce, store.pending
    offsets: dict[int, int] = {}  # next offset per partition, in the open transaction
    uncommitted = 0
    started = cpu_started = last_commit = 0.0
    progress = Progress(f"eos loop ({run.label})", total=total, stream=sys.stderr)

    def send(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        while True:
            try:
                produce(topic, value, key, partition)
                return
            except BufferError:
                producer.poll(0.005)

    while run.events < total:
        messages = consumer.consume(num_messages=batch, timeout=0.05)
        if messages and not started:
            started = last_commit = time.perf_counter()
            cpu_started = time.process_time()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"consume error: {err}")
            p = msg.partition()
            if is_tick(msg.headers()):
                outs = processor.on_tick(store, p, decode_tick(msg.value()))
            else:
                kind, ts = msg.timestamp()
                ts_ms = None if kind == TIMESTAMP_NOT_AVAILABLE else ts
                outs = processor.on_event(store, msg.value(), msg.key(), p, msg.offset(), ts_ms)
            for o in outs:
                send(o.topic, o.key, o.value, p)
            for key, value in pending:
                send(changelog, key, value, p)
            run.sent += len(outs) + len(pending)
            pending.clear()
            offsets[p] = msg.offset() + 1
            uncommitted += 1
        if messages:
            run.batches += 1
        producer.poll(0)
        now = time.perf_counter()
        if uncommitted and (
            now - last_commit >= commit_ms / 1000 or run.events + uncommitted >= total
        ):
            tps = [TopicPartition(source, p, o) for p, o in offsets.items()]
            producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            producer.begin_transaction()
            last_commit = time.perf_counter()
            run.commit_wall += last_commit - now
            run.commits += 1
            run.events += uncommitted
            progress.update(uncommitted)
            offsets.clear()
            uncommitted = 0
    run.wall = last_commit - started
    run.cpu = time.process_time() - cpu_started
    progress.close()
    producer.abort_transaction(30)  # the empty one begun after the last commit
    consumer.close()
    run.escalations = read_escalations(settings, out.escalations)
    return run


def read_escalations(settings: Settings, topic: str) -> Counter[str]:
    """escalation_id -> copies on the topic, read by a read_committed consumer to its end."""
    codec = codec_for("Escalation", settings)
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"eoscheck-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, -2) for p in range(settings.partitions)])
    ids: Counter[str] = Counter()
    ended: set[int] = set()
    deadline = time.monotonic() + 120
    while len(ended) < settings.partitions and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                ended.add(msg.partition())
            elif err is None:
                ids[codec.decode(msg.value())["escalation_id"]] += 1
    consumer.close()
    return ids


def expected_escalations(policy: Policy, history: Path) -> tuple[set[str], int]:
    """The event-time driver's escalation ids (as tests/integration/test_pipeline.py computes
    them) and the backtest's escalation count for the same history and policy."""
    driver = EventTimeDriver(Engine(policy))
    ids: set[str] = set()
    for event in read_history(history):
        ids.update(a.escalation_id for a in driver.feed(event) if isinstance(a, Escalation))  # type: ignore[arg-type]
    if driver.watermark is not None:
        ids.update(a.escalation_id for a in driver.advance(driver.watermark)
                   if isinstance(a, Escalation))  # fmt: skip
    (report,) = backtest_events([policy], read_history(history))
    return ids, sum(report.by_reason.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--commit-ms", type=int, default=100, help="transaction interval")
    parser.add_argument("--batch", type=int, default=500, help="consume(num_messages=...)")
    parser.add_argument("--linger-ms", type=int, default=10)
    parser.add_argument("--no-metrics-run", action="store_true", help="only the metrics-off run")
    args = parser.parse_args()
    settings = load_settings()
    partitions = settings.partitions
    policy = load_policy()
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.jsonl"
        summary = generate_to_file(history, agents=args.agents, days=args.days, seed=99)
        print(f"history: {summary.tickets:,} tickets, {summary.events:,} events; "
              f"{partitions} partitions")  # fmt: skip
        prefix = f"bencheos{uuid.uuid4().hex[:8]}-"
        topics = Topics(prefix)
        ensure_topics(settings, topics)
        sent, _ = replay(settings, history, topics, end_tick=True)
        total = sent + partitions  # plus one end tick per partition

        ceil = ceiling(settings, topics.ticket_events, partitions, total)
        print(
            f"ceiling  : bare confluent-kafka consumer + fastavro decode: {ceil:>10,.0f} events/s"
        )
        runs: list[LoopRun] = []
        for metrics in (False,) if args.no_metrics_run else (False, True):
            out = Topics(f"{prefix}{'m' if metrics else 'n'}-")  # own outputs; same input
            run = eos_loop(settings, policy, topics.ticket_events, out, total, metrics,
                           args.commit_ms, args.batch, args.linger_ms)  # fmt: skip
            runs.append(run)
            print(f"eos loop : {run.label:<11} {run.rate:>9,.0f} events/s  "
                  f"{run.per_cpu:>9,.0f} per CPU-s  ({run.events:,} events in {run.wall:.1f} s, "
                  f"{run.sent / run.events:.2f} records sent per event, {run.commits} commits "
                  f"averaging {1000 * run.commit_wall / max(run.commits, 1):.1f} ms = "
                  f"{run.commit_wall / run.wall:.0%} of wall, "
                  f"{run.events / max(run.batches, 1):.0f} messages per batch)")  # fmt: skip
        expected, backtest_count = expected_escalations(policy, history)

    print(f"check    : backtest {backtest_count:,} escalations, event-time driver "
          f"{len(expected):,} ids")  # fmt: skip
    for run in runs:
        assert run.escalations is not None
        seen = run.escalations
        dupes = sum(n - 1 for n in seen.values() if n > 1)
        print(f"check    : {run.label:<11} {sum(seen.values()):,} escalations read_committed, "
              f"{len(seen):,} ids; {len(expected - set(seen))} missing, "
              f"{len(set(seen) - expected)} unexpected, {dupes} duplicated")  # fmt: skip
    print()
    print(f"{'':<34}{'events/s':>10}{'per CPU-s':>11}{'/ceiling':>10}{'/goal':>8}")
    print(f"{'ceiling (consume + decode)':<34}{ceil:>10,.0f}{'':>11}{1:>10.3f}{ceil / GOAL:>8.2f}")
    for run in runs:
        print(f"{'eos loop, ' + run.label:<34}{run.rate:>10,.0f}{run.per_cpu:>11,.0f}"
              f"{run.rate / ceil:>10.3f}{run.rate / GOAL:>8.2f}")  # fmt: skip
    print(f"{'goal':<34}{GOAL:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
