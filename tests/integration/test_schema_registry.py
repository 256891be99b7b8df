"""The pipeline against a real schema registry (Apicurio Registry, Confluent-compatible API):
subjects by TopicNameStrategy, confluent-kafka's own AvroDeserializer reads what the worker
and ingest write, incompatible schemas and outages stop the worker with one line and lose
nothing."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_writer

from schemas.codec import load_history
from schemas.records import ticket_event_to_avro
from streams.tools.demo import free_port
from streams.tools.history import read_history
from tests.connectors.helpdesk_cases import cases
from tests.support.histories import history
from tests.support.ingest import start_ingest
from tests.support.pipeline import REPO, Pipeline, WorkerProcess

pytestmark = pytest.mark.integration


def confluent_read(bootstrap: str, topic: str, registry: str, timeout: float = 30.0) -> list[Any]:
    """Every committed record of ``topic``, read as a downstream consumer does: confluent-kafka's
    AvroDeserializer with the schema registry; returns when the topic has been quiet for 3 s."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"downstream-{uuid.uuid4().hex}",
         "isolation.level": "read_committed", "enable.auto.commit": False}
    )  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 3.0:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            quiet_since = time.monotonic()
            out.append(deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE)))
        return out
    finally:
        consumer.close()


def wait_exit(worker: WorkerProcess, timeout: float = 90.0) -> int:
    try:
        return worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still runs:\n{worker.log_text()[-3000:]}") from None


def error_lines(worker: WorkerProcess) -> list[str]:
    """What a process printed besides the worker's start-up banner (policy, partitions...) and
    librdkafka's own log lines (``%<level>|...``) from the broker check before it."""
    return [
        line
        for line in worker.log_text().splitlines()
        if line.strip() and not line.startswith(("escalator worker: policy ", "%"))
    ]


def test_worker_and_sinks_use_the_registry_and_confluent_deserializer_reads_their_output(
    pipeline: Pipeline, schema_registry: str, redis_url: str, tmp_path: Path
) -> None:
    from streams.tools.replay import replay

    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_URL"] = schema_registry
    pipeline.extra_env["ESCALATOR_REDIS_URL"] = redis_url
    path, expected = history(tmp_path, agents=6, days=2, seed=7)
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    client = SchemaRegistryClient({"url": schema_registry})
    prefix = pipeline.prefix
    mine = {s for s in client.get_subjects() if s.startswith(prefix)}
    # the worker registered every schema it writes at start-up, under <topic>-value
    assert mine == {
        f"{prefix}{t}-value"
        for t in (
            "ticket-events",
            "escalations",
            "priority-bumps",
            "reminders",
            "ticket-events-dlq",
            "ticket-board",
        )
    }
    sink = pipeline.start_sink("sink", "redis")
    sink.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert bad == 0 and sent > 100

    escalations = pipeline.read("escalations", "Escalation", expect=len(expected), timeout=120)
    assert {r["escalation_id"] for r in escalations} == expected
    registered = client.get_latest_version(f"{prefix}escalations-value").schema_id
    downstream = confluent_read(pipeline.bootstrap, pipeline.topics.escalations, schema_registry)
    assert {r["escalation_id"] for r in downstream} == expected
    assert len(downstream) == len(expected)
    bumps = pipeline.read("priority-bumps", "PriorityBump")
    downstream_bumps = confluent_read(
        pipeline.bootstrap, pipeline.topics.priority_bumps, schema_registry
    )
    assert bumps, "the history should bump priorities"

    def bump_key(b: dict[str, Any]) -> tuple[Any, ...]:
        return (b["event_id"], b["escalation_id"], b["ticket_id"], b["new_priority"])

    assert sorted(map(bump_key, downstream_bumps)) == sorted(map(bump_key, bumps))
    # The worker's escalations carry the registry's id, not the committed ids.json one.
    consumer = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition(pipeline.topics.escalations, 0, -2)])
    msg = None
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            break
    consumer.close()
    assert msg is not None and int.from_bytes(msg.value()[1:5], "big") == registered
    # The Redis sink resolved those ids through the registry: no decode errors, a board.
    deadline = time.monotonic() + 60
    import redis

    board = redis.Redis.from_url(redis_url, decode_responses=True)
    keys: list[str] = []
    while time.monotonic() < deadline and not keys:
        keys = list(board.scan_iter(match=f"*{prefix}ticket:*", count=1000))
        time.sleep(0.5)
    assert keys, sink.log_text()[-3000:]
    assert "Traceback" not in sink.log_text() and "DecodeError" not in sink.log_text()
    for key in board.scan_iter(match=f"*{prefix}*", count=1000):
        board.delete(key)


