"""Issue #22 on the real broker: a restarted worker restores only the changelog's tail from
its checkpoint (in full after a crash), and a joining worker does not stall the partitions
it does not take (cooperative-sticky rebalances)."""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.worker import changelog_topic
from streams.sla.policy import load_policy
from tests.support.live import event, now_ms
from tests.support.pipeline import Pipeline
from tests.support.policies import LIVE_POLICY
from tests.support.workers import Running, Stalling, new_worker, ticket_state, worker_settings

pytestmark = [pytest.mark.integration, pytest.mark.serial]

RESTORED = re.compile(
    r"(\d+) tickets on partitions \[[\d, ]*\] \((\d+) changelog records restored, "
    r"\d+ partitions kept, ([\d.]+)s\)"
)


def restores(log: str) -> list[tuple[int, int]]:
    """(tickets, changelog records restored) of each restore in a worker's log."""
    return [(int(t), int(r)) for t, r, _ in RESTORED.findall(log)]


def committed_events(pipeline: Pipeline, group: str) -> int:
    consumer = Consumer({**pipeline.settings.kafka.confluent(), "group.id": group})
    try:
        parts = [TopicPartition(pipeline.topics.ticket_events, p) for p in range(3)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30))
    finally:
        consumer.close()


def test_a_restarted_worker_restores_only_the_tail_and_a_crashed_one_everything(
    pipeline: Pipeline,
) -> None:
    settings = worker_settings(pipeline, "w1")
    producer = Producer(idempotent_producer(pipeline.settings))
    prefilled = 1500  # states of an earlier run, as the changelog holds them
    for i in range(prefilled):
        p = i % 3
        producer.produce(changelog_topic(settings), key=b"T-%d" % i,
                         value=ticket_state(f"T-{i}", now_ms(), p), partition=p)  # fmt: skip
    assert producer.flush(30) == 0
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    assert restores(worker.log_text()) == [(prefilled, prefilled)]
    codec = codec_for("TicketEvent", pipeline.settings)
    for i in range(30):  # new tickets: their states go to the changelog in transactions
        ticket = event(f"N-{i}", f"n-{i}", now_ms())
        producer.produce(pipeline.topics.ticket_events, key=f"N-{i}".encode(),
                         value=codec.encode(ticket_event_to_avro(ticket)))  # fmt: skip
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while committed_events(pipeline, settings.app_id) < 30:
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.3)
    tickets = prefilled + 30

    worker.stop()  # SIGTERM: commits, flushes the stores and writes their checkpoints
    restarted = pipeline.start_worker("w1")
    restarted.wait_ready(after=1)
    log = restarted.log_text()
    (tail_tickets, tail_records) = restores(log)[-1]
    assert tail_tickets == tickets, "the resumed stores lost tickets"
    assert tail_records < 0.01 * tickets, f"restored {tail_records} of {tickets} records"
    assert log.count("from its checkpoint") == 3

    restarted.kill()  # SIGKILL: the stores are open, with no checkpoint
    crashed = pipeline.start_worker("w1")
    crashed.wait_ready(after=2)
    log = crashed.log_text()
    crash_tickets, crash_records = restores(log)[-1]
    assert crash_tickets == tickets and crash_records >= tickets  # the whole changelog
    assert log.count("restored in full") == 3 + 3, "first start and after the crash"
    print("restores (tickets, records, seconds): first start, after SIGTERM, after SIGKILL:",
          RESTORED.findall(log))  # fmt: skip


