"""`escalator sink webhook`: escalations to HTTP receivers (Slack-compatible JSON, signed).

Reads `escalations` (and `priority-bumps` when a target wants them) with a read_committed
consumer, posts each record to every target whose conditions it meets, retries connection
errors, timeouts, 408, 429 (honouring Retry-After) and 5xx with exponential backoff and
full jitter, and parks what keeps failing (or is rejected with another 4xx) on
`webhook-dlq` with the last error. An offset is committed only once its message is
delivered to every matching target or parked, so a crash re-sends at most the messages in
flight: at-least-once delivery; receivers de-duplicate on (X-Escalator-Event,
X-Escalator-Escalation-Id).

One asyncio loop runs the HTTP requests (aiohttp, a semaphore per target bounds its
concurrency) and polls the confluent-kafka consumer without blocking. When too many
messages are unfinished the assigned partitions are paused, so a dead receiver slows
reading without the consumer leaving its group.

Targets are isolated from each other: a target's circuit opens after `circuit_failures`
consecutive failed requests and then parks its deliveries at once for `circuit_open_s`
instead of retrying them, and a target with `max_pending` deliveries waiting or retrying
parks the next ones at once. So a dead, hung or slow target cannot fill the window that
every other target's messages go through. A record the sink cannot handle at all (say a
timestamp no date can hold) is parked with the error too: no record stops the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from connectors.sinks.webhook_targets import (
    ATTEMPT_HEADER,
    EVENT_HEADER,
    EVENTS,
    ID_HEADER,
    SCHEMAS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Circuit,
    Target,
    backoff,
    message,
    retry_after,
    sign,
    verdict,
)
from schemas.codec import AvroCodec, DecodeError, codec_for
from streams.runtime.kafka_config import committed_reader, idempotent_producer
from streams.runtime.loop import ConsumeLoop
from streams.runtime.metrics import VERSION
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics

log = logging.getLogger("escalator.sink.webhook")

COMPONENT = "sink-webhook"
READY = "ready"

DELIVERIES = Counter(
    "escalator_webhook_deliveries_total",
    "HTTP requests to webhook targets by result: ok, http_3xx, http_4xx, http_429, http_5xx, "
    "timeout, connection_error",
    ["target", "outcome"],
)
RETRIES = Counter(
    "escalator_webhook_retries_total", "Requests retried after a retryable failure", ["target"]
)
DEAD_LETTERS = Counter(
    "escalator_webhook_dead_letters_total",
    "Messages parked on webhook-dlq (target is empty for undecodable messages)",
    ["target"],
)
DURATION = Histogram(
    "escalator_webhook_delivery_duration_seconds",
    "Duration of one HTTP request to a webhook target",
    ["target"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _outcome(status: int | None, timed_out: bool) -> str:
    if status is None:
        return "timeout" if timed_out else "connection_error"
    if 200 <= status < 300:
        return "ok"
    return "http_429" if status == 429 else f"http_{min(status // 100, 5)}xx"


@dataclass(frozen=True)
class Outcome:
    """The end of delivering one message to one target (`response`: the body of a success
    when asked for, e.g. a GET's)."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str = ""
    response: bytes = b""


# One attempt of a request: (HTTP status or None, error text, Retry-After seconds, body read).
Attempt = tuple[int | None, str, float | None, bytes]


class _Unhandled(Exception):
    """A record the sink cannot handle at all: parked with no target."""


class _CircuitOpen(Exception):
    """The target's circuit is open: the delivery parks without a request."""


class Deliverer:
    """Posts a body to a target until it is accepted, rejected or out of attempts."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: Sequence[Target],
        key: bytes | None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.session = session
        self.key = key
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.slots = {t.name: asyncio.Semaphore(t.concurrency) for t in targets}
        self.circuits = {t.name: Circuit.of(t, clock) for t in targets}
        self.pending = dict.fromkeys(self.slots, 0)

    def headers(self, event: str, escalation_id: str, body: bytes, attempt: int) -> dict[str, str]:
        """Signed per attempt, so a retry carries a fresh timestamp for the replay window."""
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            EVENT_HEADER: event,
            ID_HEADER: escalation_id,
            ATTEMPT_HEADER: str(attempt),
        }
        if self.key is not None:
            headers[SIGNATURE_HEADER] = sign(self.key, timestamp, body)
        return headers

    async def deliver(self, target: Target, event: str, escalation_id: str, body: bytes) -> Outcome:
        """Post a signed webhook body (signed anew for each attempt)."""

        async def post(attempt: int) -> Attempt:
            headers = self.headers(event, escalation_id, body, attempt)
            return await self.send(target, "POST", target.url, body, headers)

        return await self.bounded(target, post)

    async def request(
        self,
        target: Target,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Outcome:
        """One request (any method, fixed headers) with the target's retries, backoff,
        Retry-After and circuit; a success's response body is in the Outcome. For sinks
        that talk to an API rather than post to a webhook (connectors.sinks.helpdesk_writeback)."""
        return await self.bounded(
            target, lambda _n: self.send(target, method, url, body, headers, read_all=True)
        )

    async def bounded(self, target: Target, once: Callable[[int], Awaitable[Attempt]]) -> Outcome:
        """Never waits behind more than `max_pending` deliveries to the same target: past that
        the delivery parks at once, and so does every one while the target's circuit is open."""
        pending = self.pending[target.name]
        if pending >= target.max_pending:
            return Outcome(False, 0, None, f"backlog full: {pending} deliveries pending")
        self.pending[target.name] = pending + 1
        try:
            return await self.attempts(target, once)
        finally:
            self.pending[target.name] -= 1

    async def attempts(self, target: Target, once: Callable[[int], Awaitable[Attempt]]) -> Outcome:
        """Call `once(attempt)` until it succeeds, is rejected or runs out of attempts."""
        circuit = self.circuits[target.name]
        attempt = 0
        status: int | None = None
        error = ""
        while True:
            attempt += 1
            try:
                status, error, hint, payload = await once(attempt)
            except _CircuitOpen:
                why = circuit.why() + (f"; last: {error}" if error else "")
                return Outcome(False, attempt - 1, status, why)
            result = "retry" if status is None else verdict(status)
            if result == "retry":
                circuit.failed()
            else:  # a 4xx is the target's answer: it is up
                circuit.succeeded()
            if result == "delivered":
                return Outcome(True, attempt, status, response=payload)
            if result == "reject" or attempt >= target.max_attempts:
                return Outcome(False, attempt, status, error)
            delay = backoff(attempt, target.backoff_base_s, target.backoff_cap_s, self.rand)
            if hint is not None:
                delay = min(max(delay, hint), target.backoff_cap_s)
            RETRIES.labels(target.name).inc()
            log.info("%s: attempt %d failed (%s), retrying in %.2fs", target.name, attempt,
                     error, delay)  # fmt: skip
            await self.sleep(delay)

    async def send(
        self,
        target: Target,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        read_all: bool = False,
    ) -> Attempt:
        """One request through the target's concurrency slot and circuit (the body of a
        success is read only with `read_all`)."""
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        status: int | None = None
        error = ""
        hint = None
        payload = b""
        timed_out = False
        async with self.slots[target.name]:
            if not self.circuits[target.name].allow():
                raise _CircuitOpen
            started = time.monotonic()
            try:
                async with self.session.request(
                    method, url, data=body, headers=headers, timeout=timeout,
                    allow_redirects=False,
                ) as response:  # fmt: skip
                    status = response.status
                    if read_all and verdict(status) == "delivered":
                        payload = await response.read()
                    text = (await response.content.read(200)).decode("utf-8", "replace")
                    if verdict(status) != "delivered":
                        error = f"HTTP {status}: {text.strip()}".rstrip(": ")
                        hint = retry_after(response.headers.get("Retry-After"), self.clock())
            except TimeoutError:
                timed_out = True
                error = f"timeout after {target.timeout_s:g}s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
            DURATION.labels(target.name).observe(time.monotonic() - started)
        DELIVERIES.labels(target.name, _outcome(status, timed_out)).inc()
        return status, error, hint, payload


TP = tuple[str, int]


def _where(msg: Message) -> tuple[TP, int]:
    """((topic, partition), offset) of a consumed message."""
    return (msg.topic() or "", msg.partition() or 0), msg.offset() or 0


class OffsetTracker:
    """Offsets in flight per partition; the commit position advances over the leading run of
    finished offsets only, so nothing unfinished is ever committed."""

    def __init__(self) -> None:
        self._pending: dict[TP, dict[int, bool]] = {}
        self._unfinished = 0

    def add(self, tp: TP, offset: int) -> None:
        pending = self._pending.setdefault(tp, {})
        if pending.get(offset) is not False:
            self._unfinished += 1
        pending[offset] = False

    def done(self, tp: TP, offset: int) -> None:
        pending = self._pending.get(tp)
        if pending is not None and pending.get(offset) is False:  # else: revoked meanwhile
            pending[offset] = True
            self._unfinished -= 1

    def advance(self, only: Iterable[TP] | None = None) -> dict[TP, int]:
        """New commit positions (next offset to read) of partitions that moved."""
        moved: dict[TP, int] = {}
        for tp in list(self._pending) if only is None else only:
            pending = self._pending.get(tp, {})
            while pending:
                offset = next(iter(pending))
                if not pending[offset]:
                    break
                del pending[offset]
                moved[tp] = offset + 1
        return moved

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            gone = self._pending.pop(tp, None) or {}
            self._unfinished -= sum(1 for finished in gone.values() if not finished)

    def in_flight(self) -> int:
        """Offsets not committed yet: unfinished ones and the finished ones behind them."""
        return sum(len(p) for p in self._pending.values())

    def unfinished(self) -> int:
        return self._unfinished


def webhook_dead_letter(
    msg: Message,
    escalation_id: str | None,
    target: str | None,
    outcome: Outcome,
    at: int,
) -> dict[str, Any]:
    """Avro dict of a ``WebhookDeadLetter`` for `msg`."""
    kind, stamp = msg.timestamp()
    return {
        "original": msg.value() or b"",
        "original_key": msg.key(),
        "source_topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": stamp if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
        "escalation_id": escalation_id,
        "target": target,
        "attempts": outcome.attempts,
        "status": outcome.status,
        "error": outcome.error,
        "dead_lettered_at": at,
    }


class WebhookSink(ConsumeLoop):
    """The consumer loop; `await run()` until `stop()`. Another HTTP sink subclasses it and
    overrides `dispatch` (what one decoded record becomes), keeping the reading, offsets,
    retries and parking (connectors.sinks.helpdesk_writeback)."""

    kind = "webhook"  # `escalator sink <kind>`: names its output lines and User-Agent
    ready_text = READY

    def __init__(
        self,
        settings: Settings,
        targets: Sequence[Target],
        topics: Topics,
        group: str,
        key: bytes | None,
        start: str = "earliest",
        max_in_flight: int = 1000,
        max_uncommitted: int | None = None,
        grace_s: float = 10.0,
        status_every: float = 60.0,
        out: TextIO = sys.stderr,
    ) -> None:
        super().__init__(out, status_every)
        self.who = f"sink {self.kind}"
        self.settings = settings
        self.targets = list(targets)
        self.topics = topics
        self.group = group
        self.key = key
        self.max_in_flight = max_in_flight
        # Finished messages behind a slow one wait for the commit; this bounds their memory.
        self.max_uncommitted = max_uncommitted or 100 * max_in_flight
        self.grace_s = grace_s
        wanted = {base for t in targets for base in t.topics}
        self.sources = {topics.name(base): base for base in SCHEMAS if base in wanted}
        self.codecs: dict[str, AvroCodec] = {
            base: codec_for(SCHEMAS[base], settings, topics) for base in self.sources.values()
        }
        self.dlq_codec = codec_for("WebhookDeadLetter", settings, topics)
        self.consumer = Consumer(committed_reader(settings, group, **{"auto.offset.reset": start}))
        self.producer = Producer({**idempotent_producer(settings), "linger.ms": 0})
        self.tracker = OffsetTracker()
        self.tasks: dict[asyncio.Task[None], TP] = {}
        self.paused = False
        self.failure: BaseException | None = None
        self.delivered = 0
        self.parked = 0

    def status(self) -> None:
        self.say(
            f"{self.delivered:,} delivered, {self.parked:,} parked, "
            f"{self.tracker.in_flight():,} in flight" + (" (reading paused)" if self.paused else "")
        )

    def healthy(self) -> bool:
        return self.running and self.heartbeat.still_for() < 30

    # ------------------------------------------------------------------ loop

    async def run(self) -> int:  # type: ignore[override]  # the loop's, on an asyncio loop
        connector = aiohttp.TCPConnector(limit=0)
        agent = {"User-Agent": f"escalator-{self.kind}/{VERSION}"}
        async with aiohttp.ClientSession(connector=connector, headers=agent) as session:
            self.deliverer = Deliverer(session, self.targets, self.key)
            return await self.run_async()

    def begin(self) -> None:
        self.consumer.subscribe(
            list(self.sources), on_assign=self._assigned, on_revoke=self._revoked,
            on_lost=self._lost,
        )  # fmt: skip
        self.ready(
            f": {len(self.targets)} targets ({', '.join(t.name for t in self.targets)})"
            f", reading {', '.join(self.sources)} as group {self.group}, "
            f"parking on {self.topics.webhook_dlq}"
            + ("" if self.key or self.kind != "webhook" else ", UNSIGNED")
        )

    def turn(self) -> bool:
        if self.failure is not None:  # a delivery task failed: stop, it is raised by end()
            self.stop()
            return False
        self.producer.poll(0)
        self._flow_control()
        batch = self.consumer.consume(500, 0)
        for msg in batch:
            self._start(msg)
        self._commit(self.tracker.advance(), sync=False)
        return bool(batch)

    async def end(self) -> None:  # type: ignore[override]  # run_async awaits it
        await self._drain()
        if self.failure is not None:
            raise self.failure
        self.status()

    def _flow_control(self) -> None:
        """Pause on unfinished messages, not on uncommitted ones: a message still retrying
        for a slow target holds the commit position, never the other targets' deliveries."""
        unfinished = self.tracker.unfinished()
        uncommitted = self.tracker.in_flight()
        if not self.paused and (
            unfinished >= self.max_in_flight or uncommitted >= self.max_uncommitted
        ):
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif (
            self.paused
            and unfinished < self.max_in_flight // 2
            and uncommitted < self.max_uncommitted // 2
        ):
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    def _start(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise RuntimeError(f"Kafka: {err}")
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", err)
            return
        tp, offset = _where(msg)
        self.tracker.add(tp, offset)
        task = asyncio.get_running_loop().create_task(self._handle(msg, tp[0]))
        self.tasks[task] = tp

        def finished(task: asyncio.Task[None]) -> None:
            if self.tasks.pop(task, None) is None or task.cancelled():
                return  # revoked or stopping: not committed, the next owner reads it again
            exc = task.exception()
            if exc is not None:
                self.failure = self.failure or exc
            else:
                self.tracker.done(tp, offset)

        task.add_done_callback(finished)

    async def _handle(self, msg: Message, topic: str) -> None:
        base = self.sources[topic]
        escalation_id = None
        try:
            record = self.codecs[base].decode(msg.value())  # type: ignore[arg-type]  # None: DLQ
            escalation_id = record["escalation_id"]
            await self.dispatch(msg, base, record)
        except DecodeError as exc:
            await self._park(msg, None, None, Outcome(False, 0, None, str(exc)))
        except _Unhandled as exc:
            await self._park(msg, escalation_id, None, Outcome(False, 0, None, str(exc)))

    async def dispatch(self, msg: Message, base: str, record: Mapping[str, Any]) -> None:
        """Deliver one decoded record from topic `base` to every target that wants it."""
        escalation_id = record["escalation_id"]
        try:
            targets = [t for t in self.targets if t.accepts(base, record)]
            if not targets:
                return
            body = json.dumps(message(base, record), ensure_ascii=False).encode()
        except Exception as exc:  # e.g. a due_at past year 9999: park it, never stop on it
            raise _Unhandled(f"cannot handle the record: {type(exc).__name__}: {exc}") from exc
        event = EVENTS[base]
        results = await asyncio.gather(
            *(self.deliverer.deliver(t, event, escalation_id, body) for t in targets),
            return_exceptions=True,
        )
        for target, outcome in zip(targets, results, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):  # a failure of ours: park, go on
                error = f"cannot deliver: {type(outcome).__name__}: {outcome}"
                outcome = Outcome(False, 0, None, error)
            if outcome.delivered:
                self.delivered += 1
            else:
                await self._park(msg, escalation_id, target.name, outcome)

    async def _park(
        self, msg: Message, escalation_id: str | None, target: str | None, outcome: Outcome
    ) -> None:
        """Produce to webhook-dlq and wait for the broker's ack (the offset commits after)."""
        record = webhook_dead_letter(msg, escalation_id, target, outcome, int(time.time() * 1000))
        value = self.dlq_codec.encode(record)
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_delivery(err: Any, _msg: Any) -> None:
            if not acked.done():
                acked.set_result(err)

        while True:
            try:
                self.producer.produce(
                    self.topics.webhook_dlq, key=msg.key(), value=value, on_delivery=on_delivery
                )
                break
            except BufferError:
                await asyncio.sleep(0.05)
        err = await acked
        if err is not None:
            raise RuntimeError(f"cannot park on {self.topics.webhook_dlq}: {err}")
        DEAD_LETTERS.labels(target or "").inc()
        self.parked += 1
        log.warning(
            "parked %s[%d]@%d for %s after %d attempts: %s", msg.topic(), msg.partition(),
            msg.offset(), target or "(no target)", outcome.attempts, outcome.error,
        )  # fmt: skip

    # ------------------------------------------------------------------ offsets

    def _commit(self, moved: Mapping[TP, int], sync: bool) -> None:
        if not moved:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(moved.items())]
        if sync:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        else:
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.paused = False  # a new assignment starts unpaused
        self.say(f"assigned {len(partitions)} partitions")

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what finished, drop the rest: its next owner delivers it (at least once)."""
        tps = [(p.topic, p.partition) for p in partitions]
        with contextlib.suppress(Exception):  # a failed commit only means a re-send
            self._commit(self.tracker.advance(tps), sync=True)
        self._drop(tps)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop([(p.topic, p.partition) for p in partitions])

    def _drop(self, tps: list[TP]) -> None:
        gone = set(tps)
        for task, tp in list(self.tasks.items()):
            if tp in gone:
                task.cancel()
        self.tracker.forget(gone)

    async def _drain(self) -> None:
        """On stop: let requests in flight finish for a grace period, commit what finished."""
        pending = list(self.tasks)
        if pending:
            await asyncio.wait(pending, timeout=self.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            self._commit(self.tracker.advance(), sync=True)

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)


def run_webhook_sink(sink: WebhookSink) -> int:
    """The `escalator sink webhook` (or `helpdesk`) command body; stops cleanly on
    SIGTERM/SIGINT."""
    return sink.main_serving(sink.settings.connectors, f"sink-{sink.kind}")
