"""The worker's group membership on the real broker: a stalled zombie is fenced (KIP-447),
kept stores are checked against the committed offsets, a restore longer than
max.poll.interval.ms keeps the worker in its group, and the changelog is compacted.

The worker under test runs in this process (its loop on a thread, real clients) so the
test can stall it at a chosen point or slow its restore; the other worker is a process.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import streams.runtime.kafka_config
import streams.runtime.processor
import streams.runtime.worker
from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.partition_store import PartitionStore
from streams.runtime.worker import changelog_topic
from streams.sla.policy import load_policy
from tests.support.live import event, now_ms
from tests.support.pipeline import Pipeline
from tests.support.policies import LIVE_POLICY
from tests.support.workers import Running, Stalling, new_worker, ticket_state, worker_settings

pytestmark = pytest.mark.integration

MAX_POLL_MS = 6000  # the least librdkafka allows with the broker's least session timeout


@pytest.fixture
def short_poll(monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    """Workers whose group evicts them after 6 s without a poll or a heartbeat."""
    pipeline.extra_env["ESCALATOR_SESSION_TIMEOUT_MS"] = str(MAX_POLL_MS)
    config = streams.runtime.kafka_config.worker_consumer
    monkeypatch.setattr(
        streams.runtime.kafka_config,
        "worker_consumer",
        lambda settings: {**config(settings), "max.poll.interval.ms": MAX_POLL_MS},
    )


@pytest.mark.serial  # a stall timed against max.poll.interval.ms
def test_a_stalled_worker_commits_no_escalation_for_partitions_it_lost(
    pipeline: Pipeline, tmp_path: Path, short_poll: None, running: list[Running]
) -> None:
    """A worker stalled past max.poll.interval.ms leaves its group and its partitions go to
    another. When it resumes, its next clock tick fires the deadlines that passed meanwhile,
    before it polls again and learns it lost them. That tick-only transaction must not
    commit: the new owner already fired them."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(LIVE_POLICY)
    out = io.StringIO()
    zombie = new_worker(worker_settings(pipeline, "w1"), load_policy(policy_file), pipeline, out)
    stalling = Stalling(zombie.consumer)
    zombie.consumer = stalling  # type: ignore[assignment]
    first = Running(zombie, out)
    running.append(first)
    first.wait_ready()
    codec = codec_for("TicketEvent", pipeline.settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    tickets = 30
    created_at = now_ms() - 45_000  # warned at once (30 s), first response breached in ~15 s
    for i in range(tickets):
        ticket = event(f"T-{i}", f"e-{i}", created_at, channel="chat")
        producer.produce(pipeline.topics.ticket_events, key=f"T-{i}".encode(),
                         value=codec.encode(ticket_event_to_avro(ticket)))  # fmt: skip
    assert producer.flush(30) == 0
    warned = pipeline.read("escalations", "Escalation", expect=tickets, timeout=60, idle=0.5)
    assert [r["reason"] for r in warned] == ["SLA_WARNING"] * tickets
    stalling.stall.set()
    assert stalling.stalled.wait(10)
    try:
        owner = pipeline.start_worker("w2", event_time=False, policy=policy_file)
        owner.wait_ready()  # after the zombie left the group: all partitions
        records = pipeline.read("escalations", "Escalation", expect=2 * tickets, timeout=90,
                                idle=0.5)  # fmt: skip
        assert len(records) == 2 * tickets, "the new owner did not fire the breaches"
    finally:
        stalling.release.set()
    first.thread.join(30)  # the zombie's commit fails: it stops to restart from the group
    records = pipeline.read("escalations", "Escalation", idle=2)
    seen = Counter(r["escalation_id"] for r in records)
    duplicated = [k for k, n in seen.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} escalations committed twice, e.g. {duplicated[:3]}"
    assert len(seen) == 2 * tickets
    # Its stale transaction was refused: either its commit failed (a restart), or, under
    # cooperative rebalancing, its consumer learnt of the loss first, aborted the
    # transaction and rejoined the group (a later assignment).
    if first.error is not None or "assignment 2" not in out.getvalue():
        assert isinstance(first.error, streams.runtime.worker.Restart), (
            first.error,
            out.getvalue(),
        )
        assert "commit failed" in str(first.error)


def test_a_kept_store_is_restored_when_the_partition_was_committed_by_another(
    pipeline: Pipeline,
) -> None:
    """Between a revocation and this worker's next assignment, another worker may have
    owned the partition (this one missed a generation): its kept store is then stale."""
    settings = worker_settings(pipeline, "w1")
    changelog = changelog_topic(settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    producer.produce(changelog, key=b"T-1", value=ticket_state("T-1", now_ms()), partition=0)
    assert producer.flush(30) == 0
    out = io.StringIO()
    worker = new_worker(settings, load_policy(), pipeline, out)
    source = TopicPartition(pipeline.topics.ticket_events, 0)

    def assign() -> PartitionStore:
        worker._revoked(worker.consumer, [source])
        worker._assigned(worker.consumer, [source])
        while getattr(worker, "restoring", None) is not None:
            worker._restore_slice()
        return worker.state.stores[0]

    try:
        assert assign().get(b"T-1") is not None
        assert "(1 changelog records restored, 0 partitions kept" in out.getvalue()
        assign()  # nobody committed since: the store is kept
        assert "(0 changelog records restored, 1 partitions kept" in out.getvalue()
        # Another worker processes 3 events of partition 0 and commits them.
        producer.produce(changelog, key=b"T-2", value=ticket_state("T-2", now_ms()), partition=0)
        assert producer.flush(30) == 0
        other = Consumer({**settings.kafka.confluent(), "group.id": settings.app_id})
        other.commit(offsets=[TopicPartition(source.topic, 0, 3)], asynchronous=False)
        other.close()
        store = assign()
        assert store.get(b"T-2") is not None, "the stale store was kept"
        assert out.getvalue().endswith("partitions [0])\n")
        assert "(2 changelog records restored, 0 partitions kept" in out.getvalue()
        assert worker.committed == {0: 3}
    finally:
        worker.shutdown()


@pytest.mark.parametrize("slow", ["changelog", "due index"])
def test_a_restore_longer_than_max_poll_interval_keeps_the_worker_in_its_group(
    pipeline: Pipeline, short_poll: None, running: list[Running], monkeypatch: pytest.MonkeyPatch,
    slow: str,
) -> None:  # fmt: skip
    """A restore of 30 s (a slow disk reading the changelog, or slow decoding while the due
    index is rebuilt) with max.poll.interval.ms at 6 s, and a second worker joins meanwhile:
    the restoring worker must take part in that rebalance. Evicted, it would leave every
    partition to the newcomer and rejoin later, churning the group."""
    settings = worker_settings(pipeline, "w1")
    changelog = changelog_topic(settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    records = 12_000
    for i in range(records):
        p = i % pipeline.partitions
        producer.produce(changelog, key=b"T-%d" % i, value=ticket_state(f"T-{i}", now_ms(), p),
                         partition=p)  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0
    restoring = threading.Event()
    slowed: list[threading.Thread] = []

    def slowly(call: Any) -> Any:
        def slow_call(*args: Any) -> Any:
            if threading.current_thread() in slowed:
                restoring.set()
                time.sleep(30 / records)
            return call(*args)

        return slow_call

    if slow == "changelog":
        monkeypatch.setattr(PartitionStore, "load", slowly(PartitionStore.load))
    else:
        decode = streams.runtime.processor.decode_state
        monkeypatch.setattr(streams.runtime.processor, "decode_state", slowly(decode))
    out = io.StringIO()
    worker = new_worker(settings, load_policy(), pipeline, out)
    lost: list[list[int]] = []
    on_lost = worker._lost

    def counting_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost.append([tp.partition for tp in partitions])
        on_lost(consumer, partitions)

    worker._lost = counting_lost  # type: ignore[method-assign]
    first = Running(worker, out)
    slowed.append(first.thread)
    running.append(first)
    assert restoring.wait(60), out.getvalue()
    # The newcomer in this process too: its rebalance timeout is also 6 s.
    out2 = io.StringIO()
    newcomer = new_worker(worker_settings(pipeline, "w2"), load_policy(), pipeline, out2)
    second = Running(newcomer, out2)
    running.append(second)
    second.wait_ready()
    theirs = list(newcomer.owned)
    assert theirs and len(theirs) < pipeline.partitions, (
        f"the restoring worker was evicted: the newcomer took partitions {theirs}"
    )
    first.wait_ready(timeout=120)
    mine, theirs = list(worker.owned), list(newcomer.owned)
    assert sorted(mine + theirs) == [0, 1, 2], (mine, theirs)
    assert not lost, f"the restoring worker lost partitions {lost}"
    assert first.error is None and first.thread.is_alive()


def test_the_changelog_and_the_board_topic_are_created_compacted(pipeline: Pipeline) -> None:
    settings = worker_settings(pipeline, "w1")  # what the worker ensures at start-up
    admin = AdminClient(settings.kafka.confluent())
    wanted = {"cleanup.policy": "compact", "segment.ms": "3600000",
              "min.cleanable.dirty.ratio": "0.1"}  # fmt: skip
    for topic in (changelog_topic(settings), pipeline.topics.board):
        resource = ConfigResource("topic", topic)
        deadline = time.monotonic() + 30
        while True:  # a topic just created may not be known to the broker's metadata yet
            try:
                config = admin.describe_configs([resource])[resource].result(30)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert {name: config[name].value for name in wanted} == wanted, topic
    escalations = ConfigResource("topic", pipeline.topics.escalations)
    config = admin.describe_configs([escalations])[escalations].result(30)
    assert config["cleanup.policy"].value == "delete"
