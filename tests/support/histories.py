"""Generated histories and the escalations the backtest computes for them, to compare with what
a live pipeline sends."""

from __future__ import annotations

from pathlib import Path

from streams.sla.actions import Escalation
from streams.sla.engine import Engine
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history


def history(tmp_path: Path, agents: int, days: int, seed: int) -> tuple[Path, set[str]]:
    """A generated history and the escalation ids the backtest computes for it."""
    path, fired = history_fired(tmp_path, agents, days, seed)
    return path, set(fired)


def history_fired(tmp_path: Path, agents: int, days: int, seed: int) -> tuple[Path, dict[str, int]]:
    """A generated history and each escalation's fired_at by id, as the backtest has them."""
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=agents, days=days, seed=seed)
    policy = load_policy()
    ids: dict[str, int] = {}
    from streams.tools.backtest import EventTimeDriver

    driver = EventTimeDriver(Engine(policy))
    for event in read_history(path):
        assert not hasattr(event, "reason"), event
        for action in driver.feed(event):  # type: ignore[arg-type]
            if isinstance(action, Escalation):
                ids[action.escalation_id] = action.fired_at
    assert driver.watermark is not None
    for action in driver.advance(driver.watermark):
        if isinstance(action, Escalation):
            ids[action.escalation_id] = action.fired_at
    (report,) = backtest_events([policy], read_history(path))
    assert sum(report.by_reason.values()) == len(ids)
    return path, ids
