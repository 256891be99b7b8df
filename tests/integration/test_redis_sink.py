"""`escalator sink redis` on the real pipeline: the board equals the backtest's, and neither
SIGKILL nor a replay from the start changes it."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from connectors.sinks.board_store import BoardKeys, BoardReader
from connectors.sinks.redis_board import RedisSink, SinkOptions
from schemas.codec import codec_for
from schemas.records import ticket_board_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.board import BoardEntry, BoardRecord, BoardView, Fired, clockless
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.demo import free_port
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history
from streams.tools.replay import replay
from tests.support.pipeline import Pipeline, WorkerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def heartbeat(client: redis.Redis, keys: BoardKeys) -> dict[str, str]:
    return client.hgetall(keys.sink)  # type: ignore[return-value]


def caught_up(client: redis.Redis, keys: BoardKeys, sink: WorkerProcess, started: int) -> bool:
    """The sink started after `started` (epoch ms) reports nothing left to read."""
    if sink.proc.poll() is not None:
        raise AssertionError(f"sink exited:\n{sink.log_text()[-3000:]}")
    beat = heartbeat(client, keys)
    return int(beat.get("started_at", 0)) >= started and beat.get("lag") == "0"


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    raise AssertionError(f"{name} {labels} not on /metrics")


def escalated(ticket: str, escalation: str, at: int) -> BoardRecord:
    """A ticket-board record of a ticket that went on the board with one escalation."""
    fired = Fired(escalation, ticket, "HIERARCHICAL", 2, 1, "support-manager",
                  "FIRST_RESPONSE_BREACH", "sla:first_response:breach", at, at)  # fmt: skip
    entry = BoardEntry(ticket, escalation, "HIERARCHICAL", 2, "support-manager",
                       "FIRST_RESPONSE_BREACH", "sla:first_response:breach", at, at, 1, None,
                       None)  # fmt: skip
    return BoardRecord(BoardView(ticket, False, entry, None), (fired,))


def test_board_equals_backtest_and_survives_sigkill_and_replay(
    pipeline: Pipeline, board: tuple[redis.Redis, BoardKeys], tmp_path: Path
) -> None:
    client, keys = board
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=5, days=2, seed=41)
    policy = load_policy()
    (report,) = backtest_events([policy], read_history(path), board=True)
    assert report.board is not None
    expected = clockless(report.board)
    escalations = sum(report.by_reason.values())  # SLA warnings included
    warnings = report.by_reason["SLA_WARNING"]
    assert report.board_warnings is not None
    assert len(expected) >= 10 and report.priority_bumps > 0 and warnings > 0
    reader = BoardReader(client, keys)

    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    sink = pipeline.start_sink("sink1", "redis")
    sink.wait_ready()
    # Slow enough that the sink is killed while records still flow.
    result: list[int] = []
    producer = threading.Thread(target=lambda: result.append(
        replay(pipeline.settings, path, pipeline.topics, rate=150, end_tick=True)[0]
    ))  # fmt: skip
    producer.start()
    wait_for(lambda: int(client.hget(keys.stats, "escalations") or 0) > 0, "first escalations")
    sink.kill()
    assert producer.is_alive(), "the replay ended before the kill: slow it down"
    restart = int(time.time() * 1000)
    sink = pipeline.start_sink("sink2", "redis")
    sink.wait_ready()
    producer.join(120)
    wait_for(lambda: clockless(reader.entries()) == expected, "the backtest's board")
    wait_for(lambda: caught_up(client, keys, sink, restart), "the sink to catch up")
    state = reader.dump()
    assert clockless(state["entries"]) == expected
    assert clockless(state["warnings"]) == clockless(report.board_warnings)
    assert int(state["stats"]["escalations"]) == escalations - warnings
    assert int(state["stats"]["warnings"]) == warnings
    assert int(state["stats"]["bumps"]) == report.priority_bumps
    resolved = int(state["stats"].get("resolved", 0))
    assert state["stream"] == escalations + report.priority_bumps + resolved
    for team, tickets in state["teams"].items():
        assert tickets == {t for t, e in report.board.items() if e.target == team}

    # SIGKILL again, then read everything once more from the start with a fresh group.
    sink.kill()
    restart = int(time.time() * 1000)
    sink = pipeline.start_sink("sink3", "redis", "--group", f"{pipeline.prefix}replay")
    sink.wait_ready()
    wait_for(lambda: caught_up(client, keys, sink, restart), "the replaying sink to catch up")
    # every ticket-board record read again from the start, each one already applied
    published = int(heartbeat(client, keys)["consumed"])
    assert published >= len(report.board) + resolved
    assert reader.dump() == state  # entries, memberships, counters and stream: all unchanged
    assert metric(sink.web_port, "escalator_redis_sink_duplicates_total",
                  topic="ticket-board") == published  # fmt: skip
    assert metric(sink.web_port, "escalator_redis_sink_applied_total", topic="ticket-board") == 0
    assert metric(sink.web_port, "escalator_board_open_escalations") == len(expected)
    with urllib.request.urlopen(f"http://127.0.0.1:{sink.web_port}/healthz", timeout=10) as r:
        assert r.status == 200


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, so it can be frozen without touching the shared one."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        wait_for(lambda: _pings(client), "the private redis-server", timeout=20)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_outage_commits_nothing_and_loses_nothing(
    pipeline: Pipeline, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = private_redis
    pipeline.extra_env["ESCALATOR_REDIS_URL"] = url
    settings = pipeline.settings
    topics = pipeline.topics
    group = f"{pipeline.prefix}outage"
    options = SinkOptions(group, unhealthy_after_s=1.0, backoff_cap_s=0.5, heartbeat_s=0.2)
    sink = RedisSink(settings, topics, options)
    runner = threading.Thread(target=sink.run)
    runner.start()
    codec = codec_for("TicketBoard", settings)
    producer = Producer(idempotent_producer(settings))

    def send(first: int, count: int) -> None:
        for n in range(first, first + count):
            value = codec.encode(ticket_board_to_avro(escalated(f"T{n}", f"e{n}", 1_000 * n)))
            producer.produce(topics.board, value=value, key=f"T{n}".encode())
        assert producer.flush(30) == 0

    def committed() -> int:
        reader = Consumer({**settings.kafka.confluent(), "group.id": group})
        try:
            parts = [TopicPartition(topics.board, p) for p in range(pipeline.partitions)]
            return sum(max(tp.offset, 0) for tp in reader.committed(parts, timeout=10))
        finally:
            reader.close()

    def errors() -> float:
        return REGISTRY.get_sample_value("escalator_redis_sink_write_errors_total") or 0.0

    client = redis.Redis.from_url(url, decode_responses=True)
    keys = sink.keys
    try:
        send(0, 5)
        wait_for(lambda: client.zcard(keys.open) == 5 and committed() == 5, "the first five")
        assert sink.healthy()
        before = errors()
        server.send_signal(signal.SIGSTOP)  # Redis hangs: every write times out
        send(5, 5)
        wait_for(lambda: errors() >= before + 2, "failed writes being retried", timeout=60)
        wait_for(lambda: not sink.healthy(), "/healthz to turn unhealthy", timeout=30)
        assert committed() == 5, "offsets of records not on the board were committed"
        server.send_signal(signal.SIGCONT)
        wait_for(lambda: client.zcard(keys.open) == 10 and committed() == 10, "the rest")
        wait_for(sink.healthy, "/healthz to recover", timeout=30)
        assert int(client.hget(keys.stats, "escalations") or 0) == 10
        assert client.xlen(keys.events) == 10
    finally:
        server.send_signal(signal.SIGCONT)
        sink.stop()
        runner.join(30)
        sink.close()
        client.close()


def test_a_record_the_sink_cannot_handle_is_parked_and_the_rest_applied(
    pipeline: Pipeline, board: tuple[redis.Redis, BoardKeys]
) -> None:
    from connectors.sinks.board_store import Applied, BoardWriter, Update

    client, keys = board
    settings, topics = pipeline.settings, pipeline.topics

    class Faulty(BoardWriter):
        """The real writer, failing on one ticket as a record past what the code handles."""

        def apply(self, batch: Sequence[Update]) -> Applied:
            if any(u.ticket_id == "T-bad" for u in batch):
                raise OverflowError("date value out of range")
            return super().apply(batch)

    group = f"{pipeline.prefix}poison"
    sink = RedisSink(settings, topics, SinkOptions(group, heartbeat_s=0.2))
    sink.writer = Faulty(client, keys)
    codec = codec_for("TicketBoard", settings)
    producer = Producer(idempotent_producer(settings))
    values = {}
    for n, ticket in enumerate(("T-good1", "T-bad", "T-good2")):
        values[ticket] = codec.encode(ticket_board_to_avro(escalated(ticket, f"p{n}", 1_000 * n)))
        producer.produce(topics.board, value=values[ticket], key=ticket.encode(), partition=0)
    producer.produce(topics.board, value=b"not avro", key=b"T-junk", partition=0)
    assert producer.flush(30) == 0
    runner = threading.Thread(target=sink.run)
    runner.start()
    try:
        dead = pipeline.read("redis-sink-dlq", "DeadLetter", expect=2, idle=1.0)
        by_key = {d["original_key"]: d for d in dead}
        assert set(by_key) == {b"T-bad", b"T-junk"}
        bad, junk = by_key[b"T-bad"], by_key[b"T-junk"]
        assert bad["original"] == values["T-bad"]
        assert (bad["source_topic"], bad["partition"], bad["offset"]) == (topics.board, 0, 1)
        assert bad["error"] == "cannot apply the record: OverflowError: date value out of range"
        assert (junk["original"], junk["error_kind"]) == (b"not avro", "UNDECODABLE")
        wait_for(lambda: client.zcard(keys.open) == 2, "the two good escalations on the board")
        assert set(client.zrange(keys.open, 0, -1)) == {"T-good1", "T-good2"}
        assert runner.is_alive()

        def committed() -> int:
            reader = Consumer({**settings.kafka.confluent(), "group.id": group})
            try:
                (tp,) = reader.committed([TopicPartition(topics.board, 0)], timeout=10)
                return int(tp.offset)
            finally:
                reader.close()

        wait_for(lambda: committed() == 4, "every offset committed")
    finally:
        sink.stop()
        runner.join(30)
        sink.close()


def test_the_ready_line_shows_no_redis_password() -> None:
    import io

    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics

    url = "redis://board:t0p-s3cret@127.0.0.1:1/0"
    env = {"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ESCALATOR_REDIS_URL": url}
    settings = load_settings(env)
    out = io.StringIO()
    sink = RedisSink(settings, Topics(), SinkOptions("g"), out=out)
    sink.running = False
    sink.run()
    sink.consumer.close()
    assert "redis://board:***@127.0.0.1:1/0" in out.getvalue()
    assert "t0p-s3cret" not in out.getvalue()
