"""Kafka client configuration by role, in one place: what each kind of client needs for the
pipeline's guarantees. A component adds only what is its own (a group id, an error callback,
a linger that suits it); connection and security come from the settings."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

from streams.runtime.settings import Settings


def committed_reader(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """A consumer that sees committed records only and never commits on its own: the sinks,
    `escalator alerts`, the worker's restore, tail, explain --live and the demo's feed."""
    return {
        **settings.kafka.confluent(),
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        **extra,
    }


def gap_reader(settings: Settings, group: str) -> dict[str, Any]:
    """The Faust runtime's reader of what Faust's consumer skipped (faust_offsets): assigned
    partitions only, never committing, reading what that at-least-once consumer reads."""
    return {
        **settings.kafka.confluent(),
        "group.id": f"{group}-gap-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_uncommitted",
        "auto.offset.reset": "earliest",
    }


def worker_consumer(settings: Settings) -> dict[str, Any]:
    """The worker's group consumer: offsets go with its transactions, never auto-committed."""
    exactly_once = settings.processing_guarantee == "exactly_once"
    return {
        **settings.kafka.confluent(),
        "group.id": settings.app_id,
        # read_committed also makes the committed-offset fetch wait for a previous
        # owner's pending transaction (KIP-447 require_stable) before we restore.
        "isolation.level": "read_committed" if exactly_once else "read_uncommitted",
        "queued.max.messages.kbytes": 8192,  # prefetch ~2 s of events, not librdkafka's 64 MB
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": min(3000, settings.session_timeout_ms // 3),
        # Incremental rebalances: partitions that stay put keep processing.
        "partition.assignment.strategy": "cooperative-sticky",
    }


def idempotent_producer(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A producer that never duplicates or reorders on retry, keyed records partitioned with
    murmur2 (as Java clients and aiokafka do), so a ticket lands in the same partition
    whichever tool produced it: ingest, replay, the sinks' dead-letter queues."""
    return {
        **settings.kafka.confluent(),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        **extra,
    }


def transactional_producer(
    settings: Settings, transactional_id: str, **extra: Any
) -> dict[str, Any]:
    """A producer whose records and consumer offsets commit together (KIP-447)."""
    return {
        **settings.kafka.confluent(),
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        **extra,
    }


def worker_producer(settings: Settings) -> dict[str, Any]:
    """The worker's producer: transactional under exactly-once, else idempotent alone."""
    config = {
        **settings.kafka.confluent(),
        "enable.idempotence": True,
        "acks": "all",
        # Records wait this long to share a produce request; a commit sends what waits.
        "linger.ms": settings.producer_linger_ms,
        "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": max(2 * settings.max_event_bytes, 1_048_588),  # DLQ letters
        "delivery.report.only.error": True,
    }
    if settings.processing_guarantee == "exactly_once":
        config["transactional.id"] = transactional_id(settings)
        # A crashed worker's open transaction holds back read_committed readers of its
        # partitions until it times out, unless the same instance restarts first.
        config["transaction.timeout.ms"] = max(settings.session_timeout_ms, 10_000)
    return config


def transactional_id(settings: Settings) -> str:
    """Stable per instance, so a restarted instance aborts its own open transaction at once
    (init_transactions) instead of readers waiting out transaction.timeout.ms. Zombies are
    fenced by the group generation (KIP-447), not by this id."""
    instance = settings.instance_id
    if not instance:
        where = hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
        instance = f"{socket.gethostname()}-{where}"
    return f"{settings.app_id}-worker-{instance}"


def admin(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An admin client: topic creation and the start-up checks."""
    return {**settings.kafka.confluent(), **extra}
