"""`escalator sink webhook` on the real broker, posting to HTTP servers run by the test.

A receiver that fails twice then succeeds gets every escalation exactly once with a 200 and
a valid signature; a receiver that always fails leaves the message on webhook-dlq with the
last error and the attempts; offsets are committed, so a restarted sink sends nothing again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.sinks.webhook_targets import verify
from schemas.codec import codec_for
from streams.runtime.kafka_config import idempotent_producer
from streams.tools.demo import free_port
from tests.support.metrics import metric
from tests.support.pipeline import REPO, Pipeline, WorkerProcess
from tests.support.waiting import wait_for
from tests.support.webhooks import escalation

pytestmark = pytest.mark.integration

KEY = "integration-signing-key-0123456789"


class Receiver:
    """An HTTP server in a thread: fails the first `failures` requests of each escalation id
    with 500 (all of them when failures is None), then answers 200."""

    def __init__(self, failures: int | None) -> None:
        self.failures = failures
        self.lock = threading.Lock()
        self.requests: dict[str, list[tuple[int, bool]]] = defaultdict(list)  # id -> (status, ok)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = verify(
                    KEY.encode(), self.headers["X-Escalator-Timestamp"],
                    self.headers["X-Escalator-Signature"], body, time.time(),
                )  # fmt: skip
                record = json.loads(body)["escalator"]["record"]
                assert self.headers["X-Escalator-Escalation-Id"] == record["escalation_id"]
                with receiver.lock:
                    seen = receiver.requests[record["escalation_id"]]
                    fail = receiver.failures is None or len(seen) < receiver.failures
                    status = 500 if fail else 200
                    seen.append((status, signed))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"boom" if fail else b"ok")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> dict[str, list[tuple[int, bool]]]:
        with self.lock:
            return {k: list(v) for k, v in self.requests.items()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    flaky, broken = Receiver(failures=2), Receiver(failures=None)
    yield flaky, broken
    flaky.close()
    broken.close()


def delivered(receiver: Receiver) -> set[str]:
    """Escalation ids the receiver answered with 200."""
    return {i for i, seen in receiver.snapshot().items() if seen[-1][0] == 200}


def test_retries_deliver_once_signed_and_failures_park_on_the_dlq(
    kafka_bootstrap: str, tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    flaky, broken = receivers
    line = Pipeline(kafka_bootstrap, tmp_path)
    line.create_topics()
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        f"""targets:
  - name: flaky
    url: {flaky.url}
    teams: [billing]
    max_attempts: 5
    backoff_base_s: 0.05
    backoff_cap_s: 0.2
  - name: broken
    url: {broken.url}
    teams: [legal]
    min_level: 2
    max_attempts: 3
    backoff_base_s: 0.05
    backoff_cap_s: 0.2
