"""The Faust runtime's pieces that need no broker (the pipeline tests run it on a real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.faust_runtime import FaustRuntime, TableStore, clock_topic, guarantee
from streams.runtime.settings import ConfigError, load_settings
from streams.runtime.topics import Topics
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import load_policy


def test_at_least_once_is_the_default_and_exactly_once_is_refused() -> None:
    assert guarantee({}) == "at_least_once"
    assert guarantee({"ESCALATOR_PROCESSING_GUARANTEE": "at_least_once"}) == "at_least_once"
    with pytest.raises(ConfigError, match="at-least-once only") as refused:
        guarantee({"ESCALATOR_PROCESSING_GUARANTEE": "exactly_once"})
    assert "\n" not in str(refused.value)


def test_writes_wait_for_apply_and_reads_see_them_first() -> None:
    table: dict[bytes, bytes] = {b"t1": b"old", b"t2": b"gone soon"}
    store = TableStore(table)
    store.put(b"t1", b"new")
    store.delete(b"t2")
    store.delete(b"never-there")
    assert store.get(b"t1") == b"new" and store.get(b"t2") is None
    assert table == {b"t1": b"old", b"t2": b"gone soon"}  # nothing written before delivery
    store.apply()
    assert table == {b"t1": b"new"}
    assert store.get(b"t1") == b"new" and not store.held


def test_the_table_and_its_changelog_keep_the_state_bytes(tmp_path: Path) -> None:
    """Raw codecs: a json codec fails every changelog record at recovery (seen on a rebalance
    before the table's types were bytes)."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_APP_ID": "x"})
    runtime = FaustRuntime(settings, load_policy(), Topics(""), event_time=False)
    changelog = runtime.table.changelog_topic
    assert changelog.get_topic_name() == "x-tickets-changelog"  # the loop's changelog topic
    assert (changelog.key_serializer, changelog.value_serializer) == ("raw", "raw")
    assert runtime.table.key_serializer == runtime.table.value_serializer == "raw"
    assert clock_topic(settings) == "x-clock"
    status, body = runtime.readiness()
    assert status == 503 and b'"ready": false' in body


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: float | None = None


@dataclass
class FakeEvent:
    message: FakeMessage


class HeldProducer:
    """Sends whose delivery the test decides."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, asyncio.Future[None]]] = []

    async def send(self, topic: str, key: Any, value: Any, partition: int, *_: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, future))
        return future


class FakeStream:
    def __init__(self, events: list[FakeEvent]) -> None:
        self.items = events

    async def events(self) -> AsyncIterator[FakeEvent]:
        for event in self.items:
            yield event


async def test_state_reaches_the_table_only_after_the_outputs_are_delivered(
    tmp_path: Path,
) -> None:
    """The no-loss rule of at-least-once: a state that has seen an event implies its outputs
    are on Kafka, so a crash before delivery repeats the event instead of dropping them."""
    settings = load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)})
    topics = Topics("")
    runtime = FaustRuntime(settings, load_policy(), topics, event_time=True)
    table: dict[bytes, bytes] = {}
    runtime.store.table = table
    producer = HeldProducer()
    runtime.app._producer = producer
    codec = codec_for("TicketEvent", settings)
    created = TicketEvent("e1", "T-1", EventType.CREATED, 1_767_000_000_000,
                          tags_added=("legal",), channel="email")  # fmt: skip
    message = FakeMessage(topics.ticket_events, 2, 0, b"T-1",
                          codec.encode(ticket_event_to_avro(created)))  # fmt: skip
    agent = asyncio.create_task(runtime._tickets(FakeStream([FakeEvent(message)])))
    while not producer.sent:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert {topic for topic, _, _ in producer.sent} >= {topics.escalations}  # legal: escalated
    assert all(partition == 2 for _, partition, _ in producer.sent)  # the input's partition
    assert table == {} and not agent.done()  # held while the outputs are in flight
    for _, _, future in producer.sent:
        future.set_result(None)
    await asyncio.wait_for(agent, 5)
    assert list(table) == [b"T-1"]
