"""Which Redis errors the Redis sink retries (an outage) and which it blames on the records
(then applied one by one, the failing one parked); a stand-in writer, no Kafka or Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from confluent_kafka import TopicPartition

from connectors.sinks.board_store import Applied, Update
from connectors.sinks.redis_board import RedisSink, SinkOptions
from streams.runtime.settings import load_settings
from streams.runtime.topics import Topics


class Writer:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def apply(self, batch: list[Update]) -> Applied:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Applied()


@pytest.fixture
def sink() -> Any:
    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    made = RedisSink(settings, Topics(), SinkOptions("g", backoff_cap_s=0.01))
    made._sleep = lambda seconds: None  # type: ignore[method-assign]
    yield made
    made.consumer.close()


@pytest.mark.parametrize(
    "error",
    [redis.exceptions.ReadOnlyError("READONLY"), redis.exceptions.OutOfMemoryError("OOM"),
     redis.ConnectionError("down")],
)  # fmt: skip
def test_redis_refusing_every_write_is_retried(sink: Any, error: Exception) -> None:
    sink.writer = Writer(error, error)
    assert sink._apply([]) is True
    assert sink.writer.calls == 3


def test_redis_refusing_one_command_is_the_records_fault(sink: Any) -> None:
    sink.writer = Writer(redis.ResponseError("WRONGTYPE Operation against a key"))
    with pytest.raises(redis.ResponseError):
        sink._apply([])
    assert sink.writer.calls == 1


class Positions:
    """A consumer whose fetcher has seen the end of some partitions only (high -1: not yet)."""

    def __init__(self, ends: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.ends = ends

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.ends]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.ends[tp.topic, tp.partition][0])
                for tp in partitions]  # fmt: skip

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, self.ends[tp.topic, tp.partition][1]

    def close(self) -> None:
        pass


def test_lag_is_unknown_until_every_partitions_end_is_known(sink: Any) -> None:
    board = Topics().name("ticket-board")
    sink.consumer.close()
    sink.consumer = Positions({(board, 0): (716, 716), (board, 1): (-1001, -1)})
    assert sink._lag() == {}  # the heartbeat's -1: not "caught up" with a partition unread
    sink.consumer = Positions({(board, 0): (716, 716), (board, 1): (-1001, 169)})
    assert sink._lag() == {"ticket-board": 169}
    sink.consumer = Positions({(board, 0): (716, 716), (board, 1): (169, 169)})
    assert sink._lag() == {"ticket-board": 0}
