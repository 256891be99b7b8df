"""`escalator ingest`: the HTTP webhook receiver in front of `ticket-events`.

Endpoints (JSON in, JSON out; POSTs need ``Authorization: Bearer <token>``, a token of a source
allowed on the endpoint: :mod:`connectors.sources.ingest_access`):

- ``POST /v1/events``: one native TicketEvent (the JSON Lines form of a history file).
- ``POST /v1/events/batch``: a JSON array of them, or JSON Lines, for backfill. Validation is
  all or nothing: one bad event rejects the batch, the answer lists every error with its index
  (array, from 0) or line (JSON Lines, from 1) and field.
- ``POST /v1/webhooks/zendesk`` and ``/v1/webhooks/freshdesk``: help-desk webhooks, mapped by
  :mod:`connectors.sources.zendesk` / :mod:`connectors.sources.freshdesk`.
- ``GET /healthz`` (the process serves), ``GET /readyz`` (503 while Kafka is unreachable),
  ``GET /metrics``.

Answers: 202 ``{"accepted": n, "event_ids": [...]}`` only after the broker acknowledged every
event (idempotent producer, acks=all); 400 ``{"error", "field", "index"|"line"}`` (also for
numbers no field can hold and JSON nested deeper than :data:`MAX_DEPTH`); 401 on a missing or
wrong token (constant-time comparison) or Zendesk signature; 403 when the token's source may not
post there; 413 over ``ESCALATOR_INGEST_MAX_BYTES`` (``ESCALATOR_INGEST_BATCH_MAX_BYTES`` for
batches), checked on Content-Length and while reading, or a batch over
``ESCALATOR_INGEST_BATCH_MAX_ITEMS`` events; 429 with Retry-After over a client's rate (per
source, or per address without authentication); 503 with Retry-After while Kafka does not
acknowledge, so the sender retries and nothing is lost.

A batch is parsed in a worker thread, item by item up to the item cap, and collects at most
:data:`MAX_LISTED_ERRORS` errors: a large or hostile batch neither blocks the event loop nor
builds more than the cap's worth of objects.
A retried request can put an event on the topic twice (when the first answer was lost after the
ack); both copies have the same event id and the worker applies it once.

Before producing, events get customer data from Redis (:mod:`connectors.sources.enrichment`) and
webhooks get their tag diff from :class:`TagMemory`. Records are keyed by ticket id with the
murmur2 partitioner, like ``escalator replay``, so each ticket lands where the worker expects it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram

from connectors.sources.enrichment import Breaker, Enricher, RedisUnavailable
from connectors.sources.freshdesk import parse_freshdesk
from connectors.sources.helpdesk import HelpdeskUpdate, Ignored, to_event
from connectors.sources.ingest_access import (
    ENDPOINTS,
    Access,
    Denied,
    RateLimiter,
    Source,
    check_zendesk,
)
from connectors.sources.zendesk import parse_zendesk
from schemas.codec import AvroCodec, RegistryError, codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.metrics import generate_latest, mark_component
from streams.runtime.settings import Settings, redact_url
from streams.runtime.topics import Topics
from streams.sla.events import EventError, Status, TicketEvent, event_from_dict, json_type

__all__ = [
    "EventPublisher",
    "Ingest",
    "KafkaPublisher",
    "TagMemory",
    "Unavailable",
    "build_ingest",
    "serve",
]

log = logging.getLogger("escalator.ingest")

REQUESTS: Final = Counter(
    "escalator_ingest_requests_total",
    "HTTP requests by endpoint and status",
    ["endpoint", "status"],
)
EVENTS: Final = Counter(
    "escalator_ingest_events_total",
    "Events acknowledged by Kafka, by source (native, zendesk, freshdesk)",
    ["source"],
)
DURATION: Final = Histogram(
    "escalator_ingest_request_duration_seconds",
    "Request latency, delivery acknowledgement included",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TAG_MEMORY_UNAVAILABLE: Final = Counter(
    "escalator_ingest_tag_memory_unavailable_total",
    "Webhooks whose previous tag set could not be read or stored (Redis unavailable)",
)
RETRY_AFTER_S: Final = 2
MAX_LISTED_ERRORS: Final = 100
MAX_DEPTH: Final = 32  # objects and arrays inside one another; events need 3
_DOWN_CODES: Final = frozenset(
    (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._MSG_TIMED_OUT)
)


class Unavailable(RuntimeError):
    """Kafka did not acknowledge: the request is answered 503 and the sender retries."""


class RequestError(Exception):
    """A request the sender must fix: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, error: str, field: str | None = None, **where: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, "field": field, **where}


