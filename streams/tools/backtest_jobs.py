"""`escalator backtest --jobs N`: one backtest on N processes, tickets split by hash.

In event time (the backtest's default order) a ticket's actions depend only on its own
events and on where history ends: each fires at its due instant, whatever other tickets
do. So each process reads the whole file, decodes only the lines of its tickets
(`streams.tools.history.shard_of`), and backtests them; the processes agree on where history
ends before they finish. The queue ops alerts span tickets: each process then raises those
of its share of the queues (shared by volume), from every process's recorded stats, while
the parent merges the --out files by (fired_at, ticket), the order the one-process backtest
writes. The parent then adds the reports up. The result is byte-identical to `--jobs 1`
(tests/streams/tools/test_backtest_jobs.py).

With `--arrival-order` a ticket's clock is its partition's, so the tickets are split by
partition instead (the producers' murmur2, at most one process per partition): a partition's
actions, and which of its queue stats are late, depend on its own events alone. The --out
lines are merged by the history line that fired them, and each instant's put in ticket order
as one process writes them.

A history where --max-ahead refuses a line depends on every ticket's clock (the history's),
and then one process runs the whole backtest instead, for an exact result.
"""

from __future__ import annotations

import heapq
import io
import multiprocessing
import os
import pickle
import queue
import sys
import tempfile
import traceback
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Final, TextIO, cast

from streams.sla.policy import Policy
from streams.sla.queues import QueueStat, QueueWindows, StatKind
from streams.sla.report import Attainment, BacktestReport
from streams.tools.backtest import (
    DEFAULT_MAX_AHEAD,
    MAX_LINES_KEPT,
    backtest_events,
    collector_paused,
    print_reports,
    run_backtest,
)
from streams.tools.history import count_lines, is_gzip, read_history
from streams.tools.progress import Progress

_FIRST = -(2**63)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Shard:
    """What one process sends back."""

    reports: list[BacktestReport]
    first: int | None  # earliest and latest event time accepted
    last: int | None
    errors: list[str]  # its stderr lines
    exact: bool  # False: its part depends on other tickets (a line refused by --max-ahead)
    ordered: bool = True  # False: its queue stats' clocks go back (see _replay_own_queues)
    first_line: int | None = None  # the line of its first event


class _Counter:
    """Progress.update() of a child, added to a counter the parent shows."""

    def __init__(self, value: Synchronized) -> None:  # type: ignore[type-arg]
        self.value, self.count = value, 0

    def update(self, n: int) -> None:
        with self.value.get_lock():
            self.value.value += n


def _run_shard(
    index: int, jobs: int, policies: list[Policy], events_path: Path, out: Path | None,
    until: int | None, max_ahead: int, barrier: Barrier, ends: Any, done: Any, tmp: Path,
    partitions: int = 0, *, written: Callable[[], None] | None = None,
) -> Shard:  # fmt: skip
    """`partitions`: an --arrival-order backtest on that many partitions. `written` is
    called once its --out file is: the parent merges them while the queues are replayed."""
    ends[index] = _FIRST
    first: list[tuple[int, int]] = []  # (line, occurred_at) of the first event
    agreed: list[int | None] = [until]

    def history() -> Iterator[Any]:
        first.clear()
        for pair in read_history(events_path, numbered=True, shard=(index, jobs),
                                 partitions=partitions):  # fmt: skip
            item = pair[1]
            if not first and hasattr(item, "occurred_at"):
                first.append((pair[0], item.occurred_at))
            yield pair

    def agreed_end(clock: int | None) -> int | None:
        if until is not None:
            return until
        ends[index] = _FIRST if clock is None else clock
        barrier.wait()
        latest = max(ends)
        agreed[0] = None if latest == _FIRST else latest
        return agreed[0]

    errors = io.StringIO()
    keys: list[Any] | None = [] if out else None
    arrival = partitions > 0
    try:
        with open(out, "w", encoding="utf-8") if out else io.StringIO() as sink:
            outs: list[Any] = [sink if out else None] + [None] * (len(policies) - 1)
            reports = backtest_events(
                policies, history, outs, agreed_end, progress=_Counter(done),  # type: ignore[arg-type]
                errors=errors, board=True, max_ahead=max_ahead, record_ops=True,
                out_keys=None if arrival else keys, arrival_order=arrival,
                partitions=max(partitions, 1), arrival_keys=keys if arrival else None,
            )  # fmt: skip
        if out and keys is not None:
            _write_chunks(_keys_path(out), keys)
            keys = None
        if written is not None:
            written()
        with collector_paused():  # the states are still alive: a collection walks them all
            ordered = _replay_own_queues(index, jobs, policies, reports, agreed[0], barrier, tmp)
    except BaseException:
        barrier.abort()  # the others must not wait for this one
        raise
    last = ends[index] if until is None else None
    report = reports[0]
    return Shard(
        reports, first[0][1] if first else None, None if last == _FIRST else last,
        errors.getvalue().splitlines(), exact=not report.rejected_lines, ordered=ordered,
        first_line=first[0][0] if first else None,
    )  # fmt: skip