"""
    )
    codec = codec_for("Escalation", line.settings)
    producer = Producer(idempotent_producer(line.settings))

    def produce(record: dict[str, Any] | bytes, key: str, partition: int = -1) -> None:
        value = record if isinstance(record, bytes) else codec.encode(record)
        producer.produce(line.topics.escalations, value=value, key=key.encode(),
                         partition=partition)  # fmt: skip

    billing = [escalation(f"T-b{i}", "billing") for i in range(6)]
    for record in billing:
        produce(record, record["ticket_id"])
    legal = escalation("T-legal", "legal", level=3)
    produce(legal, "T-legal")
    produce(escalation("T-low", "legal", level=1), "T-low")  # below min_level: nobody
    produce(escalation("T-other", "frontline"), "T-other")  # no target wants it
    produce(b"not avro", "T-junk")  # undecodable: parked, never lost
    assert producer.flush(30) == 0

    port = free_port()
    env = {
        **line.env(),
        "ESCALATOR_WEBHOOK_TARGETS_FILE": str(targets),
        "ESCALATOR_WEBHOOK_SIGNING_KEY": KEY,
        "ESCALATOR_METRICS_HOST": "127.0.0.1",
        "ESCALATOR_METRICS_PORT": str(port),
    }

    def start(name: str) -> WorkerProcess:
        log = tmp_path / f"{name}.log"
        cmd = [sys.executable, "-m", "streams.cli", "sink", "webhook", "--topic-prefix",
               line.prefix, "--loglevel", "info"]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        sink = WorkerProcess(name, proc, log, port, ready="sink webhook: ready")
        line.workers.append(sink)
        sink.wait_ready(60)
        return sink

    try:
        sink = start("sink-1")
        ids = {r["escalation_id"] for r in billing}
        wait_for(lambda: ids <= delivered(flaky), "6 deliveries", 60, sink)
        dead = line.read("webhook-dlq", "WebhookDeadLetter", expect=2, idle=1.0)
        group = f"{line.prefix}escalator-sink-webhook"
        wait_for(lambda: committed_to_end(line, group), "all offsets committed", 60, sink)

        # Each escalation: two 500s, then exactly one 200, every request signed.
        got = flaky.snapshot()
        assert set(got) == ids
        assert all(s == [(500, True), (500, True), (200, True)] for s in got.values()), got
        assert metric(port, "escalator_webhook_retries_total", target="flaky") == 12
        assert metric(port, "escalator_webhook_deliveries_total", target="flaky", outcome="ok") == 6
        assert metric(port, "escalator_webhook_dead_letters_total", target="broken") == 1
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200

        # The broken target: three attempts, then the record is parked with the last error.
        assert broken.snapshot() == {legal["escalation_id"]: [(500, True)] * 3}
        by_target = {d["target"]: d for d in dead}
        assert set(by_target) == {"broken", None}
        parked = by_target["broken"]
        assert codec.decode(parked["original"]) == legal
        assert parked["original_key"] == b"T-legal"
        assert parked["source_topic"] == line.topics.escalations
        assert (parked["attempts"], parked["status"]) == (3, 500)
        assert parked["error"] == "HTTP 500: boom"
        assert parked["escalation_id"] == legal["escalation_id"]
        junk = by_target[None]
        assert (junk["original"], junk["attempts"]) == (b"not avro", 0)
        assert junk["error"].startswith("UNDECODABLE")

        sink.stop()
        assert sink.proc.returncode == 0, sink.log_text()

        # Restarted: nothing is sent again. A new escalation on every partition proves the
        # restarted sink has read each partition past the old messages.
        sink = start("sink-2")
        fresh = [escalation(f"T-new{p}", "billing") for p in range(line.partitions)]
        for p, record in enumerate(fresh):
            produce(record, record["ticket_id"], partition=p)
        assert producer.flush(30) == 0
        fresh_ids = {r["escalation_id"] for r in fresh}
        wait_for(lambda: fresh_ids <= delivered(flaky), "fresh deliveries", 60, sink)
        sink.stop()  # lets requests in flight finish
        assert sink.proc.returncode == 0, sink.log_text()
        after = flaky.snapshot()
        assert {i: after[i] for i in ids} == got
        assert broken.snapshot() == {legal["escalation_id"]: [(500, True)] * 3}
        assert len(line.read("webhook-dlq", "WebhookDeadLetter", expect=2, idle=1.0)) == 2
    finally:
        line.close()


def committed_to_end(line: Pipeline, group: str) -> bool:
    """Has `group` committed every partition of escalations up to its end?"""
    consumer = Consumer({**line.settings.kafka.confluent(), "group.id": group,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        name = line.topics.escalations
        parts = [TopicPartition(name, p) for p in range(line.partitions)]
        committed = consumer.committed(parts, timeout=10)
        return all(
            c.offset == consumer.get_watermark_offsets(tp, timeout=10)[1]
            for c, tp in zip(committed, parts, strict=True)
        )
    finally:
        consumer.close()


class InProcessSink:
    """A WebhookSink running in a thread of the test, so its window can be made small."""

    def __init__(self, line: Pipeline, targets_yaml: str, tmp_path: Path, **options: Any) -> None:
        import asyncio

        from connectors.sinks.webhook import WebhookSink
        from connectors.sinks.webhook_targets import parse_targets

        self.sink = WebhookSink(line.settings, parse_targets(targets_yaml), line.topics,
                                f"{line.prefix}inproc", KEY.encode(), **options)  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.sink.run())
        except BaseException as exc:  # reported by check()
            self.error = exc

    def check(self) -> None:
        if self.error is not None or not self.thread.is_alive():
            raise AssertionError(f"the sink stopped: {self.error!r}")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.sink.stop)
        self.thread.join(30)
        self.sink.close()


def wait_running(what: str, check: Any, sink: InProcessSink, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.check()
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.serial
def test_a_hung_target_does_not_delay_another_and_parks_once_its_circuit_opens(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    import socket

    line = Pipeline(kafka_bootstrap, tmp_path)
    line.create_topics()
    live = Receiver(failures=0)
    hung = socket.socket()  # listens, never accepts: connections open, requests never answered
    hung.bind(("127.0.0.1", 0))
    hung.listen(1024)
    targets = f"""targets:
  - name: hung
    url: http://127.0.0.1:{hung.getsockname()[1]}/hook
    timeout_s: 1
  - name: live
    url: {live.url}