class EventPublisher(Protocol):
    """Where accepted events go: ``send`` returns once every record is acknowledged."""

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> Awaitable[None]: ...

    def ready(self) -> Awaitable[bool]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Kafka


class KafkaPublisher:
    """An idempotent confluent-kafka producer (acks=all) whose delivery reports resolve the
    futures requests await.

    A thread polls the producer and hands each poll's reports to the event loop in one
    ``call_soon_threadsafe``. ``message.timeout.ms`` bounds the wait for an ack. After a
    connection loss the publisher fails fast (503) until a metadata probe reaches the broker again,
    and a producer that turned fatal (idempotence can, after timeouts) is replaced.
    """

    def __init__(
        self, settings: Settings, topic: str, timeout_ms: int, probe_timeout_s: float = 1.0
    ) -> None:
        self.topic = topic
        self.bootstrap = redact_url(settings.kafka.bootstrap)
        self.timeout_s = timeout_ms / 1000
        self.probe_timeout_s = probe_timeout_s
        self._config = {
            **idempotent_producer(settings),
            "linger.ms": 2,
            "message.timeout.ms": timeout_ms,
            "reconnect.backoff.max.ms": 1000,
            "allow.auto.create.topics": False,
            "error_cb": self._on_error,
        }
        self._producer = Producer(self._config)
        self.down = False
        self._fatal: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: list[tuple[asyncio.Future[KafkaError | None], KafkaError | None]] = []
        self._probe_lock = asyncio.Lock()
        self._probe_at = float("-inf")
        self._probe_ok = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="ingest-producer", daemon=True)
        self._thread.start()

    # -- poll thread

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = str(err)
            log.error("Kafka producer fatal error: %s; replacing the producer", err)
        elif err.code() in _DOWN_CODES:
            self.down = True

    def _delivered(
        self, future: asyncio.Future[KafkaError | None], err: KafkaError | None, _msg: Any
    ) -> None:
        if err is None:
            self.down = False
        elif err.code() in _DOWN_CODES:
            self.down = True
        self._reports.append((future, err))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._fatal is not None:
                self._replace()
            self._hand_over()

    def _hand_over(self) -> None:
        if self._reports and self._loop is not None:
            reports, self._reports = self._reports, []
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(_settle, reports)

    def _replace(self) -> None:
        old = self._producer
        old.purge()  # queued and in-flight records fail now (-> 503) instead of never
        old.poll(0)
        self._producer = Producer(self._config)
        self._fatal = None

    # -- event loop

    async def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self._fatal is not None:
            raise Unavailable(f"Kafka producer failed ({self._fatal}); retry")
        if self.down and not await self.ready():
            raise Unavailable(f"Kafka at {self.bootstrap} is unreachable")
        loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        futures: list[asyncio.Future[KafkaError | None]] = []
        for key, value in records:
            future: asyncio.Future[KafkaError | None] = loop.create_future()
            report = functools.partial(self._delivered, future)
            while True:
                try:
                    self._producer.produce(self.topic, value, key, on_delivery=report)
                    break
                except BufferError:
                    if loop.time() > deadline:
                        raise Unavailable("Kafka producer queue is full") from None
                    await asyncio.sleep(0.005)
                except KafkaException as exc:
                    raise Unavailable(f"Kafka producer: {exc}") from None
            futures.append(future)
        try:  # message.timeout.ms guarantees a report; the margin covers a replaced producer
            results = await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s + 10)
        except TimeoutError:
            raise Unavailable("no delivery report from Kafka in time") from None
        failed = [err for err in results if err is not None]
        if failed:
            raise Unavailable(
                f"{len(failed)} of {len(records)} events not acknowledged by Kafka: {failed[0]}"
            )

    async def ready(self) -> bool:
        """Does the broker answer a metadata request for the topic (checked at most once a
        second; concurrent callers share one probe)?"""
        async with self._probe_lock:
            if time.monotonic() - self._probe_at < 1.0:
                return self._probe_ok
            ok = await asyncio.get_running_loop().run_in_executor(None, self._probe)
            self._probe_ok, self._probe_at = ok, time.monotonic()
            if ok:
                self.down = False
            return ok

    def _probe(self) -> bool:
        try:
            meta = self._producer.list_topics(self.topic, timeout=self.probe_timeout_s)
        except KafkaException:
            return False
        topic = meta.topics.get(self.topic)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join()
        self._producer.flush(timeout_s)


