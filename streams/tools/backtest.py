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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, TextIO

from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, Silenced, SlaOutcome
from streams.sla.board import BoardBuilder
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent, format_ts
from streams.sla.policy import Policy
from streams.sla.queues import PartitionClock, QueueWindows
from streams.sla.report import BacktestReport, comparison, format_comparison
from streams.tools.history import LineError, count_lines, is_gzip, read_history
from streams.tools.partitioner import ticket_partition
from streams.tools.progress import Progress
from streams.tools.shelf import TicketShelf

MAX_ERRORS_SHOWN: Final = 20
MAX_LINES_KEPT: Final = 1000  # line numbers of duplicates and rejects kept for the report
DEFAULT_MAX_AHEAD: Final = 30 * 86_400_000  # an event further ahead of the history is refused
PROGRESS_EVERY: Final = 512  # events between progress updates: a call per event is measurable


_MINUTE: Final = 60_000
SHELVE_AFTER: Final = 60 * _MINUTE  # event time a ticket with nothing due stays an object
COMPACT_AFTER: Final = 10_000  # due queue entries added before its superseded ones are dropped
_NEVER: Final = 2**63


class DueQueue:
    """(instant, ticket) entries taken out in order of instant, then ticket, once due.

    A heap of a hundred thousand tuples (one or more per open ticket) is slow where it
    matters: each pop walks it from top to bottom through memory the caches no longer hold.
    Here an entry is appended to the bucket of its minute; a heap orders only the minutes,
    and a minute's bucket is sorted once, when event time reaches it.

    `due_from` is an instant no entry is due before, so that most callers need not call
    pop() at all. `waiting` counts the entries in the buckets, for compact().
    """

    __slots__ = ("due_from", "waiting", "_minutes", "_buckets", "_minute", "_ready", "_head")

    def __init__(self) -> None:
        self.due_from = _NEVER
        self.waiting = 0
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
        self.waiting += 1
        bucket = self._buckets.get(minute)
        if bucket is None:
            self._buckets[minute] = [(at, ticket_id)]
            heapq.heappush(self._minutes, minute)
        else:
            bucket.append((at, ticket_id))

    def compact(self, keep: Callable[[int, str], bool]) -> None:
        """Drop the entries not taken out yet that `keep` refuses (superseded ones)."""
        self._ready = [entry for entry in self._ready[self._head :] if keep(*entry)]
        self._head = 0
        buckets = self._buckets
        for minute, bucket in list(buckets.items()):
            kept = [entry for entry in bucket if keep(*entry)]
            if kept:
                buckets[minute] = kept
            else:
                del buckets[minute]
        self._minutes = sorted(buckets)  # a sorted list is a heap
        self.waiting = sum(map(len, buckets.values()))

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
            self.waiting -= len(self._ready)
            self._head = 0


