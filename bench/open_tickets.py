"""`bench/pipeline.py --open-tickets N`: a worker holding N open tickets.

Writes N open tickets' states to a fresh changelog (as a worker would have left them), then
starts an `escalator worker` that restores them all (a full restore), stops it with SIGTERM
(its stores keep a checkpoint) and starts it again (a restore from the checkpoint). Prints
peak RSS, bytes per open ticket in memory (peak RSS over N, an upper bound: the process and
its clients included) and on disk (the RocksDB directories over N), the stored value size,
and both restore times. Then events/s of that worker (its store full) next to a worker
with an empty store, draining copies of the same backlog side by side, and their ratio.
Figures, never pass/fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.processor import encode_state
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics, ensure_topics
from streams.runtime.worker import changelog_topic
from streams.sla.engine import Engine
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import load_policy
from streams.tools.generator import generate_to_file
from streams.tools.progress import Progress
from streams.tools.replay import replay

REBUILT = re.compile(r"due index rebuilt: (\d+) tickets.*?\((\d+) changelog records restored, "
                     r"\d+ partitions kept, ([\d.]+)s\)")  # fmt: skip


def fill_changelog(settings: Settings, changelog: str, partitions: int, n: int) -> float:
    """N open tickets (created, no reply yet), spread over the partitions; returns the mean
    stored value size."""
    engine = Engine(load_policy())
    producer = Producer({**idempotent_producer(settings), "linger.ms": 50, "batch.size": 1 << 20})
    now = int(time.time() * 1000)
    size = 0
    progress = Progress("changelog", total=n, stream=sys.stderr)
    for i in range(n):
        p = i % partitions
        ticket = f"OPEN-{i:07d}"
        event = TicketEvent(event_id=f"{ticket}-1", ticket_id=ticket, type=EventType.CREATED,
                            occurred_at=now - 60_000, channel="email")  # fmt: skip
        state, _ = engine.apply(None, event)
        value = encode_state(p, state)
        size += len(value)
        while True:
            try:
                producer.produce(changelog, key=ticket.encode(), value=value, partition=p)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 999:
            producer.poll(0)
            progress.update(1000)
    if producer.flush(120) != 0:
        raise SystemExit("bench: changelog records undelivered")
    progress.close()
    return size / max(n, 1)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(settings: Settings, root: Path, n: int, tools: Any, agents: int, days: int) -> None:
    """`tools`: bench/pipeline.py's module (start_worker, stop, drain, Drain, memory_mb)."""
    partitions = settings.partitions
    prefix = f"open{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix)
    ensure_topics(settings, topics)
    worker_settings = replace(settings, app_id=prefix + settings.app_id)
    changelog = changelog_topic(worker_settings)
    ensure_topics(settings, topics, [changelog], compact=True)
    started = time.monotonic()
    stored = fill_changelog(settings, changelog, partitions, n)
    print(f"open tickets: {n:,} on {partitions} partitions, written to {changelog} in "
          f"{time.monotonic() - started:.0f}s; {stored:,.0f} bytes per stored state",
          flush=True)  # fmt: skip
    data = root / "w-open"
    log = root / "w-open.log"
    figures = []
    for run_no, label in enumerate(("full restore", "from checkpoint")):
        print(f"... {label}: starting the worker", file=sys.stderr, flush=True)
        worker = tools.start_worker(prefix, data, True, None)
        wait_log_count(log, "Worker ready", run_no + 1, worker)
        peak = tools.peak_rss_mb(worker.pid)
        rss = tools.memory_mb(worker.pid)
        on_disk = disk_bytes(data / "tickets")
        tools.stop(worker)
        figures.append((label, *restored(log, -1), peak, rss, on_disk))
    for label, tickets, records, seconds, peak, rss, on_disk in figures:
        print(f"{label:<16}: {tickets:,} tickets, {records:,} changelog records in "
              f"{seconds:.1f}s; peak RSS {peak:,.0f} MB, {rss:,.0f} MB once ready = "
              f"{rss * 2**20 / n:,.0f} B per open ticket (upper bound: the process and its "
              f"clients included); RocksDB on disk {on_disk / 2**20:,.0f} MB = "
              f"{on_disk / n:,.0f} B per open ticket")  # fmt: skip
    full, resumed = figures[0][3], figures[1][3]
    print(f"restore from checkpoint / full: {resumed / max(full, 1e-9):.3f} of the time "
          f"(goals at 1M: full < 60 s, from a checkpoint < 5 s; RSS < 1 Gi = 1,024 MB)",
          flush=True)  # fmt: skip
    throughput(settings, root, prefix, n, tools, agents, days)