@pytest.mark.parametrize("strategy", ["RecordNameStrategy", "TopicRecordNameStrategy"])
def test_worker_registers_under_the_strategy_set(
    pipeline: Pipeline, schema_registry: str, strategy: str
) -> None:
    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_URL"] = schema_registry
    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY"] = strategy
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    subjects = set(SchemaRegistryClient({"url": schema_registry}).get_subjects())
    escalation = "io.escalator.v1.Escalation"
    if strategy == "RecordNameStrategy":  # one subject per type, whatever the topic
        assert {escalation, "io.escalator.v1.TicketEvent", "io.escalator.v1.DeadLetter"} <= subjects
    else:
        topic = pipeline.topics.escalations
        assert {f"{topic}-{escalation}", f"{pipeline.topics.dlq}-io.escalator.v1.DeadLetter"} <= (
            subjects
        )
    assert not [s for s in subjects if s.startswith(pipeline.prefix) and s.endswith("-value")]


def test_ingest_registers_ticket_events_that_confluent_deserializer_reads(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, schema_registry: str
) -> None:
    ingest = start_ingest(
        tmp_path, kafka_bootstrap, redis_url, ESCALATOR_SCHEMA_REGISTRY_URL=schema_registry
    )
    try:
        ids: list[str] = []
        for case in cases("zendesk", "sequence"):
            reply = ingest.request("/v1/webhooks/zendesk", case["payload"])
            assert reply.status == 202, reply.body
            ids.extend(reply.body["event_ids"])
    finally:
        ingest.stop()
    subject = f"{ingest.topic}-value"
    assert subject in SchemaRegistryClient({"url": schema_registry}).get_subjects()
    records = confluent_read(kafka_bootstrap, ingest.topic, schema_registry)
    assert sorted(r["event_id"] for r in records) == sorted(ids) and ids


def test_incompatible_schema_is_refused_and_the_worker_stops_with_one_line(
    pipeline: Pipeline, schema_registry: str
) -> None:
    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_URL"] = schema_registry
    subject = f"{pipeline.prefix}escalations-value"
    client = SchemaRegistryClient({"url": schema_registry})
    # A consumer somewhere already relies on a different Escalation under this subject.
    other = {"type": "record", "name": "Escalation", "namespace": "io.escalator.v1",
             "fields": [{"name": "case_number", "type": "long"}]}  # fmt: skip
    client.register_schema(subject, Schema(json.dumps(other), "AVRO"))
    worker = pipeline.start_worker("w1")
    assert wait_exit(worker) == 2
    lines = error_lines(worker)
    assert len(lines) == 1, lines
    assert subject in lines[0] and "incompatible" in lines[0], lines
    assert "Traceback" not in worker.log_text()


@pytest.mark.parametrize("component", ["worker", "ingest", "sink redis", "alerts"])
def test_registry_down_at_start_up_stops_the_process_with_one_line(
    pipeline: Pipeline, redis_url: str, component: str
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_URL"] = f"http://127.0.0.1:{port}"
    pipeline.extra_env["ESCALATOR_REDIS_URL"] = redis_url
    if component == "worker":
        process = pipeline.start_worker("w1")
    elif component == "sink redis":
        process = pipeline.start_sink("sink", "redis")
    elif component == "alerts":
        process = pipeline.start_alerts()
    else:
        log = pipeline.root / "ingest.log"
        argv = [sys.executable, "-m", "streams.cli", "ingest", "--host", "127.0.0.1",
                "--port", str(free_port()), "--insecure-no-auth", "--topic-prefix",
                pipeline.prefix]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=pipeline.env(), stdout=out, stderr=subprocess.STDOUT
            )
        process = WorkerProcess("ingest", proc, log, 0)
        pipeline.workers.append(process)
    assert wait_exit(process) == 2
    lines = error_lines(process)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"escalator {component.split()[0]}: "), lines
    assert f"127.0.0.1:{port}" in lines[0] and "unreachable" in lines[0], lines