@dataclass(slots=True)
class EventTimeDriver:
    """Feeds events to the engine and fires due work as event time advances, each at its
    due instant (`fired_at == due_at`), as a perfect wall-clock worker would have.

    The clock is the latest event time seen. Fed a history in time order (the backtest's
    default), no event is ever late. With `arrival_order` the events come as a worker received
    them: a late event updates its ticket as of the clock, and what it makes due before the
    clock less the policy's backfill horizon is recorded (`Silenced`), not sent.

    A ticket left with nothing due for an hour of event time is shelved (streams.tools.shelf):
    most of a history's tickets are solved or closed. The hour spares a ticket answered at
    once the round trip; the others are decoded again on their next event (a customer's
    answer, a CSAT, the close), about 0.7 times a ticket on the generator's history.
    """

    engine: Engine
    states: TicketShelf = field(default_factory=TicketShelf)
    watermark: int | None = None
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)  # the first MAX_LINES_KEPT
    arrival_order: bool = False
    shelve: bool = True  # False: every state stays an object (the tests compare the two)
    _due: DueQueue = field(default_factory=DueQueue)
    # (the ticket's clock then, ticket) for each ticket left with nothing due, oldest first
    _idle: deque[tuple[int, str]] = field(default_factory=deque)
    compact_after: int = COMPACT_AFTER  # the tests compact often
    _compact_at: int = 0  # due queue entries beyond which compaction is due

    def _compact(self) -> None:
        """Drop the due queue's superseded entries: a ticket solved before its deadline
        leaves one that would wait for days, longer than the ticket stays an object."""
        self._due.compact(self._current)
        self._compact_at = 2 * self._due.waiting + self.compact_after  # amortized O(1) a push

    def _current(self, at: int, ticket_id: str) -> bool:
        state = self.states.live.get(ticket_id)
        return state is not None and state.next_due == at

    def _settle(self, now: int) -> None:
        """Shelve the tickets left with nothing due and untouched since SHELVE_AFTER ago."""
        idle = self._idle
        horizon = now - SHELVE_AFTER
        live = self.states.live
        while idle and idle[0][0] <= horizon:
            since, ticket_id = idle.popleft()
            state = live.get(ticket_id)
            if state is not None and state.next_due is None and state.clock_at <= since:
                self.states.shelve(ticket_id)

    def feed(self, event: TicketEvent, line: int = 0) -> list[Action]:
        t = event.occurred_at
        fired: list[Action] | None = None
        watermark = self.watermark
        quiet = -1
        if watermark is None or t > watermark:
            self.watermark = t
            idle = self._idle
            if idle and idle[0][0] <= t - SHELVE_AFTER:
                self._settle(t)
            queue = self._due
            if t >= queue.due_from:
                fired = []
                # what falls due up to t was due after the previous clock: never silenced
                self._fire(t, fired, queue.pop(t), -1)
        elif self.arrival_order:
            quiet = watermark - self.engine.backfill_horizon
        live = self.states.live
        state = live.get(event.ticket_id)
        if state is None and self.states.shelved:
            state = self.states.wake(event.ticket_id)
        if state is None:
            before = None
            state, out = self.engine.apply(None, event, -1, quiet)
            live[state.ticket_id] = state
        elif event.event_id in state.seen:
            self.duplicates += 1
            if len(self.duplicate_lines) < MAX_LINES_KEPT:
                self.duplicate_lines.append(line)
            if self.shelve and state.next_due is None:  # woken for the check, maybe
                self._idle.append((state.clock_at, state.ticket_id))
            return fired or []
        else:
            before = state.next_due
            updated, out = self.engine.apply(state, event, -1, quiet)
            if updated is not state:  # apply updates in place; a new object replaces it
                live[state.ticket_id] = state = updated
        due = state.next_due
        if due is None:
            if self.shelve:
                self._idle.append((state.clock_at, state.ticket_id))
        elif due != before:
            # the state's own id, the dict's key: lookups then match it by identity
            self._due.push(due, state.ticket_id)
            if self._due.waiting > self._compact_at:
                self._compact()
            if watermark is not None and due <= watermark and t <= watermark:
                # a late event made work due behind the clock: it fires now
                fired = fired or []
                fired.extend(out)
                self._fire(watermark, fired, self._due.pop(watermark), quiet)
                return fired
        if fired:
            fired.extend(out)
            return fired
        return out

    def clock_before(self, ticket_id: str) -> tuple[int, int]:
        """(the ticket's partition, the clock its next event finds: 0 before any), as the
        worker sends it with that event's queue stats. One clock: one partition."""
        return 0, self.watermark or 0

    def advance(self, now: int) -> list[Action]:
        """Fire everything due up to `now` (end of history, or a live tick)."""
        actions: list[Action] = []
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        if self._idle:
            self._settle(now)
        entry = self._due.pop(now)
        if entry is not None:
            self._fire(now, actions, entry, -1)
        return actions

    def _fire(
        self, now: int, actions: list[Action], entry: tuple[int, str] | None, quiet: int
    ) -> None:
        """Advance the ticket of `entry`, taken out of the due queue, and of every entry
        due after it up to `now`, each at its own instant."""
        advance = self.engine.advance
        live = self.states.live
        idle = self._idle if self.shelve else None
        while entry is not None:
            at, ticket_id = entry
            state = live.get(ticket_id)  # a shelved ticket has nothing due: a stale entry
            if state is not None and state.next_due == at:  # or superseded by a later push
                state, out = advance(state, at, quiet, True)
                actions.extend(out)
                if state.next_due is not None:
                    self._due.push(state.next_due, ticket_id)
                elif idle is not None:
                    idle.append((state.clock_at, ticket_id))
            entry = self._due.pop(now)


def _instant(action: Action) -> int:
    """When the action happened, to merge several clocks' actions in time order."""
    return action.ended_at if isinstance(action, SlaOutcome) else action.fired_at


