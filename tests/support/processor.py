"""Driving a TicketProcessor without Kafka: its topics and codecs, a policy's backfill horizon,
sending an event, and what a partition's due index holds."""

from __future__ import annotations

import dataclasses
from typing import Any

from schemas.records import ticket_event_to_avro
from streams.runtime.processor import Out, TicketProcessor
from streams.runtime.topics import Topics
from streams.sla.events import TicketEvent
from streams.sla.policy import Policy, Tracking
from tests.support.stores import DictStore

CLOSED_RETENTION_MS = Tracking().closed_retention
TOPICS = Topics()
CODEC_NAMES = ("TicketEvent", "Escalation", "PriorityBump", "Reminder", "DeadLetter")


def with_horizon(policy: Policy, horizon: int) -> Policy:
    tracking = Tracking(backfill_horizon=f"{horizon // 1000}s")
    return dataclasses.replace(policy, spec=policy.spec.model_copy(update={"tracking": tracking}))


def raw(codecs: dict[str, Any], e: TicketEvent) -> bytes:
    encoded: bytes = codecs["TicketEvent"].encode(ticket_event_to_avro(e))
    return encoded


def send(
    proc: TicketProcessor,
    store: DictStore,
    codecs: dict[str, Any],
    e: TicketEvent,
    partition: int = 0,
    offset: int = 0,
) -> list[Out]:
    key = e.ticket_id.encode()
    return proc.on_event(store, raw(codecs, e), key, partition, offset, e.occurred_at)


def index_of(proc: TicketProcessor, p: int) -> tuple[object, ...]:
    """What a due index holds: its live entries, gauges and orphans (not superseded ones)."""
    scheduled = proc.scheduled.get(p, {})
    live = sorted(e for e in proc.due.get(p, []) if scheduled.get(e[1]) == e[0])
    assert live == sorted((at, key) for key, at in scheduled.items())
    metrics = proc.metrics
    gauges = None
    if metrics is not None:  # a count back at 0 is the same gauge as no count
        gauges = ({k: n for k, n in metrics.tickets.get(p, {}).items() if n}, metrics.keys.get(p))
    return live, gauges, proc.orphans.get(p, [])
