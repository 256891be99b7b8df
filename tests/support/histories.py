"""Generated histories and the escalations the backtest computes for them, to compare with what
a live pipeline sends."""

from __future__ import annotations

from pathlib import Path
from random import Random

from streams.sla.actions import Escalation
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
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


HOUR_MS = 3_600_000


def arrived_late(path: Path, rnd: Random) -> list[TicketEvent]:
    """A history as a source delivered it: one event in 25 held back 1 minute to 48 hours
    (a slow webhook, a batch re-sent), the rest in time order."""
    events = [e for e in read_history(path) if isinstance(e, TicketEvent)]
    held = [
        (e.occurred_at + (rnd.randint(60_000, 48 * HOUR_MS) if rnd.random() < 0.04 else 0), n)
        for n, e in enumerate(events)
    ]
    return [events[n] for _, n in sorted(held)]
