"""Soak: the pipeline at a steady rate for a long time; its memory must stay flat (figures).

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 100] [--warmup 5]

The chaos run's setup without its faults (bench/chaos.py: a broker and a Redis of its own,
three event-time workers, ingest, the Redis sink and the webhook sink posting to a local
receiver); a generated history is posted through ingest at a steady rate. Every 10 s it
samples the resident memory (VmRSS, the process and its children) of each worker, sink and
ingest, and each worker's stored and open tickets (its /metrics); at the end it prints each
one's first and last sample and the least-squares slope in MB/h over the samples after the
warm-up, plus the events sent. A slope near 0 is flat memory; a process that grows by more
than 10 MB/h is flagged.

A worker's state is every ticket it stores: open ones, and closed ones for the policy's
closed retention (7 days of event time; solved ones that never close, 30). A day of history
compressed into the run would only add tickets, so the worker would grow with its state (about
3.6 KB a stored ticket: its decoded state in the processor's cache, its bytes in the store's
front, its due index entry) and the slope would say nothing about leaks. So the history spans
many days, with as many agents as the rate allows, and moves event time fast enough that
`STORE_LIFETIME_DAYS` (how long a generated ticket stays stored) pass within the warm-up:
after it, tickets leave at the rate they arrive, the stored count is steady (printed at the
warm-up's end and at the end), and a worker whose memory still grows leaks.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.*, tests.integration

from bench.chaos import Sender, chaos_setup, log  # noqa: E402
from bench.pipeline import memory_mb  # noqa: E402
from streams.sla.events import EventType  # noqa: E402
from streams.tools.generator import generate_history  # noqa: E402
from streams.tools.history import write_history  # noqa: E402

SAMPLE_S = 10.0
FLAT_MB_PER_H = 10.0
# Event time a generated ticket stays in a worker's store: resolved within a day or two,
# closed about 4 days later, kept 7 days after that (the default closed retention).
STORE_LIFETIME_DAYS = 15
EVENTS_PER_AGENT_DAY = 75  # about what streams.tools.generator makes
DAY = timedelta(days=1)


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB/h."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 3600 if var else 0.0


@dataclass(frozen=True)
class HistoryPlan:
    """A history whose tickets leave the workers' stores at the rate they arrive once the
    warm-up is over: `STORE_LIFETIME_DAYS` of event time pass within the warm-up."""

    days: int
    agents: int

    @classmethod
    def sized(cls, minutes: float, rate: float, warmup_min: float) -> HistoryPlan:
        days = max(1, math.ceil(minutes * STORE_LIFETIME_DAYS / max(warmup_min, 0.1)))
        agents = max(1, round(rate * minutes * 60 / (days * EVENTS_PER_AGENT_DAY)))
        return cls(days, agents)

    def write(self, path: Path, now: datetime) -> int:
        """The history's events up to its last day (the tail of its last tickets, sparse events
        over weeks, would run event time ahead at the end); tickets created. It ends weeks
        before `now`, so ingest takes every event (never ahead of its clock)."""
        start = datetime.combine((now - (self.days + 60) * DAY).date(), datetime.min.time(), UTC)
        start -= start.weekday() * DAY  # a Monday, as the generator's default
        end_ms = int((start + self.days * DAY).timestamp() * 1000)
        events = [e for e in generate_history(self.agents, self.days, 7, start)
                  if e.occurred_at < end_ms]  # fmt: skip
        write_history(path, events)
        return sum(1 for e in events if e.type is EventType.CREATED)


def worker_tickets(port: int) -> tuple[int, int] | None:
    """(tickets stored, open tickets) of a worker, from its /metrics; None if it answers not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    stored = opened = 0.0
    for line in text.splitlines():
        if line.startswith("escalator_table_keys{"):
            stored += float(line.rsplit(" ", 1)[1])
        elif line.startswith("escalator_tickets_open{"):
            opened += float(line.rsplit(" ", 1)[1])
    return int(stored), int(opened)