class PartitionedDriver:
    """`--arrival-order` as a worker with `partitions` partitions runs it: each ticket's
    partition (the producers' partitioner, streams.tools.partitioner) has its own clock and
    due work. An event is late only behind its own partition's clock, and a deadline fires
    once its partition's clock passes it: with one clock for the whole file, a ticket's
    deadline fired when other partitions' events passed it, before its own partition's
    earlier answer arrived, where the worker sees the answer first. A worker's partitions
    never see each other, so how the file interleaves them changes nothing either.
    """

    def __init__(self, engine: Engine, partitions: int) -> None:
        self.states = TicketShelf()
        self.drivers = [
            EventTimeDriver(engine, self.states, arrival_order=True) for _ in range(partitions)
        ]
        self.partitions = partitions
        self.duplicates = 0  # every partition's, as EventTimeDriver counts them
        self._partition: dict[str, int] = {}

    def _partition_of(self, ticket_id: str) -> int:
        p = self._partition.get(ticket_id)
        if p is None:
            p = self._partition[ticket_id] = ticket_partition(ticket_id, self.partitions)
        return p

    def clock_before(self, ticket_id: str) -> tuple[int, int]:
        """(the ticket's partition, the clock its next event finds there: 0 before any)."""
        p = self._partition_of(ticket_id)
        return p, self.drivers[p].watermark or 0

    def feed(self, event: TicketEvent, line: int = 0) -> list[Action]:
        driver = self.drivers[self._partition_of(event.ticket_id)]
        before = driver.duplicates
        actions = driver.feed(event, line)
        if driver.duplicates != before:
            self.duplicates += 1
        return actions

    def advance(self, now: int) -> list[Action]:
        """Every partition's clock to `now` (the end of history), their actions in time
        order (each partition's own order kept)."""
        return list(heapq.merge(*(d.advance(now) for d in self.drivers), key=_instant))

    @property
    def duplicate_lines(self) -> list[int]:
        lines = sorted(line for d in self.drivers for line in d.duplicate_lines)
        return lines[:MAX_LINES_KEPT]  # each driver kept its first: the file's first are there

    @property
    def watermark(self) -> int | None:
        clocks = [d.watermark for d in self.drivers if d.watermark is not None]
        return max(clocks) if clocks else None


# A --out line of an arrival-order --jobs shard: its order, (history line, 0, "", n) while
# history runs and (END_LINE, fired_at, ticket, n) at its end, then its fired_at and ticket.
ArrivalKey = tuple[int, int, str, int, int, str]
END_LINE: Final = 2**62


def action_record(action: Action) -> dict[str, object]:
    """JSON form of an action for --out files, tagged with what it is."""
    kind = {
        Escalation: "escalation",
        PriorityBump: "priority_bump",
        Reminder: "reminder",
        SlaOutcome: "sla_outcome",
        Silenced: "silenced",
    }[type(action)]
    return {"action": kind, **action.to_dict()}


