"""The README's first command, in a short mode: a small day through the real pipeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from connectors.sinks.board_store import BoardKeys, BoardReader
from streams.sla.board import clockless
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.demo import DemoOptions
from streams.tools.history import read_history
from tests.conftest import ServiceInfo

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
    # The board: served, fed by the sink, and in Redis equal to the backtest's.
    found = re.search(r"escalation board at http://127\.0\.0\.1:\d+/ \(Redis keys (\S+)\*", out)
    assert found and "/metrics" in out, out[:2000]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = BoardKeys(found.group(1))
    try:
        board = clockless(BoardReader(client, keys).entries())
        counted = client.hgetall(keys.stats)  # SLA warnings are counted apart (not escalations)
        warned = sum(1 for line in lines if "SLA_WARNING" in line)
        assert int(counted.get("warnings", 0)) == warned
        assert int(counted.get("escalations", 0)) + warned == len(lines)
        day = DemoOptions().workdir / "day.jsonl"
        (report,) = backtest_events([load_policy()], read_history(day), board=True)
        assert report.board and board == clockless(report.board)
        assert re.search(rf"{len(board)} tickets open on the board in Redis, .*: identical", out)
    finally:
        stale = list(client.scan_iter(match=f"{keys.prefix}*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()


def test_demo_uses_the_local_registry_when_it_is_up(
    registry_service: ServiceInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.tools.demo import _local_registry

    monkeypatch.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)
    if not registry_service.external:  # started by deploy/local/services: found through it
        assert _local_registry() == registry_service.address
    monkeypatch.setenv("ESCALATOR_SCHEMA_REGISTRY_URL", "http://elsewhere:8081")
    assert _local_registry() == "http://elsewhere:8081"
