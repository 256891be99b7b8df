"""Customer enrichment for ingest: tier, lifetime value and churn score from Redis.

Enrichment runs at the source (``escalator ingest``), before an event is produced, so the events
on ``ticket-events`` are the history a backtest replays: live equals backtest. It only fills what
an event does not carry: ``customer_tier``, and ``attributes["customer_ltv"]`` /
``attributes["churn_score"]`` (strings).

Redis holds one hash per customer under ``ESCALATOR_ENRICH_KEY_PATTERN`` (default
``customer:{customer_id}``) with the fields ``tier``, ``lifetime_value`` and ``churn_score``, e.g.
``HSET customer:C42 tier vip lifetime_value 18250.00 churn_score 0.82``.

It never holds an event up for long: lookups have a short timeout, answers are cached in process
for ``ESCALATOR_ENRICH_CACHE_SECONDS`` (an unknown customer too), and after a failure a
:class:`Breaker` skips Redis for ``ESCALATOR_ENRICH_RETRY_SECONDS`` and then lets a single call
probe it, so a dead Redis costs at most one timeout per interval, not one per request. When Redis
is down or the customer unknown the event goes on unchanged and
``escalator_enrichment_misses_total{reason}`` counts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from prometheus_client import Counter

from streams.sla.events import TicketEvent

__all__ = ["MISSES", "Breaker", "CustomerProfile", "Enricher", "RedisUnavailable"]

MISSES: Final = Counter(
    "escalator_enrichment_misses_total",
    "Events that needed customer data enrichment could not add (reason: unknown_customer, "
    "redis_unavailable)",
    ["reason"],
)
FIELDS: Final = ("tier", "lifetime_value", "churn_score")
_CACHE_MAX: Final = 100_000

T = TypeVar("T")


class RedisUnavailable(RuntimeError):
    """Redis did not answer in time, refused, or the breaker is open."""


class Breaker:
    """Circuit breaker for a Redis the request path must not wait on.

    Closed: every call goes through. After a failure it opens for ``retry_s``; then one call
    (the probe) goes through while the others keep failing fast; the probe's success closes it.
    """

    def __init__(
        self, timeout_s: float, retry_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.clock = clock
        self.open_until = 0.0
        self.failed = False
        self._probing = False

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` within the timeout, or raise :class:`RedisUnavailable` at once."""
        if self.failed:
            if self._probing or self.clock() < self.open_until:
                raise RedisUnavailable("redis skipped after a recent failure")
            self._probing = True
        try:
            result = await asyncio.wait_for(make(), self.timeout_s)
        except Exception as exc:  # timeout, refused, auth, ...: all mean "not now"
            self.failed = True
            self.open_until = self.clock() + self.retry_s
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._probing = False
        self.failed = False
        return result


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    tier: str | None = None
    lifetime_value: str | None = None
    churn_score: str | None = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    out = value.decode() if isinstance(value, bytes) else str(value)
    return out or None


class Enricher:
    """Fills customer fields of events from Redis (redis.asyncio client), with a TTL cache."""

    def __init__(
        self,
        client: Any,
        key_pattern: str,
        breaker: Breaker,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key_pattern = key_pattern
        self.breaker = breaker
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, CustomerProfile | None]] = {}

    async def profile(self, customer_id: str) -> CustomerProfile | None:
        """The customer's profile; None if Redis has none. Raises :class:`RedisUnavailable`."""
        return (await self.profiles([customer_id]))[customer_id]

    async def profiles(self, customer_ids: Sequence[str]) -> dict[str, CustomerProfile | None]:
        """Profiles by customer id, from the cache or else in one pipelined round trip.
        Raises :class:`RedisUnavailable` (then nothing is cached)."""
        now = self.clock()
        found = self._cached(customer_ids, now)
        missing = [customer_id for customer_id in customer_ids if customer_id not in found]
        if not missing:
            return found

        async def fetch() -> list[list[Any]]:
            pipe = self.client.pipeline(transaction=False)
            for customer_id in missing:
                pipe.hmget(self.key_pattern.format(customer_id=customer_id), FIELDS)
            rows: list[list[Any]] = await pipe.execute()
            return rows

        rows = await self.breaker.call(fetch)
        for customer_id, row in zip(missing, rows, strict=True):
            tier, ltv, churn = (_text(v) for v in row)
            profile = None if tier is None and ltv is None and churn is None else (
                CustomerProfile(tier, ltv, churn)
            )  # fmt: skip
            found[customer_id] = profile
            if self.cache_seconds > 0:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.pop(next(iter(self._cache)))  # oldest entry
                self._cache[customer_id] = (now + self.cache_seconds, profile)
        return found

    def _cached(self, customer_ids: Iterable[str], now: float) -> dict[str, CustomerProfile | None]:
        hits = ((i, self._cache.get(i)) for i in customer_ids)
        return {i: hit[1] for i, hit in hits if hit is not None and hit[0] > now}

    async def enrich(self, events: Sequence[TicketEvent]) -> list[TicketEvent]:
        """The events with missing customer fields filled in (each distinct customer looked up
        once). Never raises for Redis trouble: those events go on as they are."""
        wanted = {e.customer_id for e in events if e.customer_id and _lacks(e)}
        if not wanted:
            return list(events)
        try:
            found = await self.profiles(sorted(wanted))
        except RedisUnavailable:  # customers still in the cache are enriched all the same
            found = self._cached(wanted, self.clock())
        out = []
        for event in events:
            customer = event.customer_id
            profile = found.get(customer) if customer and _lacks(event) else None
            if profile is not None:
                out.append(_fill(event, profile))
                continue
            if customer and _lacks(event):
                MISSES.labels(
                    "unknown_customer" if customer in found else "redis_unavailable"
                ).inc()
            out.append(event)
        return out


def _lacks(event: TicketEvent) -> bool:
    return (
        event.customer_tier is None
        or "customer_ltv" not in event.attributes
        or "churn_score" not in event.attributes
    )


def _fill(event: TicketEvent, profile: CustomerProfile) -> TicketEvent:
    attributes = dict(event.attributes)
    if profile.lifetime_value is not None:
        attributes.setdefault("customer_ltv", profile.lifetime_value)
    if profile.churn_score is not None:
        attributes.setdefault("churn_score", profile.churn_score)
    return dataclasses.replace(
        event, customer_tier=event.customer_tier or profile.tier, attributes=attributes
    )
