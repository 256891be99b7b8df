"""Backtest throughput of the SLA engine, next to the rate of merely parsing the same history.

    .venv/bin/python bench/engine.py [--tickets 100000] [--seed 7] [--history FILE] [--repeat 3]

Prints events/s for (a) parsing the JSON Lines into TicketEvents and (b) the full
event-time backtest with the default policy (parsing included), and their ratio: the
engine's own cost is what separates the two, printed per event. With --repeat the two
alternate and the best run of each counts, since a shared machine only ever slows a run
down. Goal: at least 80,000 events/s on one core. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from connectors.generator import generate_to_file
from connectors.history import LineError, read_history
from streams.backtest import EventTimeDriver, backtest_events
from streams.processor import encode_state
from streams.progress import Progress
from streams.sla.engine import Engine
from streams.sla.policy import load_policy

TICKETS_PER_AGENT_DAY = 8  # the generator's rough volume; only used to size the history


def parse_only(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = sum(1 for item in read_history(path) if not isinstance(item, LineError))
    return count, time.perf_counter() - start


def backtest(path: Path) -> tuple[int, float, int, int]:
    policy = load_policy()
    progress = Progress("backtest", stream=sys.stderr)
    start = time.perf_counter()
    (report,) = backtest_events([policy], read_history(path), progress=progress)
    seconds = time.perf_counter() - start
    progress.close()
    return report.events, seconds, sum(report.by_reason.values()), report.tickets


def state_bytes(path: Path, limit: int = 20000) -> tuple[float, float]:
    """Bytes of live engine state per ticket over the first `limit` tickets of the history:
    (Python objects while the driver holds them, the worker's changelog and store value)."""
    events = []
    tickets: set[str] = set()
    for item in read_history(path):
        if isinstance(item, LineError):
            continue
        if item.ticket_id not in tickets and len(tickets) >= limit:
            continue
        tickets.add(item.ticket_id)
        events.append(item)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    driver = EventTimeDriver(Engine(load_policy()))
    for event in events:
        driver.feed(event)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    open_states = [s for s in driver.states.values() if not s.closed]
    stored = sum(len(encode_state(0, s)) for s in open_states) / max(len(open_states), 1)
    return (after - before) / max(len(driver.states), 1), stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, help="use this history instead of generating")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    args = parser.parse_args()

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
        parse_runs: list[float] = []
        run_runs: list[float] = []
        for _ in range(max(args.repeat, 1)):
            parsed, parse_s = parse_only(path)
            events, run_s, escalations, tickets = backtest(path)
            parse_runs.append(parse_s)
            run_runs.append(run_s)
        per_ticket, stored = state_bytes(path)

    parse_s, run_s = min(parse_runs), min(run_runs)
    parse_rate = parsed / parse_s
    run_rate = events / run_s
    runs = f"  (best of {len(run_runs)})" if len(run_runs) > 1 else ""
    print(
        f"parse only : {parsed:>10,} events in {parse_s:6.2f}s = {parse_rate:>10,.0f} events/s"
        + runs
    )
    print(
        f"backtest   : {events:>10,} events in {run_s:6.2f}s = {run_rate:>10,.0f} events/s"
        f"  ({tickets:,} tickets, {escalations:,} escalations)"
    )
    print(f"ratio backtest/parse: {run_rate / parse_rate:.2f}  (goal: >= 80,000 events/s backtest)")
    print(
        f"engine, driver and report: {(run_s - parse_s) / events * 1e6:.1f} us per event"
        f" (backtest minus parse; {1e6 / 80_000 - parse_s / parsed * 1e6:.1f} us fits the goal)"
    )
    print(
        f"engine state: ~{per_ticket:,.0f} bytes per ticket in memory (tracemalloc, first 20k "
        f"tickets, engine included); ~{stored:,.0f} bytes per open ticket as stored "
        "(the worker's changelog record)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
