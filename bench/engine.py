"""Backtest throughput of the SLA engine, next to the rate of merely parsing the same history.

    .venv/bin/python bench/engine.py [--tickets 100000] [--seed 7] [--history FILE] [--repeat 3]
                                     [--no-compiled] [--jobs N] [--state-tickets N]
                                     [--partitions N]

Prints events/s for (a) parsing the JSON Lines into TicketEvents, (b) the full event-time
backtest with the default policy (parsing included) in plain Python and (c) the same with
the hot modules compiled by mypyc (scripts/compile-engine builds them into a temporary
directory first, about 40 s), and the ratios: the engine's own cost is what separates a
backtest from parsing, printed per event. Each backtest runs in a fresh child process, so
both start alike. With --repeat the runs alternate and the best of each counts, since a
shared machine only ever slows a run down. Goal: at least 80,000 events/s on one core.
Then `escalator backtest --jobs N` (default: one per core) against `--jobs 1`, --out
written and merged in both, each in a fresh interpreter as the command runs, and the
speed-up (goal: 1.8x on 2 cores). Then `--arrival-order`
with a clock per partition (--partitions, default 6, as the worker) against one clock for
the whole file, in this process: what the partitions cost, and its speed-up on --jobs N
(split by partition). Last, the bytes a
backtest holds per ticket (goal: at most 1,024), against the same with no ticket shelved.
Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from streams.runtime.processor import encode_state
from streams.sla.engine import Engine
from streams.sla.policy import load_policy
from streams.tools.backtest import EventTimeDriver, backtest_events, run_backtest
from streams.tools.backtest_jobs import default_jobs, run_parallel_backtest
from streams.tools.generator import generate_to_file
from streams.tools.history import LineError, read_history
from streams.tools.progress import Progress

TICKETS_PER_AGENT_DAY = 8  # the generator's rough volume; only used to size the history
REPO = Path(__file__).resolve().parent.parent


def parse_only(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = sum(1 for item in read_history(path) if not isinstance(item, LineError))
    return count, time.perf_counter() - start


def backtest(path: Path) -> tuple[int, float, int, int]:
    policy = load_policy()
    progress = Progress("backtest", stream=sys.stderr)
    start = time.perf_counter()
    # as `escalator backtest` reads it: streamed while in time order
    (report,) = backtest_events(
        [policy], lambda: read_history(path, numbered=True), progress=progress
    )
    seconds = time.perf_counter() - start
    progress.close()
    return report.events, seconds, sum(report.by_reason.values()), report.tickets


def backtest_in_child(path: Path, root: Path) -> tuple[int, float, int, int]:
    """backtest() in a fresh interpreter that imports the package from `root`: the source
    tree, or a compiled copy of it. Refuses a run that did not import what it was meant to."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.run(
        [sys.executable, __file__, "--backtest-only", str(path)],
        cwd=root, env=env, stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    result = json.loads(child.stdout)
    engine = Path(result["engine"])
    if engine.parent.parent.parent != root or (engine.suffix == ".py") == (root != REPO):
        raise SystemExit(f"bench: a backtest meant to run from {root} imported {engine}")
    return result["events"], result["seconds"], result["escalations"], result["tickets"]


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (user + system)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def jobs_run(path: Path, jobs: int, tmp: Path, partitions: int = 0) -> tuple[float, float, bytes]:
    """Seconds and CPU seconds (every process) of `escalator backtest --jobs N --out FILE`,
    and the file (the speed-up only counts if the output is the same). The CPU time tells
    the split's own cost apart from a busy machine's. With `partitions`: `--arrival-order
    --partitions N`, split by partition. Each run is timed in a fresh interpreter, as the
    command starts, not in this process: by then it holds about 190 MB that its earlier
    backtests freed, against 57 MB, and the processes `--jobs` forks would inherit it."""
    out = tmp / f"jobs-{jobs}.jsonl"
    child = subprocess.run(
        [sys.executable, __file__, "--jobs-only", str(path), str(out), str(jobs), str(partitions)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    result = json.loads(child.stdout)
    return result["seconds"], result["cpu"], out.read_bytes()


def timed_jobs(path: Path, out: Path, jobs: int, partitions: int) -> tuple[float, float]:
    """jobs_run() in its fresh interpreter."""
    start, cpu = time.perf_counter(), cpu_seconds()
    with open(os.devnull, "w") as sink:
        run_parallel_backtest(
            load_policy(), path, out, stdout=sink, stderr=sink, jobs=jobs,
            arrival_order=partitions > 0, partitions=max(partitions, 1),
        )  # fmt: skip
    return time.perf_counter() - start, cpu_seconds() - cpu


@dataclass
class JobsPairs:
    """The best of `--jobs 1` and of `--jobs N` (seconds, CPU seconds), run in pairs."""

    one_s: float
    many_s: float
    one_cpu: float
    many_cpu: float
    same: bool  # every pair wrote the same file


def jobs_pairs(path: Path, jobs: int, tmp: Path, repeat: int, partitions: int = 0) -> JobsPairs:
    """`repeat` pairs of jobs_run: `--jobs 1`, then `--jobs N`."""
    one: list[tuple[float, float]] = []
    many: list[tuple[float, float]] = []
    same = True
    for _ in range(max(repeat, 1)):
        one_s, one_cpu, one_out = jobs_run(path, 1, tmp, partitions)
        many_s, many_cpu, many_out = jobs_run(path, jobs, tmp, partitions)
        one.append((one_s, one_cpu))
        many.append((many_s, many_cpu))
        same = same and one_out == many_out
    return JobsPairs(
        min(s for s, _ in one), min(s for s, _ in many),
        min(c for _, c in one), min(c for _, c in many), same,
    )  # fmt: skip


def arrival_run(path: Path, partitions: int, tmp: Path) -> tuple[float, bytes]:
    """Seconds of `escalator backtest --arrival-order --partitions N --out FILE`, and the
    file."""
    out = tmp / f"arrival-{partitions}.jsonl"
    start = time.perf_counter()
    with open(os.devnull, "w") as sink:
        run_backtest(load_policy(), path, out, stdout=sink, stderr=sink, arrival_order=True,
                     partitions=partitions)  # fmt: skip
    return time.perf_counter() - start, out.read_bytes()


def compile_engine(dest: Path) -> bool:
    """The compiled copy (scripts/compile-engine); False, with the reason, where it fails."""
    print("compiling the hot modules with mypyc (scripts/compile-engine) ...", file=sys.stderr)
    done = subprocess.run(["bash", str(REPO / "scripts" / "compile-engine"), str(dest)])
    if done.returncode != 0:
        print("bench: no compiled figures (the build failed, see above)", file=sys.stderr)
    return done.returncode == 0


@dataclass
class StateBytes:
    """What a backtest holds per ticket, by tracemalloc (see state_bytes)."""

    per_ticket: float  # bytes per ticket as the backtest keeps them (inert ones shelved)
    unshelved: float  # the same with every state an object: the baseline
    tickets: int
    shelved: int  # tickets kept as bytes at the end
    row: float  # mean bytes of a shelved ticket's row
    stored: float  # bytes per open ticket as the worker's changelog and store hold it
    engine: float  # bytes the engine takes once: its compiled policy, calendars, modules


def _held(path: Path, limit: int, shelve: bool) -> tuple[float, EventTimeDriver, float]:
    """Bytes a driver holds after the history's first `limit` tickets, parsed while traced,
    as a backtest reads them: the event ids and ticket ids a state keeps count; the events
    themselves are garbage once applied. Also the engine's one-off bytes."""
    tickets: set[str] = set()
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    driver = EventTimeDriver(Engine(load_policy()), shelve=shelve)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    label = f"state bytes ({'shelved' if shelve else 'all objects'})"
    progress = Progress(label, unit="lines", stream=sys.stderr)
    for n, item in enumerate(read_history(path), 1):
        if n % 4096 == 0:
            progress.update(4096)
        if isinstance(item, LineError):
            continue
        if item.ticket_id not in tickets:
            if len(tickets) >= limit:
                continue
            tickets.add(item.ticket_id)
        driver.feed(item)
    progress.close()
    item = None
    tickets.clear()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / max(len(driver.states), 1), driver, float(before - start)


def state_bytes(path: Path, limit: int) -> StateBytes:
    """Bytes of live engine state per ticket over the first `limit` tickets of the history,
    as a backtest keeps them, against the same with no ticket shelved. Until issue #22 the
    history was parsed before tracing started, so the event ids a ticket remembers and its
    ids were left out of the figure (about 780 bytes a ticket on the generator's history).
    The engine's one-off bytes are left out: spread over the tickets, they are no cost per
    ticket."""
    per_ticket, driver, engine = _held(path, limit, shelve=True)
    shelf = driver.states
    row = sum(map(len, shelf.shelved.values())) / max(len(shelf.shelved), 1)
    opened = [s for s in shelf.values() if not s.closed]  # the shelved ones decoded
    stored = sum(len(encode_state(0, s)) for s in opened) / max(len(opened), 1)
    tickets, shelved = len(shelf), len(shelf.shelved)
    del driver, shelf, opened
    unshelved, _, _ = _held(path, limit, shelve=False)
    return StateBytes(per_ticket, unshelved, tickets, shelved, row, stored, engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, help="use this history instead of generating")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--no-compiled", action="store_true", help="plain Python only")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="for the speed-up")
    parser.add_argument(
        "--state-tickets", type=int, default=100_000, help="tickets the state bytes cover"
    )
    parser.add_argument(
        "--partitions", type=int, default=6, help="--arrival-order's partition clocks (0: skip)"
    )
    parser.add_argument("--backtest-only", type=Path, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--jobs-only", nargs=4, help=argparse.SUPPRESS)  # history out jobs parts
    args = parser.parse_args()

    if args.backtest_only is not None:
        import streams.sla.engine

        events, seconds, escalations, tickets = backtest(args.backtest_only)
        print(json.dumps({
            "events": events, "seconds": seconds, "escalations": escalations,
            "tickets": tickets, "engine": streams.sla.engine.__file__,
        }))  # fmt: skip
        return 0

    if args.jobs_only is not None:
        history, out, jobs, partitions = args.jobs_only
        seconds, cpu = timed_jobs(Path(history), Path(out), int(jobs), int(partitions))
        print(json.dumps({"seconds": seconds, "cpu": cpu}))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = args.history
        if path is None:
            path = Path(tmp) / "history.jsonl"
            agents = max(1, args.tickets // (TICKETS_PER_AGENT_DAY * args.days))
            progress = Progress("generate", stream=sys.stderr)
            summary = generate_to_file(
                path, agents=agents, days=args.days, seed=args.seed, progress=progress.update
            )
            progress.close()
            print(
                f"history: {summary.tickets:,} tickets, {summary.events:,} events "
                f"({agents} agents x {args.days} days, seed {args.seed})"
            )
        roots = {"plain Python": REPO}
        if not args.no_compiled and compile_engine(Path(tmp) / "compiled"):
            roots["compiled (mypyc)"] = Path(tmp) / "compiled"
        parse_runs: list[float] = []
        runs: dict[str, list[float]] = {name: [] for name in roots}
        outcomes: dict[str, tuple[int, int, int]] = {}  # events, escalations, tickets
        for _ in range(max(args.repeat, 1)):
            parsed, parse_s = parse_only(path)
            parse_runs.append(parse_s)
            for name, root in roots.items():
                events, run_s, escalations, tickets = backtest_in_child(path, root)
                runs[name].append(run_s)
                outcomes[name] = (events, escalations, tickets)
        held = state_bytes(path, args.state_tickets)
        pairs = None
        if args.jobs > 1:
            pairs = jobs_pairs(path, args.jobs, Path(tmp), args.repeat)
        arrival_s: dict[int, list[float]] = {1: [], args.partitions: []}
        arrival_same = True
        if args.partitions > 1:
            outs: dict[int, list[bytes]] = {}
            for round_ in range(max(args.repeat, 1)):
                # the second run of a pair in one process is the slower: alternate who goes first
                pair = (1, args.partitions) if round_ % 2 == 0 else (args.partitions, 1)
                for partitions in pair:
                    run_s, out = arrival_run(path, partitions, Path(tmp))
                    arrival_s[partitions].append(run_s)
                    outs[partitions] = sorted(out.split(b"\n"))
                arrival_same = arrival_same and outs[1] == outs[args.partitions]
        arrival_pairs = None
        if args.partitions > 1 and args.jobs > 1:
            arrival_pairs = jobs_pairs(path, args.jobs, Path(tmp), args.repeat, args.partitions)

    parse_s = min(parse_runs)
    parse_rate = parsed / parse_s
    best = f"  (best of {len(parse_runs)})" if len(parse_runs) > 1 else ""
    print(
        f"parse only : {parsed:>10,} events in {parse_s:6.2f}s = {parse_rate:>10,.0f} events/s"
        + best
    )
    rates = {}
    for name, seconds in runs.items():
        events, escalations, tickets = outcomes[name]
        run_s = min(seconds)
        rates[name] = events / run_s
        print(
            f"backtest, {name:<16}: {events:>10,} events in {run_s:6.2f}s = "
            f"{rates[name]:>10,.0f} events/s  ({tickets:,} tickets, {escalations:,} escalations;"
            f" ratio to parse {rates[name] / parse_rate:.2f}; engine, driver and report "
            f"{(run_s - parse_s) / events * 1e6:.1f} us per event)"
        )
    if len(rates) > 1:
        print(f"compiled / plain Python: {rates['compiled (mypyc)'] / rates['plain Python']:.2f}x")
        if len(set(outcomes.values())) > 1:
            print("bench: the compiled and the plain Python backtest DISAGREE (see above)")
    print(
        f"goal: >= 80,000 events/s backtest on one core; best here {max(rates.values()):,.0f}"
        f" ({1e6 / 80_000 - parse_s / parsed * 1e6:.1f} us per event beyond parsing fits it)"
    )
    if pairs is not None:
        one_s, many_s = pairs.one_s, pairs.many_s
        print(
            f"backtest --jobs {args.jobs}: {parsed / many_s:,.0f} events/s against --jobs 1: "
            f"{parsed / one_s:,.0f} events/s (--out written): speed-up {one_s / many_s:.2f}x "
            f"on {default_jobs()} cores (goal 1.8x on 2); outputs "
            + ("identical" if pairs.same else "DIFFER")
        )
        one_cpu, many_cpu = pairs.one_cpu, pairs.many_cpu
        print(
            f"backtest --jobs {args.jobs}: {many_cpu:.2f} CPU-s in all its processes against "
            f"{one_cpu:.2f} for --jobs 1 (ratio {many_cpu / one_cpu:.2f}): on {args.jobs} free "
            f"cores the work alone allows a speed-up of {args.jobs * one_cpu / many_cpu:.2f}x"
        )
        load = os.getloadavg()[0]
        print(f"load average during the run: {load:.1f} (a shared machine lowers the speed-up)")
    if args.partitions > 1:
        one_s, many_s = min(arrival_s[1]), min(arrival_s[args.partitions])
        print(
            f"backtest --arrival-order --partitions {args.partitions}: {parsed / many_s:,.0f} "
            f"events/s against one clock: {parsed / one_s:,.0f} events/s (--out written, plain "
            f"Python in this process): ratio {one_s / many_s:.2f}; --out "
            + ("the same lines" if arrival_same else "DIFFERENT lines")
            + " (a history in time order has no late event: the clocks agree on every action,"
            " the partitions only list them in their own order)"
        )
    if arrival_pairs is not None:
        one_s, many_s = arrival_pairs.one_s, arrival_pairs.many_s
        print(
            f"backtest --arrival-order --partitions {args.partitions} --jobs {args.jobs} (split "
            f"by partition): {parsed / many_s:,.0f} events/s against --jobs 1: "
            f"{parsed / one_s:,.0f} events/s: speed-up {one_s / many_s:.2f}x, CPU ratio "
            f"{arrival_pairs.many_cpu / arrival_pairs.one_cpu:.2f}; outputs "
            + ("identical" if arrival_pairs.same else "DIFFER")
        )
    print(
        f"engine state: {held.per_ticket:,.0f} bytes per ticket as a backtest holds them "
        f"(tracemalloc over {held.tickets:,} tickets, {held.shelved:,} of them shelved as their "
        f"row, {held.row:,.0f} bytes on average; goal <= 1,024) against {held.unshelved:,.0f} "
        f"with every state an object: ratio {held.per_ticket / held.unshelved:.2f}; the engine "
        f"itself {held.engine / 2**20:,.1f} MB once; ~{held.stored:,.0f} bytes per open ticket "
        f"as stored (the worker's changelog record)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
