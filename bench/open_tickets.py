"""`bench/pipeline.py --open-tickets N`: a worker holding N open tickets (issue #22 item 3).

Writes N open tickets' states to a fresh changelog (as a worker would have left them), then
starts an `escalator worker` that restores them all (a full restore), stops it with SIGTERM
(its stores keep a checkpoint) and starts it again (a restore from the checkpoint). Prints
peak RSS, bytes per open ticket in memory (peak RSS over N, an upper bound: the process and
its clients included) and on disk (the RocksDB directories over N), the stored value size,
and both restore times. Figures, never pass/fail; events/s with the full store is not
measured here yet.
"""

from __future__ import annotations

import re
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
from streams.tools.progress import Progress

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


def run(settings: Settings, root: Path, n: int, tools: Any) -> None:
    """`tools`: bench/pipeline.py's module (start_worker, stop, peak_rss_mb)."""
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
          f"{time.monotonic() - started:.0f}s; {stored:,.0f} bytes per stored state")  # fmt: skip
    data = root / "w-open"
    log = root / "w-open.log"
    figures = []
    for run_no, label in enumerate(("full restore", "from checkpoint")):
        worker = tools.start_worker(prefix, data, True, None)
        wait_log_count(log, "Worker ready", run_no + 1)
        peak = tools.peak_rss_mb(worker.pid)
        on_disk = disk_bytes(data / "tickets")
        tools.stop(worker)
        found = REBUILT.findall(log.read_text(errors="replace"))[-1]
        tickets, restored, seconds = int(found[0]), int(found[1]), float(found[2])
        figures.append((label, tickets, restored, seconds, peak, on_disk))
    for label, tickets, restored, seconds, peak, on_disk in figures:
        print(f"{label:<16}: {tickets:,} tickets, {restored:,} changelog records in "
              f"{seconds:.1f}s; peak RSS {peak:,.0f} MB = {peak * 2**20 / n:,.0f} B per open "
              f"ticket (upper bound); RocksDB on disk {on_disk / 2**20:,.0f} MB = "
              f"{on_disk / n:,.0f} B per open ticket")  # fmt: skip
    full, resumed = figures[0][3], figures[1][3]
    print(f"restore from checkpoint / full: {resumed / max(full, 1e-9):.2f} of the time "
          f"(goals at 1M: full < 60 s, from a checkpoint < 5 s; RSS < 1 Gi)")  # fmt: skip


def wait_log_count(log: Path, text: str, count: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"worker not ready; see {log}")
