"""The chaos run (bench/chaos.py) for two minutes against real services of its own.

Three workers, ingest, both sinks and a signature-checking receiver while workers and sinks are
SIGKILLed, the broker stops and starts, Redis is killed and restarted and the receiver flaps:
every escalation of the backtest exactly once for a read_committed consumer, the Redis board
equal to the backtest's, every escalation delivered signed, and the DLQs hold only the injected
poison. The run starts and stops its own broker and Redis, so the shared ones are untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_chaos

pytestmark = pytest.mark.integration


@pytest.mark.timeout(420)
def test_chaos_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, minutes=2.0, rate=100.0, seed=18)
    report = "\n".join(result.lines())
    print(report)  # the figures, with -s
    assert result.error is None, report
    assert result.faults["broker_restart"] == 1 and result.faults["redis_restart"] == 1, report
    assert result.faults["sigkill_worker"] + result.faults["sigkill_sink"] >= 5, report
    assert result.expected > 100, report  # a history that escalates, so the checks mean something
    assert result.lost == [], report
    assert result.duplicated == [], report
    assert result.board_equal, report
    assert result.receiver_missing == [] and result.unsigned == [], report
    assert not any(result.dlq_unexpected.values()), report
    assert result.orphans == [], report  # no process outlives the run
    assert result.dlq_poison["ticket-events-dlq"] >= 1, report  # the poison was parked, not lost
    assert result.dlq_poison["webhook-dlq"] >= 1 and result.dlq_poison["redis-sink-dlq"] >= 1