class Gate:
    """A TCP forwarder to the registry that the test opens and closes: the registry's own
    process stays up (its schemas are in memory) while the worker sees it come and go."""

    def __init__(self, target: str) -> None:
        host_port = target.split("://", 1)[1].split("/", 1)[0]
        self.target = (host_port.rsplit(":", 1)[0], int(host_port.rsplit(":", 1)[1]))
        self.path = "/" + target.split("://", 1)[1].split("/", 1)[1]
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(50)
        self.port = self.server.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        self.open = False
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def stop(self) -> None:
        self.close()
        self.server.close()


@pytest.fixture
def gate(schema_registry: str) -> Iterator[Gate]:
    g = Gate(schema_registry)
    try:
        yield g
    finally:
        g.stop()


def committed(pipeline: Pipeline) -> tuple[int, int]:
    """(offsets the worker's group committed on ticket-events, records in ticket-events)."""
    topic = pipeline.topics.ticket_events
    # the worker's group: its app id behind the topic prefix (streams.cli)
    group = f"{pipeline.prefix}{pipeline.settings.app_id}"
    consumer = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(pipeline.partitions)]
        done = sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30))
        ends = sum(consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in parts)
        return done, ends
    finally:
        consumer.close()


def dlq_count(pipeline: Pipeline) -> int:
    consumer = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": uuid.uuid4().hex})
    try:
        topic = pipeline.topics.dlq
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(pipeline.partitions)
        )
    finally:
        consumer.close()


def test_registry_outage_mid_run_dead_letters_nothing_and_loses_nothing(
    pipeline: Pipeline, gate: Gate, schema_registry: str, tmp_path: Path
) -> None:
    from streams.runtime.kafka_config import idempotent_producer

    pipeline.extra_env["ESCALATOR_SCHEMA_REGISTRY_URL"] = gate.url
    path, _ = history(tmp_path, agents=3, days=1, seed=2)
    events = [ticket_event_to_avro(e) for e in read_history(path)]  # type: ignore[arg-type]
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    # An older producer writes TicketEvent v1 (a valid schema id the worker has not met yet).
    v1 = load_history("TicketEvent")[1]
    client = SchemaRegistryClient({"url": schema_registry})
    v1_id = client.register_schema(
        f"{pipeline.prefix}ticket-events-value", Schema(json.dumps(v1), "AVRO")
    )
    from schemas.codec import codec_for

    current = codec_for("TicketEvent", pipeline.settings, pipeline.topics)
    producer = Producer(idempotent_producer(pipeline.settings))
    topic = pipeline.topics.ticket_events

    def send(records: list[dict[str, Any]], writer: Any = None) -> None:
        for record in records:
            if writer is None:
                value = current.encode(record)
            else:
                body = BytesIO()
                schemaless_writer(body, writer, {k: v for k, v in record.items() if k in names})
                value = b"\x00" + v1_id.to_bytes(4, "big") + body.getvalue()
            producer.produce(topic, value, key=record["ticket_id"].encode())
        producer.flush(30)

    names = {f["name"] for f in v1["fields"]}
    half = len(events) // 2
    send(events[:half])
    deadline = time.monotonic() + 60
    while committed(pipeline)[0] < half and time.monotonic() < deadline:
        time.sleep(0.5)
    assert committed(pipeline) == (half, half)

    gate.close()  # the registry goes away mid-run
    send(events[half:-5])  # ids the worker knows: processed without the registry
    deadline = time.monotonic() + 60
    while committed(pipeline)[0] < len(events) - 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert committed(pipeline)[0] == len(events) - 5
    parsed_v1 = parse_schema(json.loads(json.dumps(v1)))
    send(events[-5:], parsed_v1)  # needs the registry: the worker stops, commits none of them
    assert wait_exit(worker, timeout=120) == 2
    assert "unreachable" in worker.log_text() and "Traceback" not in worker.log_text()
    assert committed(pipeline) == (len(events) - 5, len(events))
    assert dlq_count(pipeline) == 0

    gate.open = True  # back: a new worker resolves v1 and processes the rest
    again = pipeline.start_worker("w2")
    again.wait_ready()
    deadline = time.monotonic() + 60
    while committed(pipeline)[0] < len(events) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert committed(pipeline) == (len(events), len(events))
    assert dlq_count(pipeline) == 0