@dataclass
class BacktestRun:
    policy: Policy
    driver: EventTimeDriver | PartitionedDriver
    report: BacktestReport
    out: IO[str] | None = None
    board: BoardBuilder | None = None  # the escalation board at the end, as the sink keeps it
    # (fired_at, ticket) of each --out line, for a --jobs merge that need not parse them
    keys: list[tuple[int, str]] | None = None
    # in arrival order, the same for a merge by line (ArrivalKey); the lines then go out as
    # they come, and the merge puts each instant's in ticket order as _flush does
    arrival_keys: list[ArrivalKey] | None = None
    # --out lines of the instant being written, put in ticket order when it ends, so that
    # the file does not depend on how the history interleaves tickets
    _instant: int = -1
    _lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        policy: Policy,
        out: IO[str] | None = None,
        board: bool = False,
        arrival_order: bool = False,
        record_ops: bool = False,
        compared: bool = True,
        partitions: int = 1,
    ) -> BacktestRun:
        """`partitions`: in arrival order, one clock for each (PartitionedDriver)."""
        driver: EventTimeDriver | PartitionedDriver
        if arrival_order and partitions > 1:
            driver = PartitionedDriver(Engine(policy), partitions)
        else:
            driver = EventTimeDriver(Engine(policy), arrival_order=arrival_order)
        builder = BoardBuilder() if board else None
        report = BacktestReport(policy.source, compared=compared)
        if policy.ops_alerts.enabled:
            report.ops = QueueWindows(policy.ops_alerts)
            if record_ops:
                report.ops_record = []
            if arrival_order:  # stats late by their own partition's clock, as live
                lateness = policy.ops_alerts.allowed_lateness
                report.ops_clock = PartitionClock(range(partitions), lateness)
        return cls(policy, driver, report, out, builder)

    def feed(self, event: TicketEvent, line: int = 0) -> None:
        driver = self.driver
        report = self.report
        clock = None if report.ops_clock is None else driver.clock_before(event.ticket_id)
        duplicates = driver.duplicates
        actions = driver.feed(event, line)
        if actions:
            self.record(actions, line)
        if driver.duplicates == duplicates:  # applied: the report reads CSAT, answers, stats
            report.event(event, driver.states.live[event.ticket_id])  # fed: it is live
        if clock is not None:
            partition, wm = clock
            report.ops_message(partition, wm)
        if self.board is not None:
            self.board.event(event)

    def record(self, actions: list[Action], line: int = END_LINE) -> None:
        """Count, show and write the actions fired at history `line`, or at its end."""
        self.report.add(actions, self.driver.states)
        if self.board is not None:
            for action in actions:
                self.board.action(action)
        if self.out is not None:
            for action in actions:
                if isinstance(action, Escalation | PriorityBump | Reminder):
                    if self.arrival_keys is not None:
                        self._keyed(action, line)
                        continue
                    if action.fired_at != self._instant:
                        self._flush()
                        self._instant = action.fired_at
                    self._lines.append((action.ticket_id, json.dumps(action_record(action))))

    def _keyed(self, action: Escalation | PriorityBump | Reminder, line: int) -> None:
        assert self.out is not None and self.arrival_keys is not None
        self.out.write(json.dumps(action_record(action)) + "\n")
        at, ticket, n = action.fired_at, action.ticket_id, len(self.arrival_keys)
        if line == END_LINE:  # merged over partitions by instant (PartitionedDriver)
            self.arrival_keys.append((END_LINE, at, ticket, n, at, ticket))
        else:
            self.arrival_keys.append((line, 0, "", n, at, ticket))

    def _flush(self) -> None:
        if self.out is not None and self._lines:
            self._lines.sort(key=lambda line: line[0])  # stable: a ticket's own order stays
            self.out.write("".join(text + "\n" for _, text in self._lines))
            if self.keys is not None:
                instant = self._instant
                self.keys.extend([(instant, ticket) for ticket, _ in self._lines])
        self._lines.clear()

    def finish(self, until: int | None) -> None:
        if until is None:
            until = self.driver.watermark
        if until is not None:
            self.record(self.driver.advance(until))
        self._flush()
        self.report.duplicates = self.driver.duplicates
        self.report.duplicate_lines = list(self.driver.duplicate_lines)
        states = self.driver.states
        self.report.finish(len(states), states.with_running_clocks(), until)
        if self.board is not None:
            self.report.board = self.board.entries(self.policy)
            self.report.board_warnings = self.board.warnings()


class _OutOfOrder(Exception):
    """A history that is not in time order: the backtest sorts it instead of streaming."""


Item = TicketEvent | LineError
Source = Iterable[Any] | Callable[[], Iterable[Any]]


def _numbered(items: Iterable[Any]) -> Iterator[tuple[int, Item]]:
    """(line, item) pairs: as given by read_history(numbered=True), or counted from 1."""
    for index, item in enumerate(items, 1):
        if type(item) is tuple:
            yield item
        elif isinstance(item, LineError):
            yield item.line, item
        else:
            yield index, item


def _in_time_order(items: Iterable[Any]) -> Iterator[tuple[int, Item]]:
    """_numbered, stopping at the first event earlier than the one before it (one layer of
    generator per event rather than two: the streamed backtest reads every event here)."""
    latest = -1
    for index, pair in enumerate(items, 1):
        if type(pair) is not tuple:
            pair = (pair.line if isinstance(pair, LineError) else index), pair
        item = pair[1]
        if isinstance(item, TicketEvent):
            t = item.occurred_at
            if t < latest:
                raise _OutOfOrder(pair[0])
            latest = t
        yield pair


def _by_time(pair: tuple[int, Item]) -> int:
    item = pair[1]
    return item.occurred_at if isinstance(item, TicketEvent) else -1