def _settle(reports: Iterable[tuple[asyncio.Future[KafkaError | None], KafkaError | None]]) -> None:
    for future, err in reports:
        if not future.done():
            future.set_result(err)


# --------------------------------------------------------------------------------------------
# Tag memory

_REMEMBER: Final = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'tags', ARGV[1], 'at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class TagMemory:
    """The tag set each help-desk ticket had at its last webhook, in Redis so that every ingest
    replica computes the same diff: hash ``<prefix><source>:<ticket>`` {tags, at}, expiring
    ``ttl_s`` after the last update; an older webhook never overwrites a newer set.

    When Redis is unavailable the previous set is unknown (None) and every current tag counts as
    added: the engine's tag set then keeps tags the help desk removed until a later webhook
    says so. ``escalator_ingest_tag_memory_unavailable_total`` counts those webhooks.
    """

    def __init__(self, client: Any, prefix: str, ttl_s: int, breaker: Breaker) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.breaker = breaker

    def key(self, source: str, ticket_id: str) -> str:
        return f"{self.prefix}{source}:{ticket_id}"

    async def previous(self, source: str, ticket_id: str) -> frozenset[str] | None:
        key = self.key(source, ticket_id)
        try:
            raw = await self.breaker.call(lambda: self.client.hget(key, "tags"))
        except RedisUnavailable:
            TAG_MEMORY_UNAVAILABLE.inc()
            return None
        return frozenset() if raw is None else frozenset(orjson.loads(raw))

    async def remember(self, update: HelpdeskUpdate) -> None:
        if update.tags is None:
            return
        key = self.key(update.source, update.ticket_id)
        tags = orjson.dumps(list(update.tags))
        try:
            await self.breaker.call(
                lambda: self.client.eval(_REMEMBER, 1, key, tags, update.occurred_at, self.ttl_s)
            )
        except RedisUnavailable:
            TAG_MEMORY_UNAVAILABLE.inc()


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Ingest:
    """The request handlers; :meth:`app` builds the aiohttp application."""

    publisher: EventPublisher
    codec: AvroCodec
    token: str | None  # ESCALATOR_INGEST_TOKEN: the source "default", allowed everywhere
    enricher: Enricher | None = None
    tags: TagMemory | None = None
    max_bytes: int = 1_000_000
    batch_max_bytes: int = 16_000_000
    max_event_bytes: int = 1_000_000
    max_skew_ms: int = Settings.max_clock_skew_ms  # the worker's bound on events ahead of it
    clock: Callable[[], float] = time.time
    sources: Mapping[str, Source] | None = None  # ESCALATOR_INGEST_TOKENS_FILE
    zendesk_secret: bytes | None = None  # set: Zendesk posts are checked by their signature
    zendesk_window_s: float = 300.0
    rate_limit: float = 0.0  # requests a second per client; 0: no limit
    rate_burst: int = 200
    batch_max_items: int = 10_000
    # the policy's custom help-desk status names -> canonical statuses (Policy.statuses)
    statuses: Mapping[str, Status] | None = None

    def __post_init__(self) -> None:
        self.access = Access.build(self.token, self.sources)
        self.limiter = (
            RateLimiter(self.rate_limit, self.rate_burst, time.monotonic)
            if self.rate_limit > 0
            else None
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/events", self.events, name="events")
        app.router.add_post("/v1/events/batch", self.batch, name="batch")
        app.router.add_post("/v1/webhooks/zendesk", self.zendesk, name="zendesk")
        app.router.add_post("/v1/webhooks/freshdesk", self.freshdesk, name="freshdesk")
        app.router.add_get("/healthz", self.healthz, name="healthz")
        app.router.add_get("/readyz", self.readyz, name="readyz")
        app.router.add_get("/metrics", self.metrics, name="metrics")
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.name or "unmatched"
        try:
            if request.method == "POST":
                self._admit(request, route)
            response = await handler(request)
        except RequestError as exc:
            response = web.json_response(exc.body, status=exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="escalator"'
            if "retry_after" in exc.body:
                response.headers["Retry-After"] = str(exc.body["retry_after"])
        except Unavailable as exc:
            log.warning("503: %s", exc)
            response = web.json_response(
                {"error": str(exc), "field": None},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        except web.HTTPException as exc:  # 404, 405 from the router
            response = web.json_response({"error": exc.reason, "field": None}, status=exc.status)
        except Exception:
            log.exception("ingest: unexpected error on %s", request.path)
            response = web.json_response({"error": "internal error", "field": None}, status=500)
        REQUESTS.labels(route, str(response.status)).inc()
        DURATION.labels(route).observe(time.perf_counter() - started)
        return response

    def _admit(self, request: web.Request, route: str) -> None:
        """Authenticate (bearer token, or Zendesk's signature once the body is read) and
        rate-limit a POST, per source or, without authentication, per address."""
        if route == "zendesk" and self.zendesk_secret is not None:
            client: str | None = "zendesk"
        else:
            endpoint = next((e for e in ENDPOINTS if e == route), None)
            try:
                client = self.access.authorize(request.headers.get("Authorization", ""), endpoint)
            except Denied as exc:
                raise RequestError(exc.status, exc.reason) from None
        if self.limiter is not None:
            wait = self.limiter.wait(client or f"address {request.remote}")
            if wait:
                raise RequestError(
                    429, f"over {self.rate_limit:g} requests a second; retry", retry_after=wait
                )

    async def _body(self, request: web.Request, limit: int) -> bytes:
        length = request.content_length
        if length is not None and length > limit:
            raise RequestError(413, f"body of {length} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: web.Request, zendesk: bool = False) -> Any:
        body = await self._body(request, self.max_bytes)
        if zendesk and self.zendesk_secret is not None:
            try:
                check_zendesk(self.zendesk_secret, request.headers, body, self.clock(),
                              self.zendesk_window_s)  # fmt: skip
            except Denied as exc:
                raise RequestError(exc.status, exc.reason) from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"invalid JSON: {exc}") from None
        problem = too_deep(data)
        if problem:
            raise RequestError(400, problem)
        return data

    # -- endpoints

    async def events(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        try:
            event = self._event(data)
        except EventError as exc:
            raise RequestError(400, exc.reason, exc.field) from None
        return await self._deliver([event], "native")

    async def batch(self, request: web.Request) -> web.Response:
        body = await self._body(request, self.batch_max_bytes)
        loop = asyncio.get_running_loop()
        events, errors, stopped = await loop.run_in_executor(None, self.parse_batch, body)
        if errors:
            first = errors[0]
            count = f"{len(errors)} or more" if stopped else str(len(errors))
            raise RequestError(
                400,
                f"{count} invalid event(s), none accepted; first: {first['error']}",
                first["field"],
                **{k: v for k, v in first.items() if k in ("index", "line")},
                errors=errors,
            )
        if not events:
            raise RequestError(400, "no events in the batch")
        return await self._deliver(events, "native")

    def parse_batch(self, body: bytes) -> tuple[list[TicketEvent], list[dict[str, Any]], bool]:
        """(events, errors, stopped early): runs in a worker thread. Stops reading at the
        item cap (413) and after MAX_LISTED_ERRORS errors (stopped early)."""
        events: list[TicketEvent] = []
        errors: list[dict[str, Any]] = []
        for where, item in _batch_items(body, self.batch_max_items):
            try:
                if isinstance(item, ValueError):
                    raise EventError("event", f"invalid JSON: {item}")
                problem = too_deep(item)
                if problem:
                    raise EventError("event", problem)
                events.append(self._event(item))
            except EventError as exc:
                errors.append({**where, "field": exc.field, "error": exc.reason})
                if len(errors) >= MAX_LISTED_ERRORS:
                    return events, errors, True
        return events, errors, False

    async def zendesk(self, request: web.Request) -> web.Response:
        parse = functools.partial(parse_zendesk, statuses=self.statuses)
        return await self._webhook(request, parse, zendesk=True)

    async def freshdesk(self, request: web.Request) -> web.Response:
        return await self._webhook(
            request, functools.partial(parse_freshdesk, statuses=self.statuses)
        )

    async def _webhook(
        self,
        request: web.Request,
        parse: Callable[[Any], HelpdeskUpdate | Ignored],
        zendesk: bool = False,
    ) -> web.Response:
        data = await self._json(request, zendesk)
        try:
            update = parse(data)
            if isinstance(update, Ignored):
                return web.json_response({"accepted": 0, "ignored": update.reason}, status=202)
            previous = None
            if update.tags is not None and update.previous_tags is None and self.tags:
                previous = await self.tags.previous(update.source, update.ticket_id)
            event = to_event(update, previous)
            self._check_time(event)
        except EventError as exc:
            raise RequestError(400, exc.reason, exc.field) from None
        response = await self._deliver([event], update.source)
        if self.tags is not None:
            await self.tags.remember(update)
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if await self.publisher.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "kafka unreachable"}, status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- shared steps

    def _event(self, data: Any) -> TicketEvent:
        if not isinstance(data, Mapping):
            raise EventError("event", f"expected a JSON object, got {json_type(data)}")
        event = event_from_dict(data)
        self._check_time(event)
        return event

    def _check_time(self, event: TicketEvent) -> None:
        """What a wall-clock worker would dead-letter as a future timestamp is refused here."""
        ahead = event.occurred_at - int(self.clock() * 1000)
        if ahead > self.max_skew_ms:
            raise EventError(
                "occurred_at",
                f"future_timestamp: {ahead / 60_000:,.1f} min ahead of this server's clock"
                f" (limit {self.max_skew_ms / 60_000:g} min)",
            )

    async def _deliver(self, events: list[TicketEvent], source: str) -> web.Response:
        if self.enricher is not None:
            events = await self.enricher.enrich(events)
        records = []
        for index, event in enumerate(events):
            try:
                value = self.codec.encode(ticket_event_to_avro(event))
            except RegistryError as exc:
                raise Unavailable(f"schema registry: {exc}") from None
            if len(value) > self.max_event_bytes:
                raise RequestError(
                    413,
                    f"event of {len(value)} bytes is over the limit of {self.max_event_bytes}",
                    index=index,
                )
            records.append((event.ticket_id.encode(), value))
        await self.publisher.send(records)
        EVENTS.labels(source).inc(len(records))
        return web.json_response(
            {"accepted": len(records), "event_ids": [e.event_id for e in events]}, status=202
        )


def too_deep(data: Any, limit: int = MAX_DEPTH) -> str | None:
    """Why `data` (decoded JSON) is nested too deeply, if it is; without recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[Any] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return f"JSON nested deeper than {limit} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)
_SPACE: Final = " \t\n\r"


def _too_many(limit: int) -> RequestError:
    return RequestError(413, f"more than {limit} events in the batch; split it")


def _batch_items(body: bytes, limit: int) -> Iterable[tuple[dict[str, int], Any]]:
    """(where, decoded item or the ValueError) per event: a JSON array, else JSON Lines. An
    array is decoded one item at a time, so a huge one costs no more than `limit` items."""
    if body.lstrip().startswith(b"["):
        yield from _array_items(body, limit)
        return
    lines = body.splitlines()
    if sum(1 for line in lines if line.strip()) > limit:
        raise _too_many(limit)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield {"line": number}, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield {"line": number}, exc


def _array_items(body: bytes, limit: int) -> Iterable[tuple[dict[str, int], Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"invalid JSON: not UTF-8 ({exc.reason})") from None
    at = text.index("[") + 1
    index = 0
    while True:
        while at < len(text) and text[at] in _SPACE:
            at += 1
        if text.startswith("]", at) and index == 0:
            at += 1
            break
        if index >= limit:
            raise _too_many(limit)
        try:
            item, at = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, f"invalid JSON at item {index}: {exc}") from None
        yield {"index": index}, item
        index += 1
        while at < len(text) and text[at] in _SPACE:
            at += 1
        if text.startswith(",", at):
            at += 1
        elif text.startswith("]", at):
            at += 1
            break
        else:
            raise RequestError(400, f"invalid JSON: expected ',' or ']' after item {index - 1}")
    if text[at:].strip(_SPACE):
        raise RequestError(400, "invalid JSON: data after the array")


# --------------------------------------------------------------------------------------------
# Process


def build_ingest(
    settings: Settings,
    topics: Topics,
    token: str | None,
    sources: Mapping[str, Source] | None = None,
    statuses: Mapping[str, Status] | None = None,
) -> Ingest:
    """The production wiring: Kafka publisher, Redis enrichment and tag memory; `statuses` are the
    policy's custom help-desk statuses (the command line loads the policy)."""
    conn = settings.connectors
    secret = conn.zendesk_webhook_secret
    redis = settings.redis.async_client()
    breaker = Breaker(conn.enrich_timeout_ms / 1000, conn.enrich_retry_seconds)
    return Ingest(
        publisher=KafkaPublisher(settings, topics.ticket_events, conn.ingest_delivery_timeout_ms),
        codec=codec_for("TicketEvent", settings, topics),
        token=token,
        enricher=Enricher(redis, conn.enrich_key_pattern, breaker, conn.enrich_cache_seconds),
        tags=TagMemory(redis, conn.ingest_tags_prefix, conn.ingest_tags_ttl_seconds, breaker),
        max_bytes=conn.ingest_max_bytes,
        batch_max_bytes=conn.ingest_batch_max_bytes,
        max_event_bytes=settings.max_event_bytes,
        max_skew_ms=settings.max_clock_skew_ms,
        sources=sources,
        zendesk_secret=secret.encode() if secret else None,
        zendesk_window_s=conn.zendesk_signature_window_s,
        rate_limit=conn.ingest_rate_limit,
        rate_burst=conn.ingest_rate_burst,
        batch_max_items=conn.ingest_batch_max_items,
        statuses=statuses,
    )


async def serve(ingest: Ingest, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, finish in-flight requests, flush."""
    mark_component("ingest")
    runner = web.AppRunner(ingest.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    announce(f"listening on http://{host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        ingest.publisher.close()
        if ingest.enricher is not None:
            with contextlib.suppress(Exception):
                await ingest.enricher.client.aclose()


def run_ingest(
    settings: Settings,
    topics: Topics,
    host: str,
    port: int,
    token: str | None,
    sources: Mapping[str, Source] | None = None,
    statuses: Mapping[str, Status] | None = None,
) -> int:
    ingest = build_ingest(settings, topics, token, sources, statuses)

    def announce(text: str) -> None:
        names = sorted(ingest.access.sources)
        auth = f"bearer tokens of {', '.join(names)}" if names else "NONE (--insecure-no-auth)"
        if ingest.zendesk_secret is not None:
            auth += ", Zendesk signatures"
        kafka = redact_url(settings.kafka.bootstrap)
        sys.stderr.write(
            f"escalator ingest: {text} -> {topics.ticket_events} at {kafka}, auth {auth}\n"
        )
        sys.stderr.flush()

    asyncio.run(serve(ingest, host, port, announce))
    return 0
