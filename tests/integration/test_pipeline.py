"""The worker on the real broker, on each runtime (the loop and Faust): live equals backtest,
crash, scale-out (event time)."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from random import Random

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.partition_time import encode_partition_time
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_to_file
from streams.tools.history import write_history
from streams.tools.partitioner import ticket_partition
from streams.tools.replay import replay
from tests.support.compiled import compiled_copy, mapped_compiled
from tests.support.histories import arrived_late, history, history_fired
from tests.support.pipeline import RUNTIMES, Pipeline, WorkerProcess

pytestmark = pytest.mark.integration


def escalation_ids(line: Pipeline, expect: int, timeout: float = 120.0) -> Counter[str]:
    records = line.read(
        "escalations", "Escalation", expect=expect, timeout=timeout, distinct="escalation_id"
    )
    return Counter(r["escalation_id"] for r in records)


@pytest.mark.parametrize(
    ("any_pipeline", "guarantee"),
    [("loop", "exactly_once"), ("loop", "at_least_once"), ("faust", "at_least_once")],
    indirect=["any_pipeline"],
)
def test_live_equals_backtest(any_pipeline: Pipeline, tmp_path: Path, guarantee: str) -> None:
    any_pipeline.extra_env["ESCALATOR_PROCESSING_GUARANTEE"] = guarantee
    live_equals_backtest(any_pipeline, tmp_path)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_compiled_worker_live_equals_backtest(
    kafka_bootstrap: str, tmp_path: Path, runtime: str
) -> None:
    """The worker as the Docker image runs it, from the mypyc-compiled modules, on each
    runtime (the processor is compiled code either way)."""
    pipeline = Pipeline(kafka_bootstrap, tmp_path, runtime=runtime, source=compiled_copy())
    pipeline.create_topics()
    try:
        worker = live_equals_backtest(pipeline, tmp_path)
        assert mapped_compiled(worker.proc.pid, pipeline.source)  # not silently plain
    finally:
        pipeline.close()


def live_equals_backtest(pipeline: Pipeline, tmp_path: Path) -> WorkerProcess:
    """An event-time worker fires every escalation a backtest of the same history fires,
    once each, at the same instants; its probes and metrics answer. Returns the worker,
    still running."""
    path, fired = history_fired(tmp_path, agents=8, days=3, seed=11)
    assert len(fired) > 100
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert bad == 0 and sent > 1000
    records = pipeline.read("escalations", "Escalation", expect=len(fired), timeout=120)
    seen = Counter(r["escalation_id"] for r in records)
    assert set(seen) == set(fired)
    assert max(seen.values()) == 1, [k for k, v in seen.items() if v > 1][:5]
    # the same instants too: an event-time worker fires each deadline at its due instant
    live = {r["escalation_id"]: r["fired_at"] for r in records}
    assert live == fired
    assert all(r["fired_at"] == r["due_at"] for r in records if r["event_id"] is None)
    # The probes the Helm chart points at answer on the worker's web port.
    base = f"http://127.0.0.1:{worker.web_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
        body = json.loads(response.read())
        assert response.status == 200 and body["ready"] is True
        assert body["partitions"] == [0, 1, 2]
    # The loop's metrics, whichever runtime: every escalation counted once, lag per partition.
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    counted = sum(s.value for s in families["escalator_escalations"].samples
                  if s.name == "escalator_escalations_total")  # fmt: skip
    assert counted == len(fired)
    lag = families["escalator_consumer_lag"].samples
    assert sorted(int(s.labels["partition"]) for s in lag) == [0, 1, 2]
    return worker


def test_live_equals_an_arrival_order_backtest_of_late_events(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A history delivered out of order (one event in 25 held back up to 48 h), replayed in
    that order: the event-time worker on 3 partitions fires what `backtest --arrival-order
    --partitions 3` fires, each once, at the same instants. One clock for the whole file
    would have fired, or silenced, 4 escalations otherwise."""
    source = tmp_path / "generated.jsonl"
    generate_to_file(source, agents=8, days=3, seed=11)
    events = arrived_late(source, Random(0))
    path = tmp_path / "arrived.jsonl"
    write_history(path, events)
    fired: dict[int, dict[str, int]] = {}
    for partitions in (1, pipeline.partitions):
        out = io.StringIO()
        backtest_events([load_policy()], events, [out], arrival_order=True,
                        partitions=partitions)  # fmt: skip
        records = [json.loads(line) for line in out.getvalue().splitlines()]
        fired[partitions] = {r["escalation_id"]: r["fired_at"] for r in records
                             if r["action"] == "escalation"}  # fmt: skip
    expected = fired[pipeline.partitions]
    assert len(expected) > 200 and fired[1] != expected
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert (sent, bad) == (len(events), 0)
    records = pipeline.read("escalations", "Escalation", expect=len(expected), timeout=120)
    assert Counter(r["escalation_id"] for r in records).most_common(1)[0][1] == 1
    assert {r["escalation_id"]: r["fired_at"] for r in records} == expected


