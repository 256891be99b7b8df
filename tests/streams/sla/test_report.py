"""BacktestReport's queue ops replay, as `escalator backtest --jobs` splits it by queue."""

from __future__ import annotations

from streams.sla.policy import OpsAlerts
from streams.sla.queues import QueueStat, QueueWindows, StatKind
from streams.sla.report import BacktestReport

MIN = 60_000
CONFIG = OpsAlerts(window="30m", hop="10m", allowed_lateness="10m")  # type: ignore[arg-type]


def _replay(records: list[tuple[int, bool, QueueStat | None]], until: int) -> BacktestReport:
    report = BacktestReport("policy.yaml")
    report.ops = QueueWindows(CONFIG)
    report.replay_ops(records, until)
    return report


def _created(queue: str, at: int, n: int) -> QueueStat:
    return QueueStat(queue, StatKind.CREATED, at, f"c:{queue}-{n}")


def _history() -> list[tuple[int, bool, QueueStat | None]]:
    """Queue a's tickets, a surge of them, and one stat of a that comes after queue b's
    clock has closed its window: late, because the clock is every queue's."""
    records: list[tuple[int, bool, QueueStat | None]] = []
    n = 0
    for minute in range(0, 200, 7):
        at = minute * MIN
        records.append((at, True, _created("email/billing", at, n)))
        n += 1
    for k in range(40):  # a surge in the last windows
        at = 190 * MIN + k * 1000
        records.append((at, True, _created("email/billing", at, n)))
        n += 1
    records.append((260 * MIN, True, _created("chat/tech", 260 * MIN, 0)))
    records.append((261 * MIN, False, _created("email/billing", 230 * MIN, n)))  # late
    return records


def test_a_replay_of_some_queues_alerts_on_them_as_the_whole_replay_does() -> None:
    records = _history()
    until = 300 * MIN
    whole = _replay(records, until)
    assert whole.ops_alerts and whole.ops_late == 1
    # the replay of queue email/billing alone, with the other queue's records as clock only
    own = [(c, closes, s if s and s.queue == "email/billing" else None) for c, closes, s in records]
    share = _replay(own, until)
    assert share.ops_alerts == [a for a in whole.ops_alerts if a.queue == "email/billing"]
    assert share.ops_late == 1
    # without the other queue's clock, its late stat would have counted
    alone = [(c, closes, s) for c, closes, s in own if s is not None]
    assert _replay(alone, until).ops_late == 0
