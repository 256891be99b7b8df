"""Queue-level ops alerts on the real broker: event-time worker -> queue-stats -> `escalator
alerts` -> ops-alerts equals the pure core run offline; a SIGKILLed alerts process loses and
repeats nothing."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from random import Random

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.runtime.alerts import OUTCOMES
from streams.runtime.metrics import VERSION
from streams.runtime.queue_stats import decode_stat
from streams.sla.policy import Policy
from streams.sla.queues import QueueAlert
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_to_file
from streams.tools.history import write_history
from streams.tools.replay import replay, tail
from tests.support.alerts import expected_alerts
from tests.support.histories import arrived_late
from tests.support.metrics import metric
from tests.support.pipeline import Pipeline
from tests.support.policies import alerts_policy

pytestmark = pytest.mark.integration


def history(tmp_path: Path) -> tuple[Path, Policy, Path, dict[str, QueueAlert]]:
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=40, days=2, seed=11)  # ~5,400 events, one outage surge
    policy_path, policy = alerts_policy(tmp_path)
    expected = expected_alerts(path, policy)
    kinds = Counter(a.kind for a in expected.values())
    assert len(kinds) == 3 and len(expected) >= 10, kinds
    return path, policy, policy_path, expected


def read_alerts(line: Pipeline, expect: int, timeout: float = 60.0) -> Counter[str]:
    records = line.read("ops-alerts", "OpsAlert", expect=expect, timeout=timeout)
    return Counter(r["alert_id"] for r in records)


def stat_partitions(line: Pipeline) -> dict[str, set[int]]:
    """Queue -> the queue-stats partitions its stats arrived on (read_committed)."""
    consumer = Consumer(
        {
            **line.settings.kafka.confluent(),
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    name = line.topics.queue_stats
    consumer.assign([TopicPartition(name, p, -2) for p in range(line.partitions)])
    seen: dict[str, set[int]] = {}
    idle = time.monotonic()
    try:
        while time.monotonic() - idle < 3:
            msg = consumer.poll(0.25)
            if msg is None or msg.error():
                continue
            idle = time.monotonic()
            stat = decode_stat(msg.value()).stat
            if stat is not None:
                seen.setdefault(stat.queue, set()).add(msg.partition() or 0)
    finally:
        consumer.close()
    return seen


def test_live_alerts_equal_the_offline_core(pipeline: Pipeline, tmp_path: Path) -> None:
    path, policy, policy_path, expected = history(tmp_path)
    worker = pipeline.start_worker("w1", policy=policy_path)
    alerts = pipeline.start_alerts("alerts", policy=policy_path)
    worker.wait_ready()
    alerts.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert bad == 0 and sent > 5000
    seen = read_alerts(pipeline, expect=len(expected))
    assert set(seen) == set(expected), (
        f"missing {sorted(set(expected) - set(seen))[:3]}, "
        f"unexpected {sorted(set(seen) - set(expected))[:3]}"
    )
    assert max(seen.values()) == 1
    # Alerted queues are fed from several partitions: aggregation really is cross-partition.
    partitions = stat_partitions(pipeline)
    alerted = {a.queue for a in expected.values()}
    assert any(len(partitions[q]) >= 2 for q in alerted), {q: partitions[q] for q in alerted}
    # `escalator tail ops-alerts` prints one readable line per alert.
    out = io.StringIO()
    count = tail(pipeline.settings, "ops-alerts", pipeline.topics, from_beginning=True,
                 idle_timeout=3, out=out)  # fmt: skip
    assert count == len(expected)
    lines = out.getvalue().splitlines()
    some = next(iter(expected.values()))
    assert any(some.alert_id in line and some.queue in line and some.kind in line for line in lines)


def test_alerts_process_killed_mid_stream_loses_and_repeats_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path, policy, policy_path, expected = history(tmp_path)
    worker = pipeline.start_worker("w1", policy=policy_path)
    alerts = pipeline.start_alerts("alerts", policy=policy_path)
    worker.wait_ready()
    alerts.wait_ready()
    done = threading.Event()

    def produce() -> None:
        try:
            replay(pipeline.settings, path, pipeline.topics, rate=300, end_tick=True)
        finally:
            done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 30
    before: Counter[str] = Counter()
    while time.monotonic() < deadline and not before:
        time.sleep(1)
        before = read_alerts(pipeline, expect=0, timeout=5)
    alerts.kill()  # SIGKILL mid-stream: an open transaction is aborted, never half-visible
    assert not done.is_set(), "replay finished before the kill: slow it down"
    assert 0 < len(before) < len(expected)
    time.sleep(2)
    restarted = pipeline.start_alerts("alerts", policy=policy_path)
    restarted.wait_ready(after=1)  # same log file: the second 'alerts ready'
    thread.join(120)
    assert done.is_set()
    seen = read_alerts(pipeline, expect=len(expected))
    missing = set(expected) - set(seen)
    duplicated = [k for k, v in seen.items() if v > 1]
    assert not missing, f"{len(missing)} alerts lost, e.g. {sorted(missing)[:3]}"
    assert not duplicated, f"{len(duplicated)} alert ids duplicated, e.g. {duplicated[:3]}"
    assert set(seen) == set(expected)
    assert "rebuilt" in restarted.log_text()


def test_live_alerts_on_a_history_delivered_late_equal_an_arrival_order_backtest(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The same history delivered out of order (one event in 25 held back up to 48 h) and
    replayed in that order: `escalator alerts` raises the alerts `backtest --arrival-order
    --partitions 3` reports, and drops as late the same number of stats, each by its own
    partition's clock (one clock for the file, as the backtest had, dropped one fewer)."""
    path, policy, policy_path, _ = history(tmp_path)
    events = arrived_late(path, Random(0))
    late_path = tmp_path / "arrived.jsonl"
    write_history(late_path, events)
    (report,) = backtest_events([policy], events, arrival_order=True,
                                partitions=pipeline.partitions)  # fmt: skip
    expected = {a.alert_id for a in report.ops_alerts}
    assert len(expected) >= 10 and report.ops_late > 20
    worker = pipeline.start_worker("w1", policy=policy_path)
    alerts = pipeline.start_alerts("alerts", policy=policy_path)
    worker.wait_ready()
    alerts.wait_ready()
    sent, bad = replay(pipeline.settings, late_path, pipeline.topics, end_tick=True)
    assert (sent, bad) == (len(events), 0)
    seen = read_alerts(pipeline, expect=len(expected))
    assert set(seen) == expected and max(seen.values()) == 1
    # Its /metrics count what the backtest counted (every stat came before the end ticks'
    # heartbeats, which the last alerts needed), the alerts by kind, and its watermark.
    port = alerts.web_port
    assert report.ops is not None
    outcomes = {o: metric(port, "escalator_ops_stats_total", outcome=o) for o in OUTCOMES}
    assert outcomes == {"counted": report.ops.added, "late": report.ops_late,
                        "duplicate": 0, "bad": 0}  # fmt: skip
    kinds = Counter(a.kind.value for a in report.ops_alerts)
    assert {k: metric(port, "escalator_ops_alerts_sent_total", kind=k) for k in kinds} == kinds
    # the end ticks moved every partition's clock to the last event time
    last = max(e.occurred_at for e in events)
    watermark = metric(port, "escalator_ops_alerts_watermark_timestamp_seconds")
    assert watermark * 1000 == last - policy.ops_alerts.allowed_lateness, (watermark, last)
    assert metric(port, "escalator_build_info", component="alerts", version=VERSION) == 1
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    alerts.stop()  # its last status line counts the late stats too
    late = re.findall(r"stats read, \d+ alerts sent, ([\d,]+) late,", alerts.log_text())
    assert late and int(late[-1].replace(",", "")) == report.ops_late


def test_alerts_on_a_metrics_port_in_use_stop_with_one_line(pipeline: Pipeline) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # where ESCALATOR_METRICS_HOST listens by default
        taken.listen()
        port = taken.getsockname()[1]
        alerts = pipeline.start_alerts("alerts", port=port)
        assert alerts.proc.wait(90) == 2
    banner = ("escalator alerts: policy ", "%")  # its start-up line, librdkafka's own
    lines = [line for line in alerts.log_text().splitlines()
             if line.strip() and not line.startswith(banner)]  # fmt: skip
    assert lines == [f"escalator alerts: ESCALATOR_METRICS_PORT={port}: cannot listen "
                     "(Address already in use)"], lines  # fmt: skip
