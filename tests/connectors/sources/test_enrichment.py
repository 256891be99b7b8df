from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connectors.sources.enrichment import (
    FIELDS,
    Breaker,
    CustomerProfile,
    Enricher,
    RedisUnavailable,
)
from streams.runtime.settings import load_settings
from streams.sla.events import EventType, TicketEvent
from streams.tools.demo import free_port

T0 = 1_793_610_900_000


def misses(reason: str) -> float:
    return REGISTRY.get_sample_value("escalator_enrichment_misses_total", {"reason": reason}) or 0.0


def event(customer: str | None = "C1", **fields: Any) -> TicketEvent:
    return TicketEvent(f"e-{uuid.uuid4().hex[:8]}", "T1", EventType.CREATED, T0,
                       customer_id=customer, **fields)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """HMGET over a dict, through pipelines like redis.asyncio; ``fail`` makes every round trip
    raise like a refused connection, ``delay`` makes it slow. ``calls`` counts round trips."""

    def __init__(self, data: dict[str, dict[str, str]] | None = None) -> None:
        self.data = data or {}
        self.calls = 0
        self.keys: list[str] = []
        self.fail = False
        self.delay = 0.0

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.queued: list[tuple[str, tuple[str, ...]]] = []

    def hmget(self, key: str, fields: tuple[str, ...]) -> None:
        self.queued.append((key, fields))

    async def execute(self) -> list[list[bytes | None]]:
        self.redis.calls += 1
        self.redis.keys += [key for key, _ in self.queued]
        if self.redis.delay:
            await asyncio.sleep(self.redis.delay)
        if self.redis.fail:
            raise ConnectionError("refused")
        rows = (self.redis.data.get(key, {}) for key, _ in self.queued)
        return [[row[f].encode() if f in row else None for f in FIELDS] for row in rows]


def enricher(client: Any, clock: Clock, cache: float = 30.0) -> Enricher:
    return Enricher(client, "cust:{customer_id}", Breaker(0.05, 5.0, clock), cache, clock)


async def test_fills_only_what_the_event_lacks() -> None:
    client = FakeRedis(
        {"cust:C1": {"tier": "vip", "lifetime_value": "18250.00", "churn_score": "0.82"}}
    )
    e = enricher(client, Clock())
    plain, tiered = event(), event(customer_tier="premium", attributes={"churn_score": "0.1"})
    out = await e.enrich([plain, tiered])
    assert out[0].customer_tier == "vip"
    assert out[0].attributes == {"customer_ltv": "18250.00", "churn_score": "0.82"}
    assert out[1].customer_tier == "premium"
    assert out[1].attributes == {"customer_ltv": "18250.00", "churn_score": "0.1"}
    assert (client.calls, client.keys) == (1, ["cust:C1"])  # once per distinct customer


async def test_a_batch_is_one_round_trip_and_cached_customers_survive_an_outage() -> None:
    clock = Clock()
    client = FakeRedis({f"cust:C{i}": {"tier": "vip"} for i in range(0, 50, 2)})
    e = enricher(client, clock)
    before = (misses("unknown_customer"), misses("redis_unavailable"))
    out = await e.enrich([event(f"C{i}") for i in range(50)])
    assert client.calls == 1 and len(client.keys) == 50
    assert [o.customer_tier for o in out] == ["vip", None] * 25
    client.fail = True
    out = await e.enrich([event(f"C{i}") for i in range(60)])  # C50..C59 are not cached
    assert [o.customer_tier for o in out] == ["vip", None] * 25 + [None] * 10
    assert client.calls == 2
    after = (misses("unknown_customer"), misses("redis_unavailable"))
    assert (after[0] - before[0], after[1] - before[1]) == (25 + 25, 10)


async def test_events_without_customer_or_lacking_nothing_skip_redis() -> None:
    client = FakeRedis()
    full = event(customer_tier="vip", attributes={"customer_ltv": "1", "churn_score": "0"})
    out = await enricher(client, Clock()).enrich([event(customer=None), full])
    assert out[1] is full
    assert client.calls == 0


