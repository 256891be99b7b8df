"""`escalator ingest` figures on the local broker (figures, never pass/fail).

    .venv/bin/python bench/ingest.py [--seconds 5] [--concurrency 32] [--batch 200]

Same run, same machine, same events (native TicketEvents with customer ids, enriched from
Redis), each phase a closed loop of `--concurrency` HTTP clients for `--seconds`:

1. Baseline: a bare confluent-kafka produce loop (idempotent, acks=all, the same Avro values),
   events/s until every delivery is confirmed: what Kafka takes from one producer here.
2. Baseline: the same ingest code with a publisher that produces and answers without waiting for
   the broker's ack (`--serve-no-ack`, bench only): what the HTTP, JSON, validation and
   enrichment path costs.
3. `escalator ingest` POST /v1/events: accepted webhooks/s with delivery confirmed, latency
   p50/p99.
4. `escalator ingest` POST /v1/events/batch with `--batch` events per request: events/s.

The load generator runs on the same cores as the server, so absolute figures are low on a small
shared machine; the ratios are the point. Needs Kafka and Redis (deploy/local/services up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from confluent_kafka import Producer

from connectors.sources.ingest import KafkaPublisher, build_ingest, serve
from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import Topics, ensure_topics
from streams.sla.events import event_from_dict
from streams.sla.policy import load_policy
from streams.sla.report import percentile
from streams.tools.demo import free_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
CUSTOMERS = 500


def make_events(n: int) -> list[bytes]:
    """`n` distinct native events as JSON bodies (tickets and customers spread out)."""
    base = int(time.time() * 1000) - 3_600_000
    types = ("CREATED", "AGENT_REPLIED", "CUSTOMER_REPLIED", "STATUS_CHANGED")
    return [
        json.dumps(
            {"event_id": f"b{i}", "ticket_id": f"BT{i % 5000:05d}", "type": types[i % 4],
             "occurred_at": base + i, "customer_id": f"BC{i % CUSTOMERS}", "channel": "email",
             "priority": "NORMAL", "status": "OPEN"}
        ).encode()
        for i in range(n)
    ]  # fmt: skip


def bare_produce(settings: Settings, topic: str, bodies: Sequence[bytes], seconds: float) -> float:
    """Events/s of a plain produce loop, every delivery confirmed."""
    codec = codec_for("TicketEvent", settings)
    values = [
        (e.ticket_id.encode(), codec.encode(ticket_event_to_avro(e)))
        for e in (event_from_dict(json.loads(b)) for b in bodies)
    ]
    producer = Producer(idempotent_producer(settings))
    failed = 0

    def report(err: object, _msg: object) -> None:
        nonlocal failed
        failed += err is not None

    sent = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        key, value = values[sent % len(values)]
        try:
            producer.produce(topic, value, key, on_delivery=report)
            sent += 1
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    return (sent - failed) / elapsed


@dataclass
class LoadResult:
    ok: int = 0
    failed: dict[int, int] = field(default_factory=dict)
    latencies_us: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def rate(self, per_request: int = 1) -> float:
        return self.ok * per_request / self.seconds

    def pct_ms(self, p: float) -> float:
        value = percentile(sorted(self.latencies_us), p)
        return (value or 0) / 1000


async def load(
    url: str, bodies: Sequence[bytes], seconds: float, concurrency: int, content_type: str
) -> LoadResult:
    """A closed loop: `concurrency` clients, each posting its next body when answered."""
    result = LoadResult()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    connector = aiohttp.TCPConnector(limit=concurrency)
    next_index = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        end = started + seconds

        async def client() -> None:
            nonlocal next_index
            while time.perf_counter() < end:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 202:
                        result.ok += 1
                        result.latencies_us.append(int((time.perf_counter() - t0) * 1e6))
                    else:
                        result.failed[response.status] = result.failed.get(response.status, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


class NoAckPublisher(KafkaPublisher):
    """Produces and returns at once: the ingest path without waiting for the broker's ack."""

    async def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        for key, value in records:
            while True:
                try:
                    self._producer.produce(self.topic, value, key)
                    break
                except BufferError:
                    await asyncio.sleep(0.005)


