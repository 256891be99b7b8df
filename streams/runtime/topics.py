"""Topic names and their creation: one place so worker, replay, sinks and tests agree.

All pipeline topics have the same partition count: the worker sends every output
to the partition of the input it came from, which keeps each output inside the
transaction of its source partition under exactly-once processing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.runtime import kafka_config
from streams.runtime.settings import Settings

# Avro record type -> the Topics property naming the one topic it is written to.
RECORD_TOPICS = {
    "TicketEvent": "ticket_events",
    "Escalation": "escalations",
    "PriorityBump": "priority_bumps",
    "Reminder": "reminders",
    "OpsAlert": "ops_alerts",
    "DeadLetter": "dlq",
    "WebhookDeadLetter": "webhook_dlq",
    "TicketBoard": "board",
}
# A changelog's compaction (README, "State and its changelog"): a segment is compacted only
# once it is closed, so it is rolled hourly rather than at Kafka's 7 days or 1 GiB, and the
# cleaner runs once a tenth of a segment's records are superseded rather than half. A restore
# then reads about one record per ticket plus the last hour's writes.
COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": str(3_600_000),
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def ticket_events(self) -> str:
        return self.name("ticket-events")

    @property
    def escalations(self) -> str:
        return self.name("escalations")

    @property
    def priority_bumps(self) -> str:
        return self.name("priority-bumps")

    @property
    def reminders(self) -> str:
        return self.name("reminders")

    @property
    def shadow_escalations(self) -> str:
        """What a candidate policy (`escalator worker --shadow-policy`) would have sent:
        its escalations, bumps and reminders, each as a record of its usual Avro type (the
        schema id in each value says which: streams.runtime.processor.decode_shadow). No
        sink reads it
        by default."""
        return self.name("shadow-escalations")

    @property
    def board(self) -> str:
        """What the live board shows of each ticket (streams.sla.board.BoardRecord), from the
        worker, in the transaction of the input that changed it; compacted (the latest record
        per ticket, a tombstone once the ticket leaves the worker's store). The Redis sink
        projects it (connectors.sinks.redis_board)."""
        return self.name("ticket-board")

    def compacted(self) -> list[str]:
        """Topics that keep the latest record per key, created with COMPACTION."""
        return [self.board]

    @property
    def ops_alerts(self) -> str:
        return self.name("ops-alerts")

    @property
    def queue_stats(self) -> str:
        """Per-queue counts from the worker for the alerts process (streams.runtime.queue_stats)."""
        return self.name("queue-stats")

    @property
    def dlq(self) -> str:
        return self.name("ticket-events-dlq")

    @property
    def webhook_dlq(self) -> str:
        """What the webhook sink could not deliver (connectors.sinks.webhook)."""
        return self.name("webhook-dlq")

    def for_record(self, name: str) -> str:
        """The topic records of Avro type ``name`` are written to (one each): what the
        schema registry's TopicNameStrategy names their subject after."""
        return str(getattr(self, RECORD_TOPICS[name]))

    @property
    def redis_sink_dlq(self) -> str:
        """What the Redis sink could not decode or apply (connectors.sinks.redis_board)."""
        return self.name("redis-sink-dlq")

    def pipeline(self) -> list[str]:
        """Topics that must share the partition count of ticket-events."""
        return [
            self.ticket_events,
            self.escalations,
            self.priority_bumps,
            self.reminders,
            self.dlq,
            self.queue_stats,
            self.shadow_escalations,
            self.board,
        ]

    def all(self) -> list[str]:
        return [*self.pipeline(), self.ops_alerts, self.webhook_dlq, self.redis_sink_dlq]


def ensure_topics(
    settings: Settings,
    topics: Topics,
    names: Iterable[str] | None = None,
    timeout: float = 30.0,
    compact: bool = False,
    config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create missing topics with the configured partitions; returns the names created.
    `compact`: keep the last record per key (a changelog), not the last week; `config`: more
    topic settings for the created topics.

    An existing topic with a different partition count is a configuration error:
    co-partitioning is what keeps a ticket's events, state and outputs together.
    """
    admin = AdminClient(kafka_config.admin(settings))
    wanted = list(names) if names is not None else topics.all()
    existing = admin.list_topics(timeout=timeout).topics
    for name in wanted:
        meta = existing.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) != settings.partitions:
            raise ValueError(
                f"topic {name} has {len(meta.partitions)} partitions but "
                f"ESCALATOR_PARTITIONS={settings.partitions}; all pipeline topics must match"
            )
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    settings_of = {"max.message.bytes": str(max(2 * settings.max_event_bytes, 1_048_588))}
    compacted = {**settings_of, **COMPACTION, **(config or {})}
    if compact:
        settings_of.update(COMPACTION)
    settings_of.update(config or {})
    always = set(topics.compacted())
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                settings.partitions,
                settings.replication,
                config=compacted if name in always else settings_of,
            )  # fmt: skip
            for name in missing
        ],
        operation_timeout=timeout,
    )
    for future in futures.values():
        try:
            future.result()
        except Exception as exc:  # TOPIC_ALREADY_EXISTS from a racing worker is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return missing