def test_crash_mid_stream_loses_and_duplicates_nothing(
    any_pipeline: Pipeline, tmp_path: Path
) -> None:
    """Exactly-once on the loop; at-least-once on Faust: nothing lost, and what is repeated
    has the ids the backtest expects (consumers de-duplicate on them)."""
    pipeline = any_pipeline
    path, expected = history(tmp_path, agents=12, days=4, seed=5)
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    done = threading.Event()
    result: dict[str, object] = {}

    def produce() -> None:
        try:
            result["sent"] = replay(pipeline.settings, path, pipeline.topics, rate=400,
                                    end_tick=True)  # fmt: skip
        finally:
            done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(3)
    assert not done.is_set(), "replay finished before the crash: raise the history size"
    worker.kill()  # SIGKILL mid-stream: no flush, no commit
    time.sleep(1)
    started = worker.log_text().count(worker.ready)  # the log file goes on: count anew
    restarted = pipeline.start_worker("w1")
    restarted.wait_ready(after=started)
    thread.join(300)
    assert done.is_set() and "sent" in result
    seen = escalation_ids(pipeline, expect=len(expected), timeout=180)
    missing = expected - set(seen)
    duplicated = [k for k, v in seen.items() if v > 1]
    assert not missing, f"{len(missing)} escalations lost, e.g. {sorted(missing)[:3]}"
    if pipeline.runtime == "loop":
        assert not duplicated, f"{len(duplicated)} escalation ids duplicated: {duplicated[:3]}"
    else:  # its RocksDB may hold writes the changelog has not: restored from the changelog
        assert "the last stop was not clean" in restarted.log_text()
    assert set(seen) == expected


