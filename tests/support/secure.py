"""Secured connections: throwaway TLS certificates, SASL/PLAIN users and settings, and checks
that a client (or a worker) gets through with them, or does not."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.events import EventType, TicketEvent
from tests.support.pipeline import Pipeline
from tests.support.policies import LIVE_POLICY


def make_tls_files(d: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI), in d."""
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=Escalator test CA", "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", str(ext),
            "-out", "server.pem")  # fmt: skip
    return {"ca": d / "ca.pem", "server": d / "server.pem", "key": d / "server.key"}


def sasl_users(root: Path) -> tuple[str, Path]:
    """ESCALATOR_KAFKA_SASL_PLAIN_USERS for a broker with users "broker" and "alice", and
    alice's password file."""
    alice = secrets.token_urlsafe(18)
    password = root / "alice-password"
    password.write_text(alice + "\n")
    return f"broker:{secrets.token_urlsafe(18)},alice:{alice}", password


def sasl_env(bootstrap: str, protocol: str = "SASL_PLAINTEXT", **more: str) -> dict[str, str]:
    return {
        "ESCALATOR_KAFKA_BOOTSTRAP": bootstrap,
        "ESCALATOR_KAFKA_SECURITY_PROTOCOL": protocol,
        "ESCALATOR_KAFKA_SASL_MECHANISM": "PLAIN",
        "ESCALATOR_KAFKA_SASL_USERNAME": "alice",
        **more,
    }


def round_trip(conf: dict[str, object]) -> None:
    """A record produced with these confluent-kafka settings is consumed back with them."""
    topic = f"secure-{secrets.token_hex(4)}"  # the broker creates it on first use
    producer = Producer(conf)
    producer.produce(topic, b"escalated", b"T-1")
    assert producer.flush(60) == 0
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is not None:
                raise AssertionError(msg.error())
    finally:
        consumer.close()
    assert msg is not None and (msg.key(), msg.value()) == (b"T-1", b"escalated")


def undelivered_errors(conf: dict[str, object]) -> list[KafkaError]:
    """Produces a record with these confluent-kafka settings, which must not be delivered; the
    errors the client reported meanwhile (error_cb)."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "log_level": 0, "error_cb": errors.append})
    producer.produce(f"secure-{secrets.token_hex(4)}", b"never")
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)
    assert producer.flush(0) == 1  # not delivered
    return errors


def worker_escalates(root: Path, env: dict[str, str], runtime: str = "loop") -> None:
    """`escalator worker` (wall clock) with a deployment's ESCALATOR_* env: a ticket whose first
    response is overdue comes back as a breach, read_committed with the same settings."""
    line = Pipeline(
        env["ESCALATOR_KAFKA_BOOTSTRAP"], root, partitions=2, extra_env=env, runtime=runtime
    )
    policy = root / "policy.yaml"
    root.mkdir(parents=True, exist_ok=True)
    policy.write_text(LIVE_POLICY)  # first response due one minute after creation
    try:
        line.create_topics()
        worker = line.start_worker("w1", event_time=False, policy=policy)
        worker.wait_ready()
        created_at = int(time.time() * 1000) - 120_000
        ticket = TicketEvent("secure-1", "T-secure", EventType.CREATED, created_at, channel="chat")
        producer = Producer(idempotent_producer(line.settings))
        value = codec_for("TicketEvent", line.settings).encode(ticket_event_to_avro(ticket))
        producer.produce(line.topics.ticket_events, key=b"T-secure", value=value)
        assert producer.flush(30) == 0
        records = line.read("escalations", "Escalation", expect=1, timeout=60, idle=2)
        assert worker.proc.poll() is None, worker.log_text()[-4000:]
    finally:
        line.close()
    breaches = [r for r in records if r["reason"] == "FIRST_RESPONSE_BREACH"]
    assert len(breaches) == 1, records
    assert breaches[0]["ticket_id"] == "T-secure" and breaches[0]["due_at"] == created_at + 60_000
    assert breaches[0]["target"] == "team-lead"
