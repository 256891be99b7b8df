"""Run the SLA engine over recorded history in event time: the offline twin of the worker.

The event-time driver is the whole difference from production: instead of
wall-clock ticks it advances every ticket whose work is due up to the latest
event time seen (the watermark), so deadlines fire in the same order as they
would have live.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from connectors.history import LineError, count_lines, is_gzip, read_history
from streams.progress import Progress
from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, SlaOutcome
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
from streams.sla.policy import Policy
from streams.sla.report import BacktestReport, compare
from streams.sla.state import TicketState

MAX_ERRORS_SHOWN = 20


@dataclass
class EventTimeDriver:
    """Feeds events to the engine and fires due work as event time advances."""

    engine: Engine
    states: dict[str, TicketState] = field(default_factory=dict)
    watermark: int | None = None
    duplicates: int = 0
    _due: list[tuple[int, str]] = field(default_factory=list)

    def feed(self, event: TicketEvent) -> list[Action]:
        actions: list[Action] = []
        t = event.occurred_at
        if self.watermark is None or t > self.watermark:
            self.watermark = t
            self._fire(t, actions)
        state = self.states.get(event.ticket_id)
        if state is not None and event.event_id in state.seen:
            self.duplicates += 1
            return actions
        before = None if state is None else state.next_due
        state, out = self.engine.apply(state, event)
        self.states[event.ticket_id] = state
        actions.extend(out)
        if state.next_due is not None and state.next_due != before:
            heapq.heappush(self._due, (state.next_due, event.ticket_id))
        return actions

    def advance(self, now: int) -> list[Action]:
        """Fire everything due up to `now` (end of history, or a live tick)."""
        actions: list[Action] = []
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        self._fire(now, actions)
        return actions

    def _fire(self, now: int, actions: list[Action]) -> None:
        due = self._due
        while due and due[0][0] <= now:
            at, ticket_id = heapq.heappop(due)
            state = self.states[ticket_id]
            if state.next_due != at:
                continue  # superseded by a later push
            state, out = self.engine.advance(state, now)
            actions.extend(out)
            if state.next_due is not None:
                heapq.heappush(due, (state.next_due, ticket_id))


def action_record(action: Action) -> dict[str, object]:
    """JSON form of an action for --out files, tagged with what it is."""
    kind = {
        Escalation: "escalation",
        PriorityBump: "priority_bump",
        Reminder: "reminder",
        SlaOutcome: "sla_outcome",
    }[type(action)]
    return {"action": kind, **action.to_dict()}


@dataclass
class BacktestRun:
    policy: Policy
    driver: EventTimeDriver
    report: BacktestReport
    out: IO[str] | None = None

    @classmethod
    def start(cls, policy: Policy, out: IO[str] | None = None) -> BacktestRun:
        return cls(policy, EventTimeDriver(Engine(policy)), BacktestReport(policy.source), out)

    def record(self, actions: list[Action]) -> None:
        self.report.add(actions)
        if self.out is not None:
            for action in actions:
                if not isinstance(action, SlaOutcome):
                    self.out.write(json.dumps(action_record(action)) + "\n")

    def finish(self, until: int | None) -> None:
        if until is None:
            until = self.driver.watermark
        if until is not None:
            self.record(self.driver.advance(until))
        self.report.duplicates = self.driver.duplicates
        self.report.finish(self.driver.states.values())


def backtest_events(
    policies: list[Policy],
    items: Iterable[TicketEvent | LineError],
    outs: list[IO[str] | None] | None = None,
    until: int | None = None,
    progress: Progress | None = None,
    errors: TextIO | None = None,
) -> list[BacktestReport]:
    """Run each policy over the same events in one pass; bad lines are reported, not fatal."""
    runs = [
        BacktestRun.start(policy, None if outs is None else outs[i])
        for i, policy in enumerate(policies)
    ]
    events = 0
    bad = 0
    for item in items:
        if isinstance(item, LineError):
            bad += 1
            if errors is not None and bad <= MAX_ERRORS_SHOWN:
                errors.write(f"skipped bad line: {item}\n")
            continue
        events += 1
        for run in runs:
            run.record(run.driver.feed(item))
        if progress is not None:
            progress.update()
    if errors is not None and bad > MAX_ERRORS_SHOWN:
        errors.write(f"... {bad - MAX_ERRORS_SHOWN} more bad lines skipped\n")
    for run in runs:
        run.finish(until)
        run.report.events = events
        run.report.bad_lines = bad
    return [run.report for run in runs]


def run_backtest(
    policy: Policy,
    events_path: Path,
    out_path: Path | None = None,
    other: Policy | None = None,
    until: int | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> list[BacktestReport]:
    """The `escalator backtest` command: prints the summary, and the what-if with --compare."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    total = None if is_gzip(events_path) else count_lines(events_path)
    progress = Progress("backtest", total=total, stream=stderr)
    policies = [policy] if other is None else [policy, other]
    out = open(out_path, "w", encoding="utf-8") if out_path else None  # noqa: SIM115
    try:
        items: Iterator[TicketEvent | LineError] = read_history(events_path)
        reports = backtest_events(
            policies, items, [out, None], until, progress=progress, errors=stderr
        )
    finally:
        if out is not None:
            out.close()
    seconds = progress.close()
    for report in reports:
        stdout.write(report.format() + "\n\n")
    if other is not None:
        stdout.write(compare(reports[0], reports[1]) + "\n")
    rate = reports[0].events / seconds if seconds > 0 else 0.0
    stdout.write(
        f"backtest: {reports[0].events:,} events in {seconds:.1f}s ({rate:,.0f} events/s)\n"
    )
    if out_path:
        stdout.write(f"escalations, priority bumps and reminders written to {out_path}\n")
    return reports
