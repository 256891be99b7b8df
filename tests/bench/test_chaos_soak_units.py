"""Unit checks of the chaos run's plan and the soak's slope (no services)."""

from __future__ import annotations

import random

import pytest

from bench.chaos import faults_plan
from bench.soak import slope_per_hour


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
