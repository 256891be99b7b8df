"""A steady rate of live ticket events for a wall-clock worker, produced by a process of its own
(bench/pipeline.py --latency-under-load): the producer's CPU never stalls the bench's own
latency consumer.

The load is a pool of tickets (`LOAD_TICKETS`, ids ``W00000``...): each gets CREATED, then an
agent reply, then alternating customer and agent replies, stamped with the wall clock. At
5,000 events/s a ticket gets an event every 4 s, so its first response is always in time:
the load is work for the worker (decode, engine, state, changelog) and never escalates, and
the only breaches on the output are the ones the bench measures.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as StopEvent

from streams.sla.events import EventType, TicketEvent

LOAD_TICKETS = 20_000
PACE_S = 0.005  # how often the producer catches up with the rate
REPLIES = (EventType.AGENT_REPLIED, EventType.CUSTOMER_REPLIED)


def load_event(count: int, now: int) -> TicketEvent:
    """The load's `count`-th event, stamped `now`: tickets in turn, CREATED on the first
    pass over the pool, then an agent reply, then customer and agent replies alternating."""
    cycle, ticket = divmod(count, LOAD_TICKETS)
    kind = EventType.CREATED if cycle == 0 else REPLIES[cycle % 2 == 0]
    return TicketEvent(event_id=f"W{count}", ticket_id=f"W{ticket:05d}", type=kind,
                       occurred_at=now)  # fmt: skip


def _produce(topic: str, rate: float, stop: StopEvent, sent: Synchronized[int]) -> None:
    from confluent_kafka import Producer

    from schemas.codec import codec_for
    from schemas.records import ticket_event_to_avro
    from streams.runtime.kafka_config import idempotent_producer
    from streams.runtime.settings import load_settings

    settings = load_settings()
    codec = codec_for("TicketEvent", settings)
    producer = Producer(idempotent_producer(settings))
    started = time.monotonic()
    count = 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        now = int(time.time() * 1000)
        while count < due:
            event = load_event(count, now)
            value = codec.encode(ticket_event_to_avro(event))
            try:
                producer.produce(topic, key=event.ticket_id.encode(), value=value)
            except BufferError:
                producer.poll(0.1)
                continue
            count += 1
        sent.value = count
        producer.poll(0)
        time.sleep(PACE_S)
    producer.flush(30)


@dataclass
class SteadyLoad:
    """`rate` events/s onto `topic` until stopped; `sent` and `seconds` say what it achieved."""

    topic: str
    rate: float
    started: float = 0.0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process holding librdkafka threads
        self._stop = ctx.Event()
        self._sent = ctx.Value("q", 0)
        self._proc = ctx.Process(
            target=_produce, args=(self.topic, self.rate, self._stop, self._sent), daemon=True
        )

    def start(self) -> None:
        self._proc.start()
        self.started = time.monotonic()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def achieved(self) -> float:
        """Events/s produced so far."""
        return self.sent / max(time.monotonic() - self.started, 1e-9)

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started
        self._stop.set()
        self._proc.join(60)
        if self._proc.is_alive():
            self._proc.kill()
