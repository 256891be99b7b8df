"""Which Redis errors the Redis sink retries (an outage) and which it blames on the records
(then applied one by one, the failing one parked); a stand-in writer, no Kafka or Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

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
