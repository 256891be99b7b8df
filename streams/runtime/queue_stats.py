"""The `queue-stats` topic: what the worker counts per queue, for the `escalator alerts` process.

The worker cannot aggregate queues itself: under exactly-once every output must go to the
partition of the input it came from, and one queue's tickets are spread over all partitions.
So for each ticket CREATED, each RESOLVED and each SLA breach escalation it sends one small
message to `queue-stats` on the source partition, in the same transaction as its other
outputs; the alerts process reads all partitions and aggregates.

Format (internal topic, JSON object, UTF-8; key = the queue, no key for heartbeats):

    {"v": 1, "kind": "created" | "resolved" | "breached" | "heartbeat",
     "queue": "email/billing", "at": 1793631600000, "wm": 1793631605000, "id": "c:evt-123"}

- ``at``: event time of what was counted (occurred_at of the event; due_at of the breach).
- ``wm``: the partition's clock when it was sent: the worker's event-time watermark of the
  partition, or its wall clock (live mode). The alerts watermark is built from these.
- ``id``: de-duplication id: ``c:<event_id>``, ``r:<event_id>``, ``b:<escalation_id>``.
- heartbeat: no queue/at/id; sent on clock ticks so a partition with no tickets still
  moves the watermark.
Readers ignore unknown fields; a new incompatible layout gets a new ``v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streams.sla.queues import QueueStat, StatKind

VERSION = 1
HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class StatMessage:
    wm: int
    stat: QueueStat | None  # None for a heartbeat


def encode_stat(stat: QueueStat, wm: int) -> bytes:
    # orjson writes an enum member as its value (`.value` is a slow property)
    return orjson.dumps(
        {"v": VERSION, "kind": stat.kind, "queue": stat.queue, "at": stat.at, "wm": wm,
         "id": stat.id}
    )  # fmt: skip


def encode_heartbeat(wm: int) -> bytes:
    return orjson.dumps({"v": VERSION, "kind": HEARTBEAT, "wm": wm})


def decode_stat(raw: bytes | None) -> StatMessage:
    """Decode one message; ValueError with a reason if it is not a queue stat."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ValueError(f"not a version {VERSION} queue stat")
    wm = data.get("wm")
    if type(wm) is not int:
        raise ValueError("no integer 'wm'")
    kind = data.get("kind")
    if kind == HEARTBEAT:
        return StatMessage(wm, None)
    try:
        if not isinstance(kind, str):
            raise ValueError
        stat_kind = StatKind(kind)
    except ValueError:
        raise ValueError(f"unknown kind {kind!r}") from None
    queue, at, ident = data.get("queue"), data.get("at"), data.get("id")
    if not isinstance(queue, str) or type(at) is not int or not isinstance(ident, str):
        raise ValueError("needs string 'queue', integer 'at' and string 'id'")
    return StatMessage(wm, QueueStat(queue, stat_kind, at, ident))
