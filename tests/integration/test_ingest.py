"""`escalator ingest` against real Kafka and Redis.

- Zendesk and Freshdesk fixtures, posted in order, become the expected TicketEvents on the topic
  (tag diffs from the Redis tag memory, customer data from Redis enrichment).
- Bad requests get their status and a message naming the problem, and none reaches the topic.
- With its broker stopped, ingest answers 503; after the broker restarts the sender's retries are
  accepted and a read_committed consumer sees each event exactly once. That test runs its own
  broker (deploy/local/services with its own state dir and ports), never the shared one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.sources.ingest import KafkaPublisher
from schemas.codec import codec_for
from streams.runtime.settings import load_settings
from streams.sla.events import event_from_dict
from streams.tools.demo import free_port
from streams.tools.partitioner import ticket_partition
from tests.connectors.helpdesk_cases import cases, without_id
from tests.support.brokers import SERVICES, OwnBroker
from tests.support.ingest import IngestProcess, Reply, start_ingest
from tests.support.pipeline import REPO

pytestmark = pytest.mark.integration


def read_topic(
    bootstrap: str, topic: str, until: int, timeout: float = 60.0
) -> list[tuple[bytes, int, dict[str, Any]]]:
    """(key, partition, decoded value) of every committed record, read from the start until
    `until` records arrived and the topic then stays quiet for 2 s (so extra copies show)."""
    codec = codec_for("TicketEvent")
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
         "isolation.level": "read_committed", "enable.auto.commit": False}
    )  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])
        out: list[tuple[bytes, int, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if len(out) >= until and time.monotonic() - quiet_since > 2.0:
                    break
                continue
            quiet_since = time.monotonic()
            out.append((msg.key(), msg.partition(), codec.decode(msg.value())))
        return out
    finally:
        consumer.close()


@pytest.fixture
def ingest(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> Iterator[IngestProcess]:
    # Redis lookups (profiles, remembered tags) get a second: on a loaded test machine the
    # 100 ms default can expire, and ingest then degrades on purpose (tags seen as new), which
    # test_enrichment covers; here the mapping is what is checked.
    process = start_ingest(tmp_path, kafka_bootstrap, redis_url, ESCALATOR_ENRICH_TIMEOUT_MS="1000")
    yield process
    process.stop()


def expected_with_profile(case: dict[str, Any], profile: dict[str, str] | None) -> dict[str, Any]:
    out = dict(case["expected"])
    if profile is not None:
        out["customer_tier"] = profile["tier"]
        out["attributes"] = {
            **out["attributes"],
            "customer_ltv": profile["lifetime_value"],
            "churn_score": profile["churn_score"],
        }
    return out


def test_webhooks_become_the_expected_events_and_bad_requests_never_reach_the_topic(
    ingest: IngestProcess, kafka_bootstrap: str, redis_url: str
) -> None:
    redis = load_settings({"ESCALATOR_REDIS_URL": redis_url}).redis.client()
    prefix = ingest.topic.removesuffix("ticket-events")
    vip = {"tier": "vip", "lifetime_value": "18250.00", "churn_score": "0.82"}
    redis.hset(f"{prefix}customer:20978392", mapping=vip)  # Freshdesk's 9001 stays unknown
    try:
        expected: list[dict[str, Any]] = []
        retried: list[str] = []
        for source, profile in (("zendesk", vip), ("freshdesk", None)):
            sequence = cases(source, "sequence")
            for case in sequence:
                reply = ingest.request(f"/v1/webhooks/{source}", case["payload"])
                assert reply.status == 202, (case["name"], reply.body)
                expected.append(expected_with_profile(case, profile))
            # The sender retries its last webhook (say the answer got lost): same event id.
            (last_id,) = reply.body["event_ids"]
            retry = ingest.request(f"/v1/webhooks/{source}", sequence[-1]["payload"])
            assert (retry.status, retry.body["event_ids"]) == (202, [last_id])
            retried.append(last_id)

        bad: list[tuple[Reply, int, str]] = [
            (ingest.request("/v1/events", {"event_id": "x"}, token=None), 401, "missing bearer"),
            (ingest.request("/v1/events", {"event_id": "x"}, token="guess"), 401, "wrong bearer"),
            (ingest.request("/v1/events", raw=b"{not json"), 400, "invalid JSON"),
            (ingest.request("/v1/events", raw=b"x" * 30_000), 413, "limit of 20000"),
            (ingest.request("/v1/events", {"event_id": "x", "ticket_id": "T", "type": "CREATED",
                                           "occurred_at": 1_600_000}), 400, "before 2000"),
            (ingest.request("/v1/events/batch", raw=b'{"event_id": "b1"}\n[]\n'), 400, "2 invalid"),
        ]  # fmt: skip
        for source in ("zendesk", "freshdesk"):
            for case in cases(source, "invalid"):
                reply = ingest.request(f"/v1/webhooks/{source}", case["payload"])
                assert reply.body["field"] == case["field"], case["name"]
                bad.append((reply, 400, ""))
        for reply, status, message in bad:
            assert reply.status == status, reply.body
            assert message in reply.body["error"]

        sentinel = {"event_id": "sentinel", "ticket_id": "S", "type": "CREATED",
                    "occurred_at": "2026-11-03T12:00:00Z"}  # fmt: skip
        assert ingest.request("/v1/events/batch", raw=json.dumps(sentinel).encode()).status == 202
        records = read_topic(kafka_bootstrap, ingest.topic, until=len(expected) + 3)
    finally:
        redis.delete(f"{prefix}customer:20978392")

    # Everything on the topic: the webhooks' events, the two retried copies, the sentinel.
    values = [value for _, _, value in records if value["event_id"] != "sentinel"]
    assert len(records) - len(values) == 1
    ids = [v["event_id"] for v in values]
    assert sorted(i for i in ids if ids.count(i) > 1) == sorted(retried * 2)
    first_copies = [v for i, v in enumerate(values) if ids.index(v["event_id"]) == i]
    got = [without_id(event_from_dict(v)) for v in first_copies]
    by_ticket = {t: [g for g in got if g["ticket_id"] == t] for t in ("35436", "4711")}
    assert by_ticket["35436"] + by_ticket["4711"] == expected
    assert len(got) == len(expected)
    # Keyed by ticket id, so each ticket stays in one partition, in order.
    assert all(key == value["ticket_id"].encode() for key, _, value in records)
    assert len({p for key, p, _ in records if key == b"35436"}) == 1
    # in the partition `backtest --arrival-order` assumes (ESCALATOR_PARTITIONS=3)
    assert all(p == ticket_partition(key.decode(), 3) for key, p, _ in records)


def test_fatal_producer_is_replaced(
    kafka_bootstrap: str, create_topics: Any, topic_name: Any
) -> None:
    import asyncio

    topic = create_topics(topic_name("fatal"))
    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": kafka_bootstrap})
    sink = KafkaPublisher(settings, topic, timeout_ms=5000)

    async def scenario() -> int:
        await sink.send([(b"k", b"before")])
        old = sink._producer
        sink._on_error(KafkaError(KafkaError._FATAL, "simulated fatal", fatal=True))
        for _ in range(200):  # the poll thread replaces it within one poll interval
            if sink._producer is not old:
                break
            await asyncio.sleep(0.05)
        assert sink._producer is not old
        await sink.send([(b"k", b"after")])
        return 2

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        sink.close()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "isolation.level": "read_committed"})  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, -2)])
    values = []
    deadline = time.monotonic() + 30
    while len(values) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            values.append(msg.value())
    consumer.close()
    assert values == [b"before", b"after"]


# --------------------------------------------------------------------------------------------
# Outage: a broker of the test's own


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ESCALATOR_KAFKA_BOOTSTRAP"}
    env.update(
        ESCALATOR_LOCAL_DIR=str(tmp_path / "own-broker"),
        ESCALATOR_KAFKA_PORT=str(port),
        ESCALATOR_KAFKA_CONTROLLER_PORT=str(controller),
        ESCALATOR_KAFKA_HEAP="-Xms128m -Xmx384m",
    )
    broker = OwnBroker(env, f"127.0.0.1:{port}")
    try:
        broker.services("up")
        yield broker
    finally:
        subprocess.run(["bash", str(SERVICES), "down", "kafka"], env=env, cwd=REPO,
                       capture_output=True, timeout=120, check=False)  # fmt: skip


def test_broker_outage_answers_503_and_retries_arrive_exactly_once(
    own_broker: OwnBroker, redis_url: str, tmp_path: Path
) -> None:
    ingest = start_ingest(
        tmp_path, own_broker.bootstrap, redis_url, ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS="3000"
    )
    try:
        event = {"ticket_id": "T-out", "occurred_at": "2026-11-02T09:15:00Z"}
        a = {**event, "event_id": "a", "type": "CREATED"}
        assert ingest.request("/v1/events", a).status == 202

        own_broker.services("down")
        b = {**event, "event_id": "b", "type": "AGENT_REPLIED"}
        zendesk = cases("zendesk", "sequence")[1]["payload"]
        outage = [("/v1/events", b), ("/v1/webhooks/zendesk", zendesk)]
        for path, body in outage:
            reply = ingest.request(path, body)
            assert reply.status == 503, reply.body
            assert int(reply.headers["Retry-After"]) > 0
            assert "Kafka" in reply.body["error"]
        assert ingest.request("/readyz").status == 503

        own_broker.services("start")  # same data dir: the topic and a are still there
        accepted: dict[str, list[str]] = {}
        deadline = time.monotonic() + 120
        for path, body in outage:  # the sender retries each until it is accepted
            while True:
                reply = ingest.request(path, body)
                if reply.status == 202:
                    accepted[path] = reply.body["event_ids"]
                    break
                assert reply.status == 503 and time.monotonic() < deadline, reply.body
                time.sleep(float(reply.headers["Retry-After"]) / 4)
    finally:
        ingest.stop()

    records = read_topic(own_broker.bootstrap, ingest.topic, until=3)
    ids = [value["event_id"] for _, _, value in records]
    assert sorted(ids) == sorted(["a", "b", *accepted["/v1/webhooks/zendesk"]])
    assert [i for i in ids if i in ("a", "b")] == ["a", "b"]  # one ticket, one partition, in order