"""
    codec = codec_for("Escalation", line.settings)
    producer = Producer(idempotent_producer(line.settings))
    records = [escalation(f"T-h{i}", "billing") for i in range(40)]

    def produce(batch: list[dict[str, Any]]) -> set[str]:
        for record in batch:
            producer.produce(line.topics.escalations, value=codec.encode(record),
                             key=record["ticket_id"].encode())  # fmt: skip
        assert producer.flush(30) == 0
        return {r["escalation_id"] for r in batch}

    first = produce(records[:10])
    sink = InProcessSink(line, targets, tmp_path, max_in_flight=4)
    try:
        # Ten messages in flight, four allowed: reading pauses while the hung target holds them.
        wait_running("the first ten at the live target", lambda: first <= delivered(live), sink)
        ids = first | produce(records[10:])
        # Before: the paused sink read the next thirty only after the hung target's retries of
        # the first ten (8 attempts each, minutes); now its circuit opens and they park.
        wait_running("every delivery to the live target", lambda: ids <= delivered(live), sink)
        dead = line.read("webhook-dlq", "WebhookDeadLetter", expect=40, idle=1.0)
        assert {d["escalation_id"] for d in dead} == ids
        assert {d["target"] for d in dead} == {"hung"}
        opened = [d for d in dead if d["error"].startswith("circuit open after ")]
        assert len(opened) >= 30, [d["error"] for d in dead]
        sink.check()
    finally:
        sink.close()
        hung.close()
        live.close()


def test_a_record_the_sink_cannot_handle_is_parked_and_the_sink_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    line = Pipeline(kafka_bootstrap, tmp_path)
    line.create_topics()
    live = Receiver(failures=0)
    codec = codec_for("Escalation", line.settings)
    producer = Producer(idempotent_producer(line.settings))
    poison = {**escalation("T-poison", "billing"), "due_at": 2**62}  # past year 9999
    after = escalation("T-after", "billing")
    for record in (poison, after):  # one partition: the second comes after the first
        producer.produce(line.topics.escalations, value=codec.encode(record), key=b"T",
                         partition=0)  # fmt: skip
    assert producer.flush(30) == 0
    sink = InProcessSink(line, f"targets:\n  - name: live\n    url: {live.url}\n", tmp_path)
    try:
        wait_running("the next record", lambda: after["escalation_id"] in delivered(live), sink)
        (dead,) = line.read("webhook-dlq", "WebhookDeadLetter", expect=1, idle=1.0)
        assert codec.decode(dead["original"]) == poison
        assert (dead["escalation_id"], dead["target"]) == (poison["escalation_id"], None)
        assert dead["error"].startswith("cannot handle the record: OverflowError")

        def committed() -> bool:
            consumer = Consumer({**line.settings.kafka.confluent(),
                                 "group.id": f"{line.prefix}inproc"})  # fmt: skip
            try:
                tp = TopicPartition(line.topics.escalations, 0)
                return consumer.committed([tp], timeout=10)[0].offset == 2
            finally:
                consumer.close()

        wait_running("both offsets committed", committed, sink)
    finally:
        sink.close()
        live.close()
