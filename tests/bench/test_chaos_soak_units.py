"""Unit checks of the chaos run's plan and the soak's slope (no services)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.chaos import board_entries, faults_plan, kill_orphans, run_prefix
from bench.soak import EVENTS_PER_AGENT_DAY, STORE_LIFETIME_DAYS, HistoryPlan, slope_per_hour
from streams.sla.board import BoardEntry
from streams.sla.events import parse_ts


def test_slope_is_mb_per_hour_and_flat_memory_is_zero() -> None:
    growing = [(t * 10.0, 100.0 + t * 10.0 / 360) for t in range(100)]  # +10 MB per hour
    assert slope_per_hour(growing) == pytest.approx(10.0)
    assert slope_per_hour([(t * 10.0, 250.0) for t in range(50)]) == 0.0
    assert slope_per_hour([(0.0, 1.0)]) == 0.0


def test_plan_has_each_required_fault_within_the_run() -> None:
    for minutes in (2, 10):
        plan = faults_plan(minutes * 60, random.Random(3))
        kinds = [kind for _, kind in plan]
        assert kinds.count("broker_restart") == 1 and kinds.count("redis_restart") == 1
        assert "receiver_5xx" in kinds and "receiver_timeout" in kinds and "poison" in kinds
        assert kinds.count("sigkill") >= minutes * 3
        assert all(0 < at < minutes * 60 for at, _ in plan)
        assert [at for at, _ in plan] == sorted(at for at, _ in plan)


class RacingReader:
    """A BoardReader whose first reads race the sink: a ticket removed between the listing
    and its read makes entries() fail as connectors.sinks.board_store's strict zip does."""

    def __init__(self, races: int) -> None:
        self.races = races

    def entries(self) -> dict[str, BoardEntry]:
        if self.races:
            self.races -= 1
            raise ValueError("zip() argument 2 is shorter than argument 1")
        return {}


def test_a_board_read_racing_the_sink_is_read_again() -> None:
    assert board_entries(RacingReader(races=2)) == {}  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        board_entries(RacingReader(races=5), attempts=3)  # type: ignore[arg-type]


def test_soak_history_turns_its_stored_tickets_over_within_the_warm_up(tmp_path: Path) -> None:
    plan = HistoryPlan.sized(minutes=30, rate=100, warmup_min=5)
    assert plan.days / 30 * 5 >= STORE_LIFETIME_DAYS  # event time a warm-up covers
    assert 0.8 < plan.days * plan.agents * EVENTS_PER_AGENT_DAY / (30 * 60 * 100) < 1.2
    now = datetime(2026, 12, 6, 7, 45, tzinfo=UTC)
    small = HistoryPlan(days=3, agents=2)
    tickets = small.write(tmp_path / "h.jsonl", now)
    times = [parse_ts(json.loads(line)["occurred_at"]) for line in
             (tmp_path / "h.jsonl").read_text().splitlines()]  # fmt: skip
    assert tickets > 0 and times == sorted(times)
    assert (max(times) - min(times)) / 86_400_000 < small.days  # no sparse tail after the days
    assert max(times) < now.timestamp() * 1000 - 30 * 86_400_000  # ingest takes every event


def test_a_run_kills_no_process_of_another_run_with_the_same_seed() -> None:
    other = "chaos7-1-"  # another run's prefix (its own process id)
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "streams.cli", "--topic-prefix",
         other, "--loglevel", "info"]
    )  # fmt: skip
    try:
        time.sleep(0.2)
        assert run_prefix(7) != other and kill_orphans(run_prefix(7)) == []
        assert sleeper.poll() is None
        assert len(kill_orphans(other)) == 1
        assert sleeper.wait(10) == -9
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