def _time_sorted(items: Iterable[tuple[int, Item]]) -> list[tuple[int, Item]]:
    """Bad lines first (they are only reported), then events by time; ties keep file order."""
    pairs = list(items)
    pairs.sort(key=_by_time)  # stable: bad lines (-1) first, in file order
    return pairs


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
    items: Source,
    outs: list[IO[str] | None] | None = None,
    until: int | None | Callable[[int | None], int | None] = None,
    progress: Progress | None = None,
    errors: TextIO | None = None,
    board: bool = False,
    arrival_order: bool = False,
    max_ahead: int = DEFAULT_MAX_AHEAD,
    record_ops: bool = False,
    out_keys: list[tuple[int, str]] | None = None,
    partitions: int = 1,
    arrival_keys: list[ArrivalKey] | None = None,
) -> list[BacktestReport]:
    """Run each policy over the same events in one pass; bad lines are reported, not fatal.

    By default each ticket's events apply in event-time order (ties keep file order), so any
    interleaving of the tickets gives the same output. `items` may be a callable that reads
    the history afresh: a history in time order is then streamed, and one that is not is
    read again and sorted in memory. With `arrival_order` the file's order is kept, late
    events included, as a live worker would have received it on `partitions` partitions (a
    clock each). An event more than `max_ahead` past the history's clock so far is refused
    by line. With `board`, each report's `board` holds the open escalations at the end of
    history. With `record_ops` (a --jobs shard) the queue stats are kept for the parent
    instead of alerted on, and `out_keys` gets the (fired_at, ticket) of each line the first
    policy writes to its out (`arrival_keys` an ArrivalKey, in arrival order).
    """
    with collector_paused():
        if arrival_order:
            source = items() if callable(items) else items
            return _backtest_events(
                policies,
                _numbered(source),
                outs,
                until,
                progress,
                errors,
                board,
                True,
                max_ahead,
                record_ops,
                out_keys,
                partitions,
                arrival_keys,
            )
        if callable(items):
            try:
                return _backtest_events(
                    policies, _in_time_order(items()), outs, until, progress, errors,
                    board, False, max_ahead, record_ops, out_keys,
                )  # fmt: skip
            except _OutOfOrder as exc:
                if errors is not None:
                    errors.write(
                        f"line {exc.args[0]} is earlier than the line before it: the history is"
                        " not in time order, so it is read again and sorted in memory\n"
                    )
                for out in outs or ():
                    if out is not None:
                        out.seek(0)
                        out.truncate()
                if out_keys is not None:
                    out_keys.clear()
                if progress is not None:
                    progress.count = 0  # the second pass counts from the start
                items = items()
        return _backtest_events(
            policies, _time_sorted(list(_numbered(items))), outs, until, progress, errors,
            board, False, max_ahead, record_ops, out_keys,
        )  # fmt: skip