def _replay_own_queues(
    index: int, jobs: int, policies: list[Policy], reports: list[BacktestReport],
    until: int | None, barrier: Barrier, tmp: Path,
) -> bool:  # fmt: skip
    """The queue ops alerts of this process's share of the queues (`_queue_owners`), from
    every process's recorded stats: a queue's windows need the stats of all its tickets,
    which every shard holds some of. One process replays the records of all shards merged
    by (clock, shard, position), and each shard's records are in clock order.

    Each process sends every process only the stats of the queues that one replays, and
    the clocks of its records that close windows. Windows close at the first such clock a
    hop past the last close, whatever queue its record is of, so every process finds the
    same closing instants from the clocks alone (`_closes`) and replays its own stats with
    them: the alerts the whole replay would raise for those queues. The replay is most of
    what a merge costs, so it is not left to the parent alone. False when a shard's clocks
    go back, which its driver never does (the parent then runs one process)."""
    for p, report in enumerate(reports):
        if report.ops_record is not None:
            volumes = Counter(map(_QUEUE, map(_STAT, report.ops_record)))
            with (tmp / f"volumes-{index}-{p}").open("wb") as f:
                pickle.dump(volumes, f, protocol=pickle.HIGHEST_PROTOCOL)
    barrier.wait()  # every process's queue volumes are written
    own = [
        []
        if report.ops_record is None
        else _send_records(tmp, index, jobs, p, report.ops_record, _queue_owners(tmp, jobs, p))
        for p, report in enumerate(reports)
    ]
    barrier.wait()  # every process's records are written
    ordered = True
    for p, (policy, report) in enumerate(zip(policies, reports, strict=True)):
        if report.ops_record is None:
            continue
        report.ops_record = None
        ticks = [_read_ticks(tmp / f"ticks-{i}-{p}") for i in range(jobs)]
        if not all(_ascending(clocks) for clocks, _ in ticks):
            ordered = False
            continue
        replay = BacktestReport(policy.source)
        replay.ops = QueueWindows(policy.ops_alerts)
        stats = heapq.merge(
            *(
                own[p] if i == index else _read_chunks(tmp / f"ops-{i}-{index}-{p}")
                for i in range(jobs)
            )
        )
        merged = heapq.merge(stats, _closes(ticks, policy.ops_alerts.hop))
        replay.replay_ops(_as_replayed(merged), until)
        report.ops_alerts = replay.ops_alerts
        # in arrival order the shard decided which stats were late (BacktestReport._count)
        report.ops_late = replay.ops_late + (report.ops.late if report.ops is not None else 0)
    return ordered


_CHUNK = 20_000  # items per pickle in a file a process writes for the others
# a stat's kind as its index here: an Enum's .value, hash and call are Python functions
_KINDS: Final = (StatKind.CREATED, StatKind.RESOLVED, StatKind.BREACHED)
_STAT: Final = itemgetter(2)  # of a record (clock, closes, stat)
_QUEUE: Final = attrgetter("queue")

