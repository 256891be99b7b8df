"""`escalator alerts`'s metrics and probe, with fake clients (the real broker:
tests/integration/test_ops_alerts.py): a batch counts what it read only once its transaction
commits, a rebuild counts nothing, and /healthz follows the loop's heartbeat."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from schemas.codec import codec_for
from streams.runtime.alerts import OUTCOMES, AlertsProcess, Stats
from streams.runtime.liveness import Loop
from streams.runtime.queue_stats import encode_heartbeat, encode_stat
from streams.runtime.settings import load_settings
from streams.runtime.topics import Topics
from streams.sla.policy import load_policy
from streams.sla.queues import (
    AlertKind,
    ClosedWindow,
    PartitionClock,
    QueueAlert,
    QueueStat,
    QueueWindows,
    StatKind,
    alert_id,
)

HOUR = 3_600_000
T0 = 1_790_000_000_000


class Msg:
    def __init__(self, value: bytes, partition: int, offset: int) -> None:
        self._value, self._partition, self._offset = value, partition, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "queue-stats"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class Producer:
    def __init__(self, fail_commit: bool = False) -> None:
        self.fail_commit = fail_commit
        self.sent: list[tuple[str, bytes]] = []
        self.committed = 0

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key))

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit:
            raise RuntimeError("the broker refused the commit")
        self.committed += 1


class Consumer:
    def consumer_group_metadata(self) -> object:
        return object()


class Windows(QueueWindows):
    """Closes each window into the alerts given (the rules have tests of their own)."""

    def __init__(self, alerts: list[QueueAlert]) -> None:
        super().__init__(load_policy().ops_alerts)
        self.raise_alerts = alerts

    def close_until(self, watermark: int) -> list[ClosedWindow]:
        alerts, self.raise_alerts = self.raise_alerts, []
        return [ClosedWindow("billing", 0, 1, 0, 0, 0, tuple(alerts))] if alerts else []


def alert(kind: AlertKind) -> QueueAlert:
    start, end = T0 - HOUR, T0
    return QueueAlert(alert_id(kind, "billing", start, end), kind, "billing", start, end, 9, 1, 3,
                      "surge")  # fmt: skip


def process(producer: Producer, alerts: list[QueueAlert]) -> AlertsProcess:
    """An AlertsProcess on 2 partitions with fake clients."""
    p = AlertsProcess.__new__(AlertsProcess)
    p.settings = load_settings({})
    p.topics = Topics()
    p.config = load_policy().ops_alerts
    p.windows = Windows(alerts)
    p.clock = PartitionClock([0, 1], p.config.allowed_lateness)
    p.stats = Stats()
    p.codec = codec_for("OpsAlert", p.settings, p.topics)
    p.wall_clock = lambda: T0
    p.producer, p.consumer = producer, Consumer()  # type: ignore[assignment]
    p.running = True
    p.heartbeat = Loop()
    return p


def stat(ref: str, at: int) -> QueueStat:
    return QueueStat("billing", StatKind.CREATED, at, f"c:{ref}")


def counts() -> dict[str, float]:
    found = {
        o: REGISTRY.get_sample_value("escalator_ops_stats_total", {"outcome": o}) for o in OUTCOMES
    }
    found |= {
        k.value: REGISTRY.get_sample_value("escalator_ops_alerts_sent_total", {"kind": k.value})
        for k in AlertKind
    }
    return {k: v or 0.0 for k, v in found.items()}


def test_a_batch_counts_its_stats_by_outcome_and_its_alerts_once_committed() -> None:
    producer = Producer()
    p = process(producer, [alert(AlertKind.VOLUME_SURGE), alert(AlertKind.BACKLOG_GROWTH)])
    late_by = p.config.allowed_lateness + 1
    # The rebuild's reading of the committed prefix (AlertsProcess.rebuild): counts nothing.
    before = counts()
    for offset, raw in enumerate([encode_stat(stat("1", T0), T0), encode_heartbeat(T0)]):
        p._take(Msg(raw, 0, offset))  # type: ignore[arg-type]
    assert counts() == before and p.windows.added == 1
    batch = [
        Msg(encode_stat(stat("2", T0), T0), 0, 2),  # counted
        Msg(encode_stat(stat("1", T0), T0), 0, 3),  # duplicate of the rebuilt one
        Msg(encode_stat(stat("3", T0 - late_by), T0), 0, 4),  # late for partition 0's clock
        Msg(b"not a stat", 1, 0),  # bad
        Msg(encode_stat(stat("4", T0 + HOUR), T0 + HOUR), 1, 1),  # counted
        Msg(encode_heartbeat(T0 + HOUR), 1, 2),  # not a stat: no outcome
    ]
    p.process(batch)  # type: ignore[arg-type]
    after = counts()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {"counted": 2, "late": 1, "duplicate": 1, "bad": 1,
                     "VOLUME_SURGE": 1, "BACKLOG_GROWTH": 1, "BREACH_RATE_SPIKE": 0}  # fmt: skip
    assert producer.committed == 1 and len(producer.sent) == 2
    watermark = REGISTRY.get_sample_value("escalator_ops_alerts_watermark_timestamp_seconds")
    assert watermark == (T0 - p.config.allowed_lateness) / 1000  # the slower partition's


def test_a_batch_whose_commit_fails_counts_nothing() -> None:
    p = process(Producer(fail_commit=True), [alert(AlertKind.BREACH_RATE_SPIKE)])
    before = counts()
    batch = [Msg(encode_stat(stat("1", T0), T0), p_, p_) for p_ in (0, 1)]
    with pytest.raises(RuntimeError, match="refused"):
        p.process(batch)  # type: ignore[arg-type]
    assert counts() == before  # the process exits; its successor reads the batch again


def test_healthz_fails_once_the_loop_is_still_for_the_stall_limit() -> None:
    now = [100.0]
    p = process(Producer(), [])
    p.settings = load_settings({"ESCALATOR_LIVENESS_STALL_S": "60"})
    p.heartbeat = Loop(lambda: now[0])
    now[0] += 59
    assert p.healthy()
    now[0] += 2
    assert not p.healthy()
    p.heartbeat.beat()
    assert p.healthy()
    p.stop()
    assert not p.healthy()