async def test_cache_keeps_answers_and_unknown_customers_for_its_ttl() -> None:
    clock = Clock()
    client = FakeRedis({"cust:C1": {"tier": "vip"}})
    e = enricher(client, clock, cache=30)
    before = misses("unknown_customer")
    for _ in range(3):
        assert await e.profile("C1") == CustomerProfile("vip")
        await e.enrich([event("nobody")])
    assert client.calls == 2
    assert misses("unknown_customer") - before == 3
    clock.now += 31
    client.data["cust:C1"]["tier"] = "enterprise"
    assert await e.profile("C1") == CustomerProfile("enterprise")
    assert client.calls == 3


async def test_dead_redis_costs_one_attempt_per_interval_and_events_go_on() -> None:
    clock = Clock()
    client = FakeRedis({"cust:C1": {"tier": "vip"}})
    client.fail = True
    e = enricher(client, clock, cache=0)
    before = misses("redis_unavailable")
    for _ in range(20):
        (out,) = await e.enrich([event()])
        assert out.customer_tier is None
    assert client.calls == 1
    assert misses("redis_unavailable") - before == 20
    clock.now += 5.1  # the interval passed: one probe, which now succeeds
    client.fail = False
    (out,) = await e.enrich([event()])
    assert out.customer_tier == "vip"
    assert client.calls == 2


async def test_slow_redis_is_cut_at_the_timeout_and_only_one_probe_runs() -> None:
    clock = Clock()
    client = FakeRedis({"cust:C1": {"tier": "vip"}})
    client.delay = 10.0
    breaker = Breaker(0.05, 5.0, clock)
    e = Enricher(client, "cust:{customer_id}", breaker, 0, clock)
    with pytest.raises(RedisUnavailable):
        await asyncio.wait_for(e.profile("C1"), 5)  # the breaker's 50 ms, not the 10 s delay
    clock.now += 6
    results = await asyncio.gather(*(e.profile(f"C{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, RedisUnavailable) for r in results)
    assert client.calls == 2  # the first call, then a single probe for the five


@pytest.mark.integration
async def test_real_redis_profile_and_unknown_customer(redis_url: str) -> None:
    prefix = f"test-enrich-{uuid.uuid4().hex[:8]}:"
    settings = load_settings({"ESCALATOR_REDIS_URL": redis_url})
    sync = settings.redis.client()
    sync.hset(
        f"{prefix}C42",
        mapping={"tier": "enterprise", "lifetime_value": "99000", "churn_score": "0.7"},
    )
    client = settings.redis.async_client()
    try:
        e = Enricher(client, prefix + "{customer_id}", Breaker(0.5, 5.0))
        before = misses("unknown_customer")
        known, unknown = await e.enrich([event("C42"), event("C404")])
        assert known.customer_tier == "enterprise"
        assert known.attributes == {"customer_ltv": "99000", "churn_score": "0.7"}
        assert unknown.customer_tier is None and unknown.attributes == {}
        assert misses("unknown_customer") - before == 1
    finally:
        sync.delete(f"{prefix}C42")
        await client.aclose()


@pytest.mark.integration
async def test_unreachable_redis_leaves_events_unchanged() -> None:
    settings = load_settings({"ESCALATOR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    client = settings.redis.async_client()
    calls = 0
    pipeline = client.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return pipeline(*args, **kwargs)

    client.pipeline = counted
    try:
        e = Enricher(client, "customer:{customer_id}", Breaker(0.5, 60.0), cache_seconds=0)
        before = misses("redis_unavailable")
        originals = [event(f"C{i}") for i in range(10)]
        for original in originals:
            assert await e.enrich([original]) == [original]
        assert misses("redis_unavailable") - before == 10
        assert calls == 1
    finally:
        await client.aclose()
