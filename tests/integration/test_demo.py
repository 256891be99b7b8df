"""The README's first command, in a short mode: a small day through the real pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_demo_fires_the_backtests_escalations_live(kafka_bootstrap: str, redis_url: str) -> None:
    env = {**os.environ, "ESCALATOR_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "ESCALATOR_REDIS_URL": redis_url}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--agents", "5", "--rate", "3000"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "identical count, no duplicates" in out
    lines = [line for line in out.splitlines() if " id=" in line]
    assert lines, "escalations are printed as they fire"
    assert any("FIRST_RESPONSE_BREACH" in line or "SLA_WARNING" in line for line in lines)