HOUR_MS = 3_600_000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restarted_event_time_worker_goes_on_from_its_committed_clock(
    kafka_bootstrap: str, tmp_path: Path, runtime: str
) -> None:
    """The partition's event-time clock commits with its offset (streams.runtime.
    partition_time) and survives a SIGKILL: the restarted worker silences an event more than
    the backfill horizon (24 h) behind it, as the first worker would have. From no clock it
    escalated it (tests/streams/runtime/test_worker_crashes.py drives the loop's offline).
    Faust commits its own offsets: the runtime puts the clock in them (CommittedClocks)."""
    pipeline = Pipeline(kafka_bootstrap, tmp_path, partitions=1, runtime=runtime)  # one clock
    pipeline.create_topics()
    try:
        late = 1_790_000_000_000
        source = TopicPartition(pipeline.topics.ticket_events, 0)
        first = tmp_path / "first.jsonl"
        write_history(first, [
            TicketEvent("a-1", "A", EventType.CREATED, late - 2 * HOUR_MS, channel="email"),
            TicketEvent("a-2", "A", EventType.AGENT_REPLIED, late),
        ])  # fmt: skip
        worker = pipeline.start_worker("w1")
        worker.wait_ready()
        assert replay(pipeline.settings, first, pipeline.topics) == (2, 0)
        group = pipeline.prefix + pipeline.settings.app_id
        reader = Consumer({**pipeline.settings.kafka.confluent(), "group.id": group})
        try:
            deadline = time.monotonic() + 60
            while (committed := reader.committed([source], timeout=10)[0]).offset != 2:
                assert time.monotonic() < deadline, f"not committed: {committed}"
                time.sleep(0.2)
        finally:
            reader.close()
        # exactly the loop's bytes: metadata stored without confluent-kafka's NUL is read
        # past its end (streams.runtime.partition_time)
        assert committed.metadata == encode_partition_time(late)
        readies = worker.log_text().count(worker.ready)
        worker.kill()
        restarted = pipeline.start_worker("w1")
        restarted.wait_ready(after=readies)
        second = tmp_path / "second.jsonl"
        write_history(second, [
            TicketEvent("b-1", "B", EventType.CREATED, late - 30 * HOUR_MS, channel="email",
                        tags_added=("legal",)),  # 30 h late: silenced
            TicketEvent("c-1", "C", EventType.CREATED, late + 60_000, channel="email",
                        tags_added=("legal",)),  # on time: escalates, after B's would have
        ])  # fmt: skip
        assert replay(pipeline.settings, second, pipeline.topics, end_tick=True) == (2, 0)
        records = pipeline.read("escalations", "Escalation", expect=1, timeout=60)
        assert [(r["ticket_id"], r["reason"]) for r in records] == [("C", "LEGAL_THREAT")]
    finally:
        pipeline.close()


def test_replay_puts_each_ticket_in_the_partition_the_backtest_assumes(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """`backtest --arrival-order` runs each partition on its own clock, as the worker does,
    and computes a ticket's partition itself (streams.tools.partitioner): the producers'
    murmur2 must put every event there."""
    path, _ = history(tmp_path, agents=2, days=1, seed=31)
    sent, _ = replay(pipeline.settings, path, pipeline.topics)
    consumer = Consumer({**pipeline.settings.kafka.confluent(), "group.id": "partitions",
                         "enable.auto.commit": False})  # fmt: skip
    name = pipeline.topics.ticket_events
    consumer.assign([TopicPartition(name, p, -2) for p in range(pipeline.partitions)])
    placed: list[tuple[bytes, int]] = []
    deadline = time.monotonic() + 60
    try:
        while len(placed) < sent and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                placed.append((msg.key(), msg.partition()))
    finally:
        consumer.close()
    assert len(placed) == sent > 100
    assert len({p for _, p in placed}) == pipeline.partitions
    assert all(p == ticket_partition(key.decode(), pipeline.partitions) for key, p in placed)


def wait_owning(*workers: WorkerProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [w.partitions() for w in workers]
        if all(owned) and sum(len(o) for o in owned) == len(set().union(*owned)):
            return
        time.sleep(0.5)
    raise AssertionError(f"workers did not settle on a partition split: {owned}")


def test_scale_out_and_in(any_pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline = any_pipeline
    path, expected = history(tmp_path, agents=8, days=3, seed=23)
    first = pipeline.start_worker("w1")
    first.wait_ready()
    second = pipeline.start_worker("w2")
    second.wait_ready()
    wait_owning(first, second)  # the group has settled: both own partitions
    done = threading.Event()

    def produce() -> None:
        try:
            replay(pipeline.settings, path, pipeline.topics, rate=1000, end_tick=True)
        finally:
            done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(3)
    # Both workers own partitions while events flow.
    assert "due index rebuilt" in first.log_text() and "due index rebuilt" in second.log_text()
    second.stop()  # scale in: its partitions and state move to the first worker
    if pipeline.runtime == "faust":  # a clean stop: its table files are kept for its return
        assert not (pipeline.root / "w2" / "faust" / "RUNNING").exists()
    thread.join(300)
    assert done.is_set()
    seen = escalation_ids(pipeline, expect=len(expected), timeout=180)
    assert set(seen) == expected
    assert max(seen.values()) == 1
