"""The queue alerts the pure core computes offline for a history, to compare with the live
`escalator alerts`."""

from __future__ import annotations

from pathlib import Path

from streams.sla.actions import BREACHES, Action, Escalation
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
from streams.sla.policy import Policy
from streams.sla.queues import QUEUE_STATS as EVENT_STATS
from streams.sla.queues import QueueAlert, QueueStat, QueueWindows, StatKind, alerts_of, queue_name
from streams.sla.queues import stat_id as make_id
from streams.tools.backtest import EventTimeDriver
from streams.tools.history import read_history


def offline_stats(path: Path, policy: Policy) -> tuple[list[QueueStat], int]:
    """The stats the worker should send for a history, derived from the backtest driver:
    CREATED and RESOLVED events (not duplicates) and breach escalations (at their due time),
    each in its ticket's queue. Returns them and the last event time."""
    driver = EventTimeDriver(Engine(policy))
    stats: list[QueueStat] = []

    def queue(ticket_id: str) -> str:
        state = driver.states[ticket_id]
        return queue_name(state.channel, state.category)

    def breaches(actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Escalation) and a.reason in BREACHES:
                ref = make_id(StatKind.BREACHED, a.escalation_id)
                stats.append(QueueStat(queue(a.ticket_id), StatKind.BREACHED, a.due_at, ref))

    for event in read_history(path):
        assert isinstance(event, TicketEvent)
        duplicates = driver.duplicates
        breaches(driver.feed(event))
        kind = EVENT_STATS.get(event.type)
        if kind is not None and driver.duplicates == duplicates:
            ref = make_id(kind, event.event_id)
            stats.append(QueueStat(queue(event.ticket_id), kind, event.occurred_at, ref))
    assert driver.watermark is not None
    breaches(driver.advance(driver.watermark))
    return stats, driver.watermark


def expected_alerts(path: Path, policy: Policy) -> dict[str, QueueAlert]:
    """What the pure core computes offline; the live watermark ends at the last event time
    (the replay's end tick) minus the allowed lateness."""
    stats, last = offline_stats(path, policy)
    windows = QueueWindows(policy.ops_alerts)
    for stat in stats:
        windows.add(stat)
    closed = windows.close_until(last - policy.ops_alerts.allowed_lateness)
    return {a.alert_id: a for a in alerts_of(closed)}
