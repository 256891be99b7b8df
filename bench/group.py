"""bench/pipeline.py --group N: one `escalator worker` against N of them in one consumer group,
on this machine: what running more processes buys here (the analogue of Kafka Streams'
num.stream.threads, since Python runs one stream thread at a time per process).

Each round starts the workers on empty topics, waits until the group is stable with every
member holding partitions (so no rebalance falls inside the measurement), then replays the
backlog and follows the group's committed offsets until it is drained: events/s from the
first commit, and events per CPU-second of all the workers. Both sides are measured the
same way, alternating, the order reversed every other round. The replay runs at the start
of both sides alike; on a machine shared with the broker, N workers also share its cores
with the broker and the replay.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from types import ModuleType

from compiled_worker import maps_compiled  # bench/compiled_worker.py, beside this file
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from streams.runtime.settings import Settings
from streams.runtime.topics import Topics, ensure_topics
from streams.tools.replay import replay

STABLE_TIMEOUT_S = 120.0


def run(
    settings: Settings,
    root: Path,
    history: Path,
    rounds: int,
    n: int,
    tools: ModuleType,
    source: Path,
) -> None:
    """`source`: the tree the workers run from (this one, or a compiled copy)."""
    if n < 2:
        raise SystemExit(f"bench: --group {n}: give at least 2 workers")
    results: dict[int, list[tuple[float, float]]] = {1: [], n: []}
    for i in range(rounds):
        for count in (1, n) if i % 2 == 0 else (n, 1):
            name = f"g{i}-{count}"
            rate, per_cpu = _round(settings, root, history, count, name, tools, source)
            results[count].append((rate, per_cpu))
            print(f"round {i + 1}/{rounds}: {count} worker(s) {rate:>9,.0f} events/s "
                  f"{per_cpu:>9,.0f} events/CPU-s")  # fmt: skip
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        one = statistics.median(r[k] for r in results[1])
        many = statistics.median(r[k] for r in results[n])
        print(f"group    : {label:<16} 1 worker {one:>9,.0f}  {n} workers {many:>9,.0f}  "
              f"(medians of {rounds}); ratio {many / one:.3f}")  # fmt: skip


def _round(
    settings: Settings,
    root: Path,
    history: Path,
    count: int,
    name: str,
    tools: ModuleType,
    source: Path,
) -> tuple[float, float]:
    prefix = f"benchg{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix)
    ensure_topics(settings, topics)
    group = f"{prefix}{settings.app_id}"
    workers = [
        tools.start_worker(prefix, root / f"{name}-{k}", True, None, source=source)
        for k in range(count)
    ]
    try:
        for k in range(count):
            tools.wait_log(root / f"{name}-{k}.log", "Worker ready")
        _wait_stable(settings, group, topics.ticket_events, count)
        sent, _ = replay(settings, history, topics, end_tick=True)
        run = tools.Drain(prefix, name, sent + settings.partitions, worker=workers[0],
                          others=workers[1:])  # fmt: skip
        tools.follow(settings, [run])
        if source != tools.REPO.resolve():  # a copy that failed to load would measure plain
            for worker in workers:
                if not maps_compiled(tools.mapped_under(worker.pid, source)):
                    raise SystemExit(f"bench: a worker run from {source} mapped no compiled module")
        return run.rates()
    finally:
        for worker in workers:
            tools.stop(worker)


def _wait_stable(settings: Settings, group: str, topic: str, members: int) -> None:
    """Until the group is stable with `members` members, each holding partitions of `topic`."""
    admin = AdminClient(settings.kafka.confluent())
    deadline = time.monotonic() + STABLE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except Exception:  # noqa: BLE001 - not there yet: ask again
            time.sleep(0.5)
            continue
        holding = [
            m for m in description.members
            if any(tp.topic == topic for tp in m.assignment.topic_partitions)
        ]  # fmt: skip
        if description.state == ConsumerGroupState.STABLE and len(holding) == members:
            return
        time.sleep(0.5)
    raise SystemExit(f"bench: group {group} not stable with {members} members")