# A swapped stat: (clock, shard, 2 * position, queue, kind, at, id), or as its own process
# keeps it (clock, shard, 2 * position, stat); a closing instant: (clock, shard,
# 2 * position + 1), right after the stat it closes at, as tuples compare.
_Swapped = tuple[int, int, int, str, int, int, str]
_Kept = tuple[int, int, int, QueueStat]
_Close = tuple[int, int, int]


def _queue_owners(tmp: Path, jobs: int, policy: int) -> dict[str, int]:
    """Which process replays each queue: the largest queues first, each to the process with
    the fewest stats so far (ties: the lower process), from every process's volumes, so
    that all find the same. A hash of the name split the stats 56:44 on a benchmark day of
    45 queues, and the process with more finished its replay last."""
    volumes: Counter[str] = Counter()
    for i in range(jobs):
        with (tmp / f"volumes-{i}-{policy}").open("rb") as f:
            volumes.update(pickle.load(f))
    loads = [0] * jobs
    owners: dict[str, int] = {}
    for name, volume in sorted(volumes.items(), key=lambda item: (-item[1], item[0])):
        to = loads.index(min(loads))
        owners[name] = to
        loads[to] += volume
    return owners


def _send_records(
    tmp: Path, index: int, jobs: int, policy: int, records: list[tuple[int, bool, QueueStat]],
    owner: dict[str, int],
) -> list[_Kept]:  # fmt: skip
    """This process's records as the others read them: to each process the stats of its
    queues, and to all the clocks (with positions) of the records that close windows. The
    stats of its own queues it keeps, as they are: not written, read and built again."""
    created, resolved = _KINDS[0], _KINDS[1]
    out: list[list[_Swapped]] = [[] for _ in range(jobs)]
    own: list[_Kept] = []
    clocks, positions = array("q"), array("q")
    for n, (clock, closes, s) in enumerate(records):
        to = owner[s.queue]
        if to == index:
            own.append((clock, index, 2 * n, s))
        else:
            kind = 0 if s.kind is created else 1 if s.kind is resolved else 2
            out[to].append((clock, index, 2 * n, s.queue, kind, s.at, s.id))
        if closes:
            clocks.append(clock)
            positions.append(2 * n + 1)
    for to, items in enumerate(out):
        if to != index:
            _write_chunks(tmp / f"ops-{index}-{to}-{policy}", items)
    with (tmp / f"ticks-{index}-{policy}").open("wb") as f:
        pickle.dump((clocks, positions), f, protocol=pickle.HIGHEST_PROTOCOL)
    return own


