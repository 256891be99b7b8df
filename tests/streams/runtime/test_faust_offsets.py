"""BrokerReader's handling of the broker's transient answers (a fake consumer; the real
broker is in tests/integration/test_faust_runtime.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.runtime import faust_offsets
from streams.runtime.faust_offsets import BrokerReader
from streams.runtime.settings import load_settings


class Watermarks:
    """Answers get_watermark_offsets with the queued errors first, then (low, high)."""

    def __init__(self, errors: list[int], low: int) -> None:
        self.errors = errors
        self.low = low
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return self.low, self.low + 10


def reader(tmp_path: Path, client: Watermarks) -> BrokerReader:
    out = BrokerReader(load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)}), "t", "g")
    out.consumer = client  # type: ignore[assignment]
    return out


def test_the_earliest_offset_is_asked_again_while_leadership_settles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust_offsets.time, "sleep", lambda s: None)
    client = Watermarks([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE], 7)
    assert reader(tmp_path, client)._earliest(TopicPartition("t", 0)) == 7
    assert client.calls == 3


def test_a_lasting_or_other_error_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust_offsets.time, "sleep", lambda s: None)
    client = Watermarks([KafkaError.TOPIC_AUTHORIZATION_FAILED], 0)
    with pytest.raises(KafkaException):
        reader(tmp_path, client)._earliest(TopicPartition("t", 0))
    assert client.calls == 1

    monkeypatch.setattr(faust_offsets, "READ_TIMEOUT_S", 0.0)
    client = Watermarks([KafkaError.NOT_LEADER_FOR_PARTITION] * 5, 0)
    with pytest.raises(KafkaException):
        reader(tmp_path, client)._earliest(TopicPartition("t", 0))
    assert client.calls == 1
