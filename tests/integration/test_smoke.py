"""Smoke tests against the real local Kafka and Redis (deploy/local/services)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def _consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0
) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return got


def test_kafka_version_is_pinned(kafka_service: Any, pinned_kafka: str) -> None:
    if kafka_service.external and kafka_service.version is None:
        pytest.skip(f"external broker {kafka_service.address} does not report its version")
    assert kafka_service.version == pinned_kafka


def test_confluent_kafka_round_trip(
    kafka_bootstrap: str, topic_name: Callable[[str], str], create_topics: Callable[..., str]
) -> None:
    topic = create_topics(topic_name("ck"), partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    got = _consume_all(kafka_bootstrap, topic, len(sent))
    assert sorted(got) == sorted(sent)


async def test_aiokafka_round_trip(
    kafka_bootstrap: str, topic_name: Callable[[str], str], create_topics: Callable[..., str]
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = create_topics(topic_name("aio"), partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
        for key, value in sent:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes | None, bytes | None]] = []
    try:

        async def read() -> None:
            async for msg in consumer:
                got.append((msg.key, msg.value))
                if len(got) == len(sent):
                    return

        await asyncio.wait_for(read(), timeout=30)
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(sent)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_faust_table_rocksdb(
    kafka_bootstrap: str,
    topic_name: Callable[[str], str],
    create_topics: Callable[..., str],
    tmp_path: Path,
) -> None:
    partitions = 2
    app_id = f"smoke-{uuid.uuid4().hex[:10]}"
    topic = create_topics(topic_name("faust"), partitions=partitions)
    out = tmp_path / "counts.json"
    expected = {"t1": 3, "t2": 1, "t3": 2}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for ticket, n in expected.items():
        for i in range(n):
            value = json.dumps({"ticket_id": ticket, "seq": i}).encode()
            producer.produce(topic, key=ticket.encode(), value=value)
    assert producer.flush(30) == 0

    env = {
        **os.environ,
        "SMOKE_BOOTSTRAP": kafka_bootstrap,
        "SMOKE_APP_ID": app_id,
        "SMOKE_TOPIC": topic,
        "SMOKE_DATADIR": str(tmp_path / "faust-data"),
        "SMOKE_OUT": str(out),
        "SMOKE_PARTITIONS": str(partitions),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "faust_smoke_app.py"), "worker", "-l", "info"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            counts: dict[str, int] = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if out.exists():
                    counts = json.loads(out.read_text())
                    if counts == expected:
                        break
                time.sleep(0.25)
        finally:
            _stop(proc)
    worker_log = log_path.read_text(errors="replace")
    assert counts == expected, f"table counts {counts}; worker log tail:\n{worker_log[-3000:]}"

    # The table lives in RocksDB through the rocksdict driver: read the stopped worker's stores.
    import rocksdict

    stores = sorted((tmp_path / "faust-data").glob("v1/tables/counts-*.db"))
    assert len(stores) == partitions, f"RocksDB stores: {stores}"
    stored: dict[str, int] = {}
    for path in stores:
        assert (path / "rocksdict-config.json").exists(), f"{path} not written by rocksdict"
        db = rocksdict.Rdict(
            str(path),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            for key, value in db.items():
                if not key.startswith(b"__faust"):
                    stored[json.loads(key)] = json.loads(value)
        finally:
            db.close()
    assert stored == expected

    changelog = f"{app_id}-counts-changelog"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert changelog in topics, f"no changelog topic {changelog}; topics: {sorted(topics)}"
    assert len(topics[changelog].partitions) == partitions

    # The changelog holds every table update; the last value per key is the final count.
    records = _consume_all(kafka_bootstrap, changelog, sum(expected.values()))
    last: dict[str, int] = {}
    for key, value in records:
        assert key is not None and value is not None
        last[json.loads(key)] = json.loads(value)
    assert last == expected


def test_redis_set_get(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    key = f"smoke:{uuid.uuid4().hex}"
    try:
        assert client.set(key, "hello", ex=60)
        assert client.get(key) == b"hello"
    finally:
        client.delete(key)
        client.close()