def test_a_joining_worker_does_not_stall_the_partitions_it_does_not_take(
    pipeline: Pipeline, tmp_path: Path, running: list[Running]
) -> None:
    """New tickets flow on every partition of two workers; a third joins while one of the two
    is busy (its loop held for STALL_S, as in a long batch). A rebalance completes only once
    every member has rejoined: an eager one revokes every partition first, so the other
    worker's partitions stop for as long as the busy one takes. Incremental (cooperative)
    rebalances leave the partitions that stay put processing: on the ones the first worker
    keeps, the longest silence of its escalations stays near the commit interval."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(LIVE_POLICY)

    def start(name: str) -> Running:
        out = io.StringIO()
        worker = new_worker(worker_settings(pipeline, name), load_policy(policy_file), pipeline,
                            out)  # fmt: skip
        if name == "busy":
            worker.consumer = Stalling(worker.consumer)  # type: ignore[assignment]
        started = Running(worker, out)
        running.append(started)
        return started

    first = start("w1")
    first.wait_ready()
    busy = start("busy")
    busy.wait_ready()
    deadline = time.monotonic() + 60
    while not (first.worker.owned and busy.worker.owned and not first.worker.rebalancing):
        assert time.monotonic() < deadline, (first.worker.owned, busy.worker.owned)
        time.sleep(0.1)
    codec = codec_for("TicketEvent", pipeline.settings)
    stop = threading.Event()
    arrivals: list[tuple[int, float]] = []  # (partition, when read)
    fired: list[str] = []  # escalation ids, as read_committed reads them
    escalation = codec_for("Escalation", pipeline.settings)

    def produce() -> None:
        producer = Producer(idempotent_producer(pipeline.settings))
        i = 0
        while not stop.is_set():
            for p in range(3):  # warned at once: created 45 s ago, warned at 30 s
                ticket = event(f"T-{i}", f"e-{i}", now_ms() - 45_000, channel="chat")
                producer.produce(pipeline.topics.ticket_events, partition=p,
                                 key=f"T-{i}".encode(),
                                 value=codec.encode(ticket_event_to_avro(ticket)))  # fmt: skip
                i += 1
            producer.poll(0)
            time.sleep(0.03)
        producer.flush(10)

    def read() -> None:
        consumer = Consumer({**pipeline.settings.kafka.confluent(),
                             "group.id": f"gap-{uuid.uuid4().hex}",
                             "isolation.level": "read_committed"})  # fmt: skip
        name = pipeline.topics.name("escalations")
        consumer.assign([TopicPartition(name, p, -1) for p in range(3)])  # from the end
        while not stop.is_set():
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None:
                    arrivals.append((msg.partition() or 0, time.monotonic()))
                    fired.append(escalation.decode(msg.value())["escalation_id"])
        consumer.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    stalling: Stalling = busy.worker.consumer  # type: ignore[assignment]
    before_join = set(first.worker.owned)
    try:
        time.sleep(3)
        joined = time.monotonic()
        stalling.stall.set()
        assert stalling.stalled.wait(10)
        threading.Timer(STALL_S, stalling.release.set).start()
        third = start("w3")
        third.wait_ready()
        settled = max(time.monotonic(), joined + STALL_S)
        time.sleep(1.5)
    finally:
        stalling.release.set()
        stop.set()
        for thread in threads:
            thread.join(30)
    # A commit that raced the rebalance (its offsets still under the generation before it)
    # is aborted and redone in place: no worker restarts, none gives up its partitions.
    logs = "\n".join(r.out.getvalue() for r in running)
    assert [r.error for r in running] == [None] * 3, logs
    assert len(fired) == len(set(fired)), "an aborted transaction's escalations were read"
    kept = sorted(before_join & set(first.worker.owned))
    assert kept, (before_join, first.worker.owned, logs)

    def longest_silence(start: float, end: float) -> float:
        worst = 0.0
        for p in kept:
            times = [t for q, t in arrivals if q == p and start <= t <= end]
            bounds = [start, *times, end]
            worst = max(worst, *(b - a for a, b in zip(bounds, bounds[1:], strict=False)))
        return worst

    before = longest_silence(joined - 2.5, joined)
    during = longest_silence(joined, settled + 1)
    print(f"longest silence on kept partitions {kept}: {during:.2f}s while a worker joined and "
          f"another was busy for {STALL_S:.0f}s, {before:.2f}s before")  # fmt: skip
    assert during < STALL_S / 2, (during, before, first.out.getvalue())


STALL_S = 7.0  # how long the busy worker's loop is held while the third joins