def throughput(
    settings: Settings, root: Path, prefix: str, n: int, tools: Any, agents: int, days: int
) -> None:
    """Events/s with the full store: the worker holding the N open tickets (restarted from its
    checkpoint once more) and one with an empty store drain copies of the same backlog side
    by side, so the shared machine's drift hits both; the ratio is the full store's cost.
    The backlog is the usual generated history: new tickets, none of the N (a read of an
    absent key goes through the full store's index all the same), in event time months
    before the open tickets' deadlines, so none of those fires."""
    history = root / "history.jsonl"
    summary = generate_to_file(history, agents=agents, days=days, seed=99)
    empty = f"openempty{uuid.uuid4().hex[:8]}-"
    ensure_topics(settings, Topics(empty))
    runs = []
    for run_prefix, name in ((prefix, "w-open"), (empty, "w-empty")):
        sent, _ = replay(settings, history, Topics(run_prefix), end_tick=True)
        runs.append(tools.Drain(run_prefix, name, sent + settings.partitions))
    print(f"... events/s: {summary.events:,} events of {summary.tickets:,} new tickets, "
          f"drained by both workers at once", file=sys.stderr, flush=True)  # fmt: skip
    tools.drain(settings, root, runs)
    full, empty_run = runs
    resumed = restored(root / "w-open.log", -1)
    (full_rate, full_cpu), (empty_rate, empty_cpu) = full.rates(), empty_run.rates()
    print(f"restore from checkpoint (again, before the drain): {resumed[0]:,} tickets, "
          f"{resumed[1]:,} changelog records in {resumed[2]:.1f}s")  # fmt: skip
    for label, run, rate, cpu in (
        (f"{n:,} open tickets in the store", full, full_rate, full_cpu),
        ("an empty store", empty_run, empty_rate, empty_cpu),
    ):
        print(f"events/s, {label:<32}: {rate:>9,.0f} ({cpu:,.0f} per CPU-s; peak RSS "
              f"{run.peak_mb:,.0f} MB, {run.rss_mb:,.0f} MB at the end)")  # fmt: skip
    print(f"full / empty store: {full_rate / empty_rate:.2f} events/s, "
          f"{full_cpu / empty_cpu:.2f} per CPU-s; RSS difference "
          f"{(full.rss_mb - empty_run.rss_mb) * 2**20 / n:,.0f} B per open ticket "
          f"(both after the same backlog); load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))  # fmt: skip


def restored(log: Path, which: int) -> tuple[int, int, float]:
    """(tickets, changelog records, seconds) of a restore in a worker's log."""
    found = REBUILT.findall(log.read_text(errors="replace"))[which]
    return int(found[0]), int(found[1]), float(found[2])


def wait_log_count(
    log: Path, text: str, count: int, worker: subprocess.Popen[bytes], timeout: float = 1800
) -> None:
    deadline = time.monotonic() + timeout
    shown = 0.0
    while time.monotonic() < deadline:
        text_now = log.read_text(errors="replace") if log.exists() else ""
        if text_now.count(text) >= count:
            return
        if worker.poll() is not None:
            raise SystemExit(f"worker exited ({worker.returncode}); see {log}")
        if time.monotonic() - shown >= 10:  # progress: the worker's last line
            shown = time.monotonic()
            last = text_now.strip().splitlines()[-1:] or ["(starting)"]
            print(f"... {last[0][-150:]}", file=sys.stderr, flush=True)
        time.sleep(0.5)
    raise SystemExit(f"worker not ready; see {log}")
