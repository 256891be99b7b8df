"""Run the SLA engine over recorded history in event time: the offline twin of the worker.

The event-time driver is the whole difference from production: instead of
wall-clock ticks it advances every ticket whose work is due up to the latest
event time seen (the watermark), so deadlines fire in the same order as they
would have live.
"""

from __future__ import annotations

import gc
import heapq
import json
import sys
from bisect import insort
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, TextIO

from connectors.history import LineError, count_lines, is_gzip, read_history
from streams.progress import Progress
from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, SlaOutcome
from streams.sla.board import BoardBuilder
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
from streams.sla.policy import Policy
from streams.sla.report import BacktestReport, compare
from streams.sla.state import TicketState

MAX_ERRORS_SHOWN: Final = 20
PROGRESS_EVERY: Final = 512  # events between progress updates: a call per event is measurable


_MINUTE: Final = 60_000
_NEVER: Final = 2**63


class DueQueue:
    """(instant, ticket) entries taken out in order of instant, then ticket, once due.

    A heap of a hundred thousand tuples (one or more per open ticket) is slow where it
    matters: each pop walks it from top to bottom through memory the caches no longer hold.
    Here an entry is appended to the bucket of its minute; a heap orders only the minutes,
    and a minute's bucket is sorted once, when event time reaches it.

    `due_from` is an instant no entry is due before, so that most callers need not call
    pop() at all.
    """

    __slots__ = ("due_from", "_minutes", "_buckets", "_minute", "_ready", "_head")

    def __init__(self) -> None:
        self.due_from = _NEVER
        self._minutes: list[int] = []  # heap of the minutes that have a bucket
        self._buckets: dict[int, list[tuple[int, str]]] = {}
        self._minute = -1  # the minute being taken out: its entries are in _ready
        self._ready: list[tuple[int, str]] = []  # sorted; the ones before _head are taken
        self._head = 0

    def push(self, at: int, ticket_id: str) -> None:
        if at < self.due_from:
            self.due_from = at
        minute = at // _MINUTE
        if minute <= self._minute:  # the minute being taken out, or one before it
            insort(self._ready, (at, ticket_id), lo=self._head)
            return
        bucket = self._buckets.get(minute)
        if bucket is None:
            self._buckets[minute] = [(at, ticket_id)]
            heapq.heappush(self._minutes, minute)
        else:
            bucket.append((at, ticket_id))

    def pop(self, now: int) -> tuple[int, str] | None:
        """Take out the first entry if it is due at `now` (at or before it)."""
        while True:
            if self._head < len(self._ready):
                entry = self._ready[self._head]
                if entry[0] > now:
                    self.due_from = entry[0]  # and every later minute's entries are later
                    return None
                self._head += 1
                return entry
            if not self._minutes:
                self.due_from = _NEVER
                return None
            if self._minutes[0] > now // _MINUTE:
                self.due_from = self._minutes[0] * _MINUTE
                return None
            self._minute = heapq.heappop(self._minutes)
            self._ready = sorted(self._buckets.pop(self._minute))
            self._head = 0


@dataclass(slots=True)
class EventTimeDriver:
    """Feeds events to the engine and fires due work as event time advances."""

    engine: Engine
    states: dict[str, TicketState] = field(default_factory=dict)
    watermark: int | None = None
    duplicates: int = 0
    _due: DueQueue = field(default_factory=DueQueue)

    def feed(self, event: TicketEvent) -> list[Action]:
        t = event.occurred_at
        fired: list[Action] | None = None
        watermark = self.watermark
        if watermark is None or t > watermark:
            self.watermark = t
            queue = self._due
            if t >= queue.due_from:
                fired = []
                self._fire(t, fired, queue.pop(t))
        state = self.states.get(event.ticket_id)
        if state is None:
            before = None
            state, out = self.engine.apply(None, event)
            self.states[state.ticket_id] = state
        elif event.event_id in state.seen:
            self.duplicates += 1
            return fired or []
        else:
            before = state.next_due
            updated, out = self.engine.apply(state, event)
            if updated is not state:  # apply updates in place; a new object replaces it
                self.states[state.ticket_id] = state = updated
        due = state.next_due
        if due is not None and due != before:
            # the state's own id, the dict's key: lookups then match it by identity
            self._due.push(due, state.ticket_id)
        if fired:
            fired.extend(out)
            return fired
        return out

    def advance(self, now: int) -> list[Action]:
        """Fire everything due up to `now` (end of history, or a live tick)."""
        actions: list[Action] = []
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        entry = self._due.pop(now)
        if entry is not None:
            self._fire(now, actions, entry)
        return actions

    def _fire(self, now: int, actions: list[Action], entry: tuple[int, str] | None) -> None:
        """Advance the ticket of `entry`, taken out of the due queue, and of every entry
        due after it up to `now`."""
        while entry is not None:
            at, ticket_id = entry
            state = self.states[ticket_id]
            if state.next_due == at:  # otherwise superseded by a later push
                state, out = self.engine.advance(state, now)
                actions.extend(out)
                if state.next_due is not None:
                    self._due.push(state.next_due, ticket_id)
            entry = self._due.pop(now)


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
    board: BoardBuilder | None = None  # the escalation board at the end, as the sink keeps it

    @classmethod
    def start(cls, policy: Policy, out: IO[str] | None = None, board: bool = False) -> BacktestRun:
        driver = EventTimeDriver(Engine(policy))
        builder = BoardBuilder() if board else None
        return cls(policy, driver, BacktestReport(policy.source), out, builder)

    def feed(self, event: TicketEvent) -> None:
        actions = self.driver.feed(event)
        if actions:
            self.record(actions)
        if self.board is not None:
            self.board.event(event)

    def record(self, actions: list[Action]) -> None:
        self.report.add(actions)
        if self.board is not None:
            for action in actions:
                self.board.action(action)
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
        if self.board is not None:
            self.report.board = self.board.entries(self.policy)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a backtest runs.

    The driver keeps about ten objects alive per ticket, none in a reference cycle, and the
    collector would walk all of them again and again: about a tenth of the run at 20k-40k
    tickets. What is left to collect is collected when the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def backtest_events(
    policies: list[Policy],
    items: Iterable[TicketEvent | LineError],
    outs: list[IO[str] | None] | None = None,
    until: int | None = None,
    progress: Progress | None = None,
    errors: TextIO | None = None,
    board: bool = False,
) -> list[BacktestReport]:
    """Run each policy over the same events in one pass; bad lines are reported, not fatal.

    With `board`, each report's `board` holds the open escalations at the end of history.
    """
    with collector_paused():
        return _backtest_events(policies, items, outs, until, progress, errors, board)


def _backtest_events(
    policies: list[Policy],
    items: Iterable[TicketEvent | LineError],
    outs: list[IO[str] | None] | None,
    until: int | None,
    progress: Progress | None,
    errors: TextIO | None,
    board: bool,
) -> list[BacktestReport]:
    runs = [
        BacktestRun.start(policy, None if outs is None else outs[i], board)
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
            run.feed(item)
        if progress is not None and events % PROGRESS_EVERY == 0:
            progress.update(PROGRESS_EVERY)
    if progress is not None:
        progress.update(events % PROGRESS_EVERY)
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
            policies, items, [out, None], until, progress=progress, errors=stderr, board=True
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