def _read_ticks(path: Path) -> tuple[array[int], array[int]]:
    with path.open("rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


def _ascending(clocks: array[int]) -> bool:
    return all(a <= b for a, b in zip(clocks, islice(clocks, 1, None), strict=False))


def _closes(ticks: list[tuple[array[int], array[int]]], hop: int) -> list[_Close]:
    """Where the whole replay closes windows, from each shard's (ascending clocks,
    positions) of the records that close: at the first such record in merged order, then
    at the first one whose clock is a hop past the last close's (BacktestReport._close).
    Found by bisection, not by a walk through every record."""
    found: list[_Close] = []
    at = [0] * len(ticks)
    threshold: int | None = None
    while True:
        best: tuple[int, int, int] | None = None  # (clock, shard, index in its clocks)
        for shard, (clocks, _) in enumerate(ticks):
            k = at[shard] if threshold is None else bisect_left(clocks, threshold, at[shard])
            at[shard] = k
            if k < len(clocks) and (best is None or clocks[k] < best[0]):  # ties: lower shard
                best = (clocks[k], shard, k)
        if best is None:
            return found
        clock, shard, k = best
        found.append((clock, shard, ticks[shard][1][k]))
        threshold = clock + hop
        at[shard] = k + 1


def _as_replayed(
    merged: Iterator[_Swapped | _Kept | _Close],
) -> Iterator[tuple[int, bool, QueueStat | None]]:
    """The merged records as replay_ops takes them: a stat is only added, and a closing
    instant only moves the clock."""
    kinds = _KINDS
    for record in merged:
        size = len(record)
        if size == 3:
            yield record[0], True, None
        elif size == 4:
            yield record[0], False, cast(_Kept, record)[3]
        else:
            clock, _, _, queue, kind, at, ident = cast(_Swapped, record)
            yield clock, False, QueueStat(queue, kinds[kind], at, ident)


def _write_chunks(path: Path, items: list[Any]) -> None:
    with path.open("wb") as f:
        for at in range(0, len(items), _CHUNK):
            pickle.dump(items[at : at + _CHUNK], f, protocol=pickle.HIGHEST_PROTOCOL)


def _read_chunks(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        while True:
            try:
                chunk = pickle.load(f)
            except EOFError:
                return
            yield from chunk


def _child(results: Any, index: int, *args: Any) -> None:
    """Puts (index, None) once its --out file is written, then (index, its Shard), or
    (index, the traceback)."""
    try:
        results.put((index, _run_shard(index, *args, written=lambda: results.put((index, None)))))
    except BaseException:  # noqa: BLE001 - sent to the parent, which stops
        results.put((index, traceback.format_exc()))


def _exact(shards: list[Shard], max_ahead: int, arrival_order: bool = False) -> bool:
    """No shard refused a line, and none would have been refused by the whole history's
    clock: each shard's events are at most `max_ahead` apart, so only a gap between the
    spans of the shards could refuse one."""
    if not all(s.exact for s in shards):
        return False
    if arrival_order:
        return _exact_in_arrival_order(shards, max_ahead)
    spans = sorted((s.first, s.last) for s in shards if s.first is not None and s.last is not None)
    reach = None
    for first, last in spans:
        if reach is not None and first - reach > max_ahead:
            return False
        reach = last if reach is None else max(reach, last)
    return True


def _exact_in_arrival_order(shards: list[Shard], max_ahead: int) -> bool:
    """In file order a shard's clock is never ahead of the history's, so a line the history
    refuses its shard refuses too, unless it is the shard's first event, which no clock of
    its own stands before. That one is surely not refused if another shard's first event,
    on an earlier line, is at most `max_ahead` before it; otherwise this says not exact
    and one process decides (as rarely as a history's first events are far apart)."""
    firsts = sorted(
        (s.first_line, s.first) for s in shards if s.first_line is not None and s.first is not None
    )
    latest: int | None = None  # the latest first event on an earlier line
    for _, at in firsts:
        if latest is not None and at - latest > max_ahead:
            return False
        latest = at if latest is None else max(latest, at)
    return True


def merge_reports(reports: list[BacktestReport], policy: Policy | None = None) -> BacktestReport:
    """One policy's report from the reports of disjoint sets of tickets; the queue ops
    alerts, which span tickets, each process raised for its share of the queues."""
    merged = BacktestReport(reports[0].policy_source)
    for r in reports:
        merged.events += r.events
        merged.bad_lines += r.bad_lines
        merged.duplicates += r.duplicates
        merged.tickets += r.tickets
        merged.priority_bumps += r.priority_bumps
        merged.reminders += r.reminders
        merged.silenced.update(r.silenced)
        merged.by_reason.update(r.by_reason)
        merged.by_kind.update(r.by_kind)
        merged.by_level.update(r.by_level)
        for key, cell in r.attainment.items():
            total = merged.attainment[key]
            merged.attainment[key] = Attainment(
                total.met + cell.met, total.missed + cell.missed, total.open + cell.open
            )
        merged.first_response_ms.extend(r.first_response_ms)
        merged.outcomes.update(r.outcomes)
        merged.due.update(r.due)
        if r.board is not None:
            merged.board = {**(merged.board or {}), **r.board}
        if r.board_warnings is not None:
            merged.board_warnings = {**(merged.board_warnings or {}), **r.board_warnings}
        merged.per_hour.update(r.per_hour)
        for key, scores in r.csat.items():
            merged.csat[key].extend(scores)
        for level, times in r.answer_ms.items():
            merged.answer_ms[level].extend(times)
        merged.unanswered.update(r.unanswered)
    if policy is not None and policy.ops_alerts.enabled:
        # each process alerted on its own queues (_replay_own_queues): in one process's
        # order, windows by (end, queue), a window's alerts as they were raised
        merged.ops = QueueWindows(policy.ops_alerts)
        alerts = [a for r in reports for a in r.ops_alerts]
        merged.ops_alerts = sorted(alerts, key=lambda a: (a.window_end, a.queue))
        merged.ops_late = sum(r.ops_late for r in reports)
    merged.duplicate_lines = sorted(n for r in reports for n in r.duplicate_lines)[:MAX_LINES_KEPT]
    return merged


def _keys_path(part: Path) -> Path:
    return part.with_suffix(".keys")


def _keyed_lines(part: Path) -> Iterator[tuple[Any, bytes]]:
    """A shard's --out lines with the keys it wrote beside them. The shards wrote UTF-8;
    the lines are copied as they are."""
    with part.open("rb") as f:
        yield from zip(_read_chunks(_keys_path(part)), f, strict=True)


def _merge_arrival_outs(parts: list[Path], out_path: Path) -> None:
    """The shards' --out lines of an arrival-order backtest in the one-process order: by
    the history line whose event fired them, each line's in order, then those of the end of
    history by (fired_at, ticket); and as BacktestRun._flush writes them, each run of lines
    with one fired_at in ticket order. The keys (ArrivalKey) name both, so no line is
    parsed."""
    run: list[tuple[str, bytes]] = []
    instant: int | None = None
    with out_path.open("wb") as out:
        for key, line in heapq.merge(*map(_keyed_lines, parts), key=lambda pair: pair[0][:4]):
            if key[4] != instant:
                run.sort(key=itemgetter(0))  # stable: a ticket's own lines keep their order
                out.writelines(text for _, text in run)
                run.clear()
                instant = key[4]
            run.append((key[5], line))
        run.sort(key=itemgetter(0))
        out.writelines(text for _, text in run)


def _merge_outs(parts: list[Path], out_path: Path) -> None:
    """The shards' --out lines in the one-process order: by fired_at, then ticket; a
    ticket's own lines keep their order (a ticket is in one shard, heapq.merge is stable).
    Each shard wrote the (fired_at, ticket) of its lines beside them, so none is parsed."""
    with out_path.open("wb") as out:
        merged = heapq.merge(*map(_keyed_lines, parts), key=itemgetter(0))
        out.writelines(line for _, line in merged)


def run_parallel_backtest(
    policy: Policy,
    events_path: Path,
    out_path: Path | None = None,
    other: Policy | None = None,
    until: int | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    arrival_order: bool = False,
    max_ahead: int = DEFAULT_MAX_AHEAD,
    jobs: int = 0,
    fmt: str = "text",
    html_path: Path | None = None,
    partitions: int = 1,
) -> list[BacktestReport]:
    """run_backtest() on `jobs` processes (0: one per core), with the same output."""
    jobs = jobs or default_jobs()
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = (
        policy, events_path, out_path, other, until, stdout, stderr, arrival_order, max_ahead,
        fmt, html_path,
    )  # fmt: skip
    if arrival_order:
        jobs = min(jobs, partitions)  # a partition's tickets are one process's
    if jobs <= 1:
        return run_backtest(*args, partitions=partitions)
    policies = [policy] if other is None else [policy, other]
    total = None if is_gzip(events_path) else count_lines(events_path)
    progress = Progress("backtest", total=total, stream=stderr)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(jobs)
    ends = context.Array("q", jobs)
    done = context.Value("q", 0)
    with tempfile.TemporaryDirectory(prefix="escalator-backtest-") as tmp:
        parts = [Path(tmp) / f"out-{i}.jsonl" for i in range(jobs)] if out_path else []
        results = context.Queue()
        processes = [
            context.Process(  # forked: the arguments are inherited, not pickled
                target=_child,
                args=(
                    results,
                    i,
                    jobs,
                    policies,
                    events_path,
                    parts[i] if parts else None,
                    until,
                    max_ahead,
                    barrier,
                    ends,
                    done,
                    Path(tmp),
                    partitions if arrival_order else 0,
                ),
                daemon=True,
            )  # fmt: skip
            for i in range(jobs)
        ]
        for process in processes:
            process.start()

        def stop() -> None:
            barrier.abort()
            for process in processes:
                process.kill()
            progress.close()

        got: dict[int, Shard | str] = {}
        written = 0
        shown = 0
        failed: str | None = None
        while len(got) < jobs and failed is None:
            try:
                index, result = results.get(timeout=0.2)
                if result is None:  # its --out file is written, before its Shard comes
                    written += 1
                    if written == jobs and out_path:  # while they replay their queues
                        try:
                            merge = _merge_arrival_outs if arrival_order else _merge_outs
                            merge(parts, out_path)
                        except BaseException:
                            stop()
                            raise
                else:
                    got[index] = result
                if isinstance(result, str):
                    failed = result
            except queue.Empty:  # a child's results are in the pipe before it exits
                dead = [p for p in processes if not p.is_alive()]
                if any(p.exitcode for p in dead) or len(dead) == jobs:
                    failed = f"a process died (exit codes {[p.exitcode for p in dead]})"
            now = done.value
            progress.update(now - shown)
            shown = now
        if failed is not None:
            stop()
            raise RuntimeError(f"backtest --jobs: {failed}")
        for process in processes:
            process.join()
        shards = [cast(Shard, got[i]) for i in range(jobs)]  # none failed
        progress.update(done.value - shown)
        why = None
        if not all(s.ordered for s in shards):  # every process read every process's clocks
            why = (
                "a process's queue stats are not in clock order, so their ops alerts cannot"
                " be split"
            )
        elif not _exact(shards, max_ahead, arrival_order):
            why = (
                "--max-ahead refuses (or, in arrival order, may refuse) lines of this history,"
                " which depends on every ticket's clock"
            )
        if why is not None:
            progress.close()
            stderr.write(f"backtest --jobs: {why}: running on one process\n")
            return run_backtest(*args, partitions=partitions)
    seconds = progress.close()
    reports = [merge_reports([s.reports[i] for s in shards], p) for i, p in enumerate(policies)]
    _report_errors(shards, reports[0], stderr)
    print_reports(reports, seconds, stdout, stderr, fmt, html_path, out_path, processes=jobs)
    return reports


def _report_errors(shards: list[Shard], report: BacktestReport, stderr: TextIO) -> None:
    """The shards' bad lines by line number, then what the one-process run says of
    duplicates (each shard's own summary of them is dropped)."""
    lines = [e for s in shards for e in s.errors if not e.startswith(("ignored ", "... "))]
    bad = sorted(lines, key=_line_number)
    for text in bad[:20]:
        stderr.write(text + "\n")
    skipped = report.bad_lines - min(len(bad), 20)
    if skipped > 0 and len(bad) >= 20:
        stderr.write(f"... {skipped} more bad lines skipped\n")
    if report.duplicates:
        shown = ", ".join(str(n) for n in report.duplicate_lines[:20])
        more = f" and {report.duplicates - 20:,} more" if report.duplicates > 20 else ""
        stderr.write(
            f"ignored {report.duplicates:,} events whose event_id a ticket already"
            f" had: lines {shown}{more}\n"
        )


def _line_number(text: str) -> int:
    for word in text.replace(":", " ").split():
        if word.isdigit():
            return int(word)
    return 0