@dataclass
class Series:
    """One process's samples: (s since the start, MB), and a worker's (s, stored, open)."""

    rss: list[tuple[float, float]]
    tickets: list[tuple[float, int, int]]

    def summary(self, name: str, warmup_s: float) -> str:
        steady = [(t, m) for t, m in self.rss if t >= warmup_s]
        slope = slope_per_hour(steady)
        flag = "flat" if abs(slope) <= FLAT_MB_PER_H else "GROWS" if slope > 0 else "shrinks"
        first, last = self.rss[0][1], self.rss[-1][1]
        warm = steady[0][1] if steady else last
        text = (
            f"{name:<13}: RSS {first:6.0f} MB at start, {warm:6.0f} after warm-up, {last:6.0f}"
            f" at the end; slope {slope:+7.1f} MB/h ({flag})"
        )
        after = [s for s in self.tickets if s[0] >= warmup_s]
        if not self.tickets or not after:
            return text
        (_, s0, _), (_, sw, ow), (t1, s1, o1) = self.tickets[0], after[0], self.tickets[-1]
        text += f"\n{'':<13}  tickets stored {sw:,} after warm-up, {s1:,} at the end"
        text += f" (open {ow:,} -> {o1:,})"
        if sw > s0:
            per = (warm - first) * 2**20 / (sw - s0)  # fixed warm-up costs included: at most
            hours = (t1 - after[0][0]) / 3600
            explained = (s1 - sw) * per / 2**20 / hours if hours else 0.0
            text += (
                f"; the warm-up grew {per / 1024:.1f} KB a stored ticket, so the change in"
                f" stored tickets explains {explained:+.1f} MB/h"
            )
        return text


def run_soak(root: Path, minutes: float, rate: float, warmup_min: float) -> list[str]:
    seconds = minutes * 60
    history = root / "history.jsonl"
    plan = HistoryPlan.sized(minutes, rate, warmup_min)
    tickets = plan.write(history, datetime.now(UTC))
    lines = [raw for raw in history.read_text().splitlines() if raw.strip()]
    rate = len(lines) / seconds
    per_min = plan.days / minutes
    log(
        f"history: {plan.days} days of {plan.agents} agents, {tickets:,} tickets,"
        f" {len(lines):,} events; {rate:.0f} events/s, {per_min:.1f} days of event time a minute"
    )
    with chaos_setup(root, seed=7) as (_services, _line, _receiver, cluster):
        ingest = cluster.procs["ingest"]
        sender = Sender(f"http://127.0.0.1:{ingest.web_port}", lines, rate)
        sending = threading.Thread(target=sender.run, daemon=True)
        series = {name: Series([], []) for name in cluster.procs}
        started = time.monotonic()
        sending.start()
        while sending.is_alive():
            at = time.monotonic() - started
            for name, proc in cluster.procs.items():
                if proc.proc.poll() is not None:
                    raise SystemExit(f"{name} exited during the soak:\n{proc.log_text()[-2000:]}")
                series[name].rss.append((at, memory_mb(proc.proc.pid)))
                if name.startswith("worker"):
                    counts = worker_tickets(proc.web_port)
                    if counts is not None:
                        series[name].tickets.append((at, *counts))
            if len(series["ingest"].rss) % 30 == 0:
                log(f"{sender.sent:,} events sent; " + ", ".join(
                    f"{n} {s.rss[-1][1]:.0f} MB" for n, s in series.items()
                ) + "; tickets stored " + ", ".join(
                    f"{s.tickets[-1][1]:,}" for s in series.values() if s.tickets
                ))  # fmt: skip
            time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started - at)))
        if sender.error:
            raise SystemExit(f"sending failed: {sender.error}")
    out = [
        f"soak     : {minutes:g} min, {sender.sent:,} events through ingest at {rate:.0f}/s;"
        f" {plan.days} days of {plan.agents} agents ({tickets:,} tickets, {per_min:.1f} days of"
        f" event time a minute); RSS sampled every {SAMPLE_S:g} s, slope after {warmup_min:g}"
        " min of warm-up"
    ]
    out += [s.summary(name, warmup_min * 60) for name, s in series.items()]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events a second via ingest")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help=f"minutes left out of the slope ({STORE_LIFETIME_DAYS} days of event time)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        for text in run_soak(root, args.minutes, args.rate, args.warmup):
            print(text)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