def _backtest_events(
    policies: list[Policy],
    items: Iterable[tuple[int, Item]],
    outs: list[IO[str] | None] | None,
    until: int | None | Callable[[int | None], int | None],
    progress: Progress | None,
    errors: TextIO | None,
    board: bool,
    arrival_order: bool,
    max_ahead: int,
    record_ops: bool = False,
    out_keys: list[tuple[int, str]] | None = None,
    partitions: int = 1,
    arrival_keys: list[ArrivalKey] | None = None,
) -> list[BacktestReport]:
    runs = [
        BacktestRun.start(
            policy,
            None if outs is None else outs[i],
            board,
            arrival_order,
            record_ops,
            compared=len(policies) > 1,
            partitions=partitions,
        )  # fmt: skip
        for i, policy in enumerate(policies)
    ]
    runs[0].keys = out_keys
    runs[0].arrival_keys = arrival_keys
    events = 0
    bad = 0
    rejected: list[int] = []
    clock = -1  # the latest event time accepted
    for line, item in items:
        if isinstance(item, LineError):
            bad += 1
            if errors is not None and bad <= MAX_ERRORS_SHOWN:
                errors.write(f"skipped bad line: {item}\n")
            continue
        t = item.occurred_at
        if t > clock:
            if clock >= 0 and t - clock > max_ahead:
                if len(rejected) < MAX_LINES_KEPT:
                    rejected.append(line)
                if errors is not None and len(rejected) <= MAX_ERRORS_SHOWN:
                    errors.write(
                        f"skipped line {line}: occurred_at {format_ts(t)} is"
                        f" {(t - clock) / 86_400_000:,.1f} days past the history's clock"
                        f" ({format_ts(clock)}; limit {max_ahead / 86_400_000:g} days)\n"
                    )
                continue
            clock = t
        events += 1
        for run in runs:
            run.feed(item, line)
        if progress is not None and events % PROGRESS_EVERY == 0:
            progress.update(PROGRESS_EVERY)
    if progress is not None:
        progress.update(events % PROGRESS_EVERY)
    if errors is not None and bad > MAX_ERRORS_SHOWN:
        errors.write(f"... {bad - MAX_ERRORS_SHOWN} more bad lines skipped\n")
    if callable(until):  # --jobs: where history ends is known once every process got there
        until = until(clock if clock >= 0 else None)
    for run in runs:
        run.finish(until)
        run.report.events = events
        run.report.bad_lines = bad + len(rejected)
        run.report.rejected_lines = list(rejected)
        if errors is not None and run.report.duplicate_lines and run is runs[0]:
            lines = run.report.duplicate_lines
            shown = ", ".join(str(n) for n in lines[:MAX_ERRORS_SHOWN])
            more = (
                f" and {run.report.duplicates - MAX_ERRORS_SHOWN:,} more"
                if (run.report.duplicates > MAX_ERRORS_SHOWN)
                else ""
            )
            errors.write(
                f"ignored {run.report.duplicates:,} events whose event_id a ticket already"
                f" had: lines {shown}{more}\n"
            )
    return [run.report for run in runs]


def run_backtest(
    policy: Policy,
    events_path: Path,
    out_path: Path | None = None,
    other: Policy | None = None,
    until: int | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    arrival_order: bool = False,
    max_ahead: int = DEFAULT_MAX_AHEAD,
    fmt: str = "text",
    html_path: Path | None = None,
    partitions: int = 1,
) -> list[BacktestReport]:
    """The `escalator backtest` command: prints the summary, and the what-if with --compare;
    `fmt` "json" prints the whole report as one JSON document; `html_path` writes it as one
    self-contained page with charts."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    total = None if is_gzip(events_path) else count_lines(events_path)
    progress = Progress("backtest", total=total, stream=stderr)
    policies = [policy] if other is None else [policy, other]
    out = open(out_path, "w", encoding="utf-8") if out_path else None  # noqa: SIM115
    try:
        reports = backtest_events(
            policies, lambda: read_history(events_path, numbered=True), [out, None], until,
            progress=progress, errors=stderr, board=True, arrival_order=arrival_order,
            max_ahead=max_ahead, partitions=partitions,
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()
    seconds = progress.close()
    print_reports(reports, seconds, stdout, stderr, fmt, html_path, out_path)
    return reports


def print_reports(
    reports: list[BacktestReport],
    seconds: float,
    stdout: TextIO,
    stderr: TextIO,
    fmt: str = "text",
    html_path: Path | None = None,
    out_path: Path | None = None,
    processes: int = 1,
) -> None:
    """What `escalator backtest` prints (and the --html page), whatever ran it: the report
    of each policy, the what-if of the second against the first, the rate."""
    diff = None if len(reports) < 2 else comparison(reports[0], reports[1])
    if html_path is not None:
        from streams.tools.report_html import render_report

        html_path.write_text(render_report(reports, diff), encoding="utf-8")
    rate = reports[0].events / seconds if seconds > 0 else 0.0
    how = f", {processes} processes" if processes > 1 else ""
    done = f"backtest: {reports[0].events:,} events in {seconds:.1f}s ({rate:,.0f} events/s{how})\n"
    if fmt == "json":
        document = {
            "reports": [report.to_dict() for report in reports],
            "compare": None if diff is None else diff.to_dict(),
        }
        stdout.write(json.dumps(document, indent=2) + "\n")
        stderr.write(done)
    else:
        for report in reports:
            stdout.write(report.format() + "\n\n")
        if diff is not None:
            stdout.write(format_comparison(diff) + "\n")
        stdout.write(done)
    notes = stderr if fmt == "json" else stdout
    if out_path:
        notes.write(f"escalations, priority bumps and reminders written to {out_path}\n")
    if html_path is not None:
        notes.write(f"report page written to {html_path}\n")