def serve_no_ack(port: int, prefix: str) -> None:
    settings = load_settings()
    statuses = load_policy(settings.policy_file).statuses
    ingest = build_ingest(settings, Topics(prefix), TOKEN, statuses=statuses)
    ingest.publisher.close()
    conn = settings.connectors
    topic = Topics(prefix).ticket_events
    ingest.publisher = NoAckPublisher(settings, topic, conn.ingest_delivery_timeout_ms)
    asyncio.run(serve(ingest, "127.0.0.1", port, lambda text: print(text, flush=True)))


class Server:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited:\n{self.log.read_text()[-2000:]}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit(f"server not ready; see {self.log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def describe(name: str, result: LoadResult, unit: str, per_request: int = 1) -> str:
    failed = f", non-202: {result.failed}" if result.failed else ""
    return (
        f"{name:<44} {result.rate(per_request):>9,.0f} {unit}/s  "
        f"p50 {result.pct_ms(50):6.1f} ms  p99 {result.pct_ms(99):6.1f} ms  "
        f"({result.ok:,} requests{failed})"
    )


async def run(args: argparse.Namespace) -> None:
    settings = load_settings()
    prefix = f"benchingest{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix)
    ensure_topics(settings, topics, [topics.ticket_events])
    redis = settings.redis.client()
    pattern = f"{prefix}customer:{{customer_id}}"
    for i in range(CUSTOMERS):
        redis.hset(pattern.format(customer_id=f"BC{i}"), mapping={
            "tier": ("standard", "premium", "vip")[i % 3], "lifetime_value": str(i * 10),
            "churn_score": "0.5"})  # fmt: skip
    env = {
        **os.environ,
        "ESCALATOR_INGEST_TOKEN": TOKEN,
        "ESCALATOR_ENRICH_KEY_PATTERN": pattern,
        "ESCALATOR_INGEST_TAGS_PREFIX": f"{prefix}tags:",
    }
    bodies = make_events(50_000)
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    print(
        f"bench/ingest: {args.seconds:g} s per phase, {args.concurrency} concurrent clients, "
        f"topic {topics.ticket_events} ({settings.partitions} partitions), {os.cpu_count()} CPUs"
    )
    try:
        bare = bare_produce(settings, topics.ticket_events, bodies, args.seconds)
        print(f"{'1. bare confluent-kafka produce loop (acks=all)':<44} {bare:>9,.0f} events/s")

        port = free_port()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-no-ack", str(port),
               "--topic-prefix", prefix]  # fmt: skip
        no_ack = Server(cmd, port, env, root / "no-ack.log")
        await no_ack.wait_ready()
        url = f"http://127.0.0.1:{port}/v1/events"
        noack = await load(url, bodies, args.seconds, args.concurrency, "application/json")
        no_ack.stop()
        print(describe("2. ingest, no wait for the ack (bench only)", noack, "requests"))

        port = free_port()
        ingest = Server([sys.executable, "-m", "streams.cli", "ingest", "--host", "127.0.0.1",
                         "--port", str(port), "--topic-prefix", prefix], port, env,
                        root / "ingest.log")  # fmt: skip
        await ingest.wait_ready()
        base = f"http://127.0.0.1:{port}"
        single = await load(base + "/v1/events", bodies, args.seconds, args.concurrency,
                            "application/json")  # fmt: skip
        print(describe("3. escalator ingest POST /v1/events", single, "accepted"))
        batches = [
            b"\n".join(bodies[i : i + args.batch]) for i in range(0, len(bodies), args.batch)
        ]
        batch = await load(base + "/v1/events/batch", batches, args.seconds,
                           max(1, args.concurrency // 4), "application/x-ndjson")  # fmt: skip
        print(describe(f"4. escalator ingest batches of {args.batch}", batch, "events", args.batch))
        ingest.stop()
    finally:
        for key in redis.scan_iter(f"{prefix}*"):
            redis.delete(key)
    print(
        f"ratios: ingest/no-ack {single.rate() / noack.rate():.2f} (cost of waiting for the ack), "
        f"ingest/bare producer {single.rate() / bare:.3f}, "
        f"batch/bare producer {batch.rate(args.batch) / bare:.2f}"
    )
    print(f"logs: {root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--serve-no-ack", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_no_ack:
        serve_no_ack(args.serve_no_ack, args.topic_prefix)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
