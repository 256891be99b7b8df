"""End-to-end figures of the streaming pipeline on the local broker (figures, never pass/fail).

    .venv/bin/python bench/pipeline.py [--agents 400] [--days 3] [--latency-tickets 300]
    .venv/bin/python bench/pipeline.py --metrics-cost [--rounds 2] [--agents 100 --days 2]
    .venv/bin/python bench/pipeline.py --registry-cost URL [--rounds 1] [--agents 100 --days 2]
    .venv/bin/python bench/pipeline.py --runtimes [--agents 100 --days 2]
    .venv/bin/python bench/pipeline.py --compiled-cost [--rounds 3] [--compiled-dir DIR]
        [--baseline COPY]
    .venv/bin/python bench/pipeline.py --baseline DIR [--rounds 3] [--agents 100 --days 2]
    .venv/bin/python bench/pipeline.py --latency-only [--latency-under-load 5000]
    .venv/bin/python bench/pipeline.py --open-tickets 1000000   (bench/open_tickets.py)
    .venv/bin/python bench/pipeline.py --group 2 [--rounds 3] [--agents 400 --days 7]
        [--compiled-dir var/compiled]

1. Ceiling: a bare confluent-kafka consumer with fastavro decoding reads ticket-events.
2. Throughput: one `escalator worker` (exactly-once, RocksDB state, changelog) drains the
   same backlog (the default history's 14,838 tickets fit in the store's in-memory front of
   recent writes, 2 x streams.runtime.worker.FRONT_KEYS per partition; --agents 2000 spills to
   disk); events/s = events / time until its committed offsets reach the end, and the
   records it wrote per event (outputs and changelog, counted on the topics).
3. Restore: a worker with empty local state joins the drained group and restores every
   partition from the changelog (what failover costs); records/s and seconds until ready.
4. Detection latency: a wall-clock worker; tickets whose first-response deadline falls in
   the next seconds, no further events; latency = deadline -> escalation readable by a
   read_committed consumer. Prints p50/p95/p99. --latency-under-load RATE: then the same
   again on the same worker while it drains RATE events/s of other tickets, produced by a
   process of its own (bench/steady_load.py); p50/p95/p99, their ratio to idle, the rate
   achieved, the worker's lag and the load average.
5. --metrics-cost: only the throughput run, with worker metrics on and off (ESCALATOR_METRICS):
   each round drains two copies of the same backlog at the same time, one worker with metrics
   and one without, so drift on a shared machine hits both alike; prints both rates and the
   overhead of metrics, in wall time and per CPU second of the worker processes.
6. --registry-cost URL: the same side by side, one worker (and its backlog) with the schema
   registry at URL (ESCALATOR_SCHEMA_REGISTRY_URL; the ids the registry gives, subjects by
   TopicNameStrategy), one with the committed ids.json; prints both rates and their ratio.
7. Runtimes: after the loop's throughput run (2.), the Faust runtime (`--runtime faust`,
   at-least-once) drains a copy of the same backlog; events/s, per CPU-s and peak RSS next to
   the ceiling and the loop's, with ratios. --runtimes: only the ceiling and these two runs.
8. --compiled-cost: only throughput, a worker run from a mypyc-compiled copy
   (scripts/compile-engine, or --compiled-dir) and one from the source tree, one after the
   other, alternating per round (bench/compiled_worker.py); medians, their ratio and each
   one's ratio to the ceiling, measured every round. With
   --baseline DIR, DIR is another compiled copy (e.g. of the previous release) that drains a
   third copy in each round: its medians and ratios too.
9. --baseline DIR: only throughput, a worker run from the source tree and one from another
   checkout at DIR (e.g. a worktree of main: an A/B of a change), one after the other,
   alternating per round; each round also measures the ceiling on its backlog. Prints each
   run, the medians, their ratio and each side's ratio to the ceiling's median.
   --with-sink: each side's Redis sink (`escalator sink redis`, from the same tree) runs
   beside its worker, so a change that moves work between the worker and the sink is
   measured whole: also events per CPU-s of worker and sink together, and events/s until
   the sink's heartbeat shows it caught up (needs deploy/local/services up redis).
10. --group N: only throughput, one worker against N workers in one consumer group on this
   machine, alternating per round (bench/group.py): the group formed before the backlog is
   replayed, events/s and events per CPU-s of all its workers; medians and their ratio.
   With --compiled-dir, every worker runs from that compiled copy.

Needs Kafka (deploy/local/services up kafka, or ESCALATOR_KAFKA_BOOTSTRAP); --registry-cost
a registry (deploy/local/services up registry: http://127.0.0.1:18081/apis/ccompat/v7).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime import kafka_config
from streams.runtime.kafka_config import idempotent_producer
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import Topics, ensure_topics
from streams.sla.events import EventType, TicketEvent
from streams.sla.report import percentile
from streams.tools.demo import free_port
from streams.tools.generator import generate_to_file
from streams.tools.progress import Progress
from streams.tools.replay import replay

GOAL_EVENTS_S = 20_000  # issue #22 item 7: events/s per worker, exactly-once
REPO = Path(__file__).resolve().parent.parent
STALL_S = 120.0  # a drain whose committed offsets stand still this long has failed
# How often a drain's committed offsets are read: the end of a drain is seen up to this late
# (a default drain takes 4-5 s; read every 0.5 s by a new consumer each time, its end was seen
# up to about 0.7 s late)
FOLLOW_S = 0.1
BENCH_POLICY = """
version: 1
sla_policies:
  - name: bench
    targets: {first_response: 1m, resolution: 1h}
    warn_at: [0.5]
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: team-lead}
  executive: {contact: exec}
"""


def start_worker(
    prefix: str,
    data: Path,
    event_time: bool,
    policy: Path | None,
    metrics: bool = True,
    registry: str | None = None,
    runtime: str = "loop",
    source: Path = REPO,
) -> subprocess.Popen[bytes]:
    """An `escalator worker` run from `source`: the tree, or a compiled copy of it
    (scripts/compile-engine), first on its path."""
    env = {**os.environ, "PYTHONPATH": str(source), "ESCALATOR_DATA_DIR": str(data),
           "ESCALATOR_WEB_PORT": str(free_port()),
           "ESCALATOR_METRICS": "on" if metrics else "off",
           "ESCALATOR_SCHEMA_REGISTRY_URL": registry or ""}  # fmt: skip
    if runtime == "faust":  # at-least-once only (streams.runtime.faust_runtime.guarantee)
        env["ESCALATOR_PROCESSING_GUARANTEE"] = "at_least_once"
    cmd = [sys.executable, "-m", "streams.cli", "worker", "--topic-prefix", prefix,
           "--loglevel", "info", "--runtime", runtime]  # fmt: skip
    if event_time:
        cmd.append("--event-time")
    if policy:
        cmd += ["--policy", str(policy)]
    log = open(data.parent / f"{data.name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(cmd, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_log(path: Path, text: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"worker not ready; see {path}")


def ceiling(settings: Settings, topic: str, partitions: int, total: int) -> float:
    codec = codec_for("TicketEvent", settings)
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.min.bytes": 1})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    count = 0
    started = 0.0  # from the first message: not the connection
    while count < total:
        for msg in consumer.consume(1000, 1.0):
            if not started:
                started = time.perf_counter()
            if not msg.error():
                if not msg.headers():  # the end ticks carry a header and no Avro
                    codec.decode_fastavro(msg.value())
                count += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return count / seconds


def records(settings: Settings, topics: list[str], partitions: int) -> int:
    """Records on these topics, transaction markers included (a close upper bound)."""
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"count-{uuid.uuid4().hex}"})
    total = 0
    for topic in topics:
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
    consumer.close()
    return total


# A consumer per group that reads committed offsets, kept while a drain is followed: a new
# one per reading took a connection and a coordinator lookup each time, which delayed the
# reading that sees the end (and loaded the shared machine) while the worker was timed.
_READERS: dict[str, Consumer] = {}


def committed_total(settings: Settings, group: str, topic: str, partitions: int) -> int:
    consumer = _READERS.get(group)
    if consumer is None:
        consumer = _READERS[group] = Consumer(
            {**settings.kafka.confluent(), "group.id": group, "enable.auto.commit": False}
        )
    offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    return sum(max(tp.offset, 0) for tp in offsets)


def drop_topics(settings: Settings, prefix: str) -> None:
    """Delete the topics of a drain whose figures are taken (its backlog, outputs, changelog):
    kept, each drain left about 70 partitions on the broker, which every later round of a
    comparison then ran beside (about 950 after a few runs)."""
    admin = AdminClient(kafka_config.admin(settings))
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def close_readers() -> None:
    while _READERS:
        _READERS.popitem()[1].close()


def breach_latencies(
    settings: Settings, topics: Topics, partitions: int, n: int, tag: str
) -> list[int]:
    """Tickets ``<tag>00000``... whose first-response deadlines fall over the next ~20 s, no
    further events; the sorted ms from each deadline to its breach escalation being readable
    by a read_committed consumer (the wall clock of this process)."""
    codec = codec_for("TicketEvent", settings)
    escalation_codec = codec_for("Escalation", settings)
    consumer = Consumer(
        {
            **settings.kafka.confluent(),
            "group.id": f"lat-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topics.escalations, p, -1) for p in range(partitions)])
    consumer.poll(1.0)  # joined at the end before the first deadline
    producer = Producer(idempotent_producer(settings))
    now = int(time.time() * 1000)
    for i in range(n):  # deadlines spread over the next ~20 s
        created = now - 60_000 + 5_000 + (i * 20_000) // n
        event = TicketEvent(event_id=f"{tag}{i}", ticket_id=f"{tag}{i:05d}",
                            type=EventType.CREATED, occurred_at=created)  # fmt: skip
        producer.produce(topics.ticket_events, key=event.ticket_id.encode(),
                         value=codec.encode(ticket_event_to_avro(event)))  # fmt: skip
    producer.flush(30)
    latencies: list[int] = []
    deadline = time.monotonic() + 90
    while len(latencies) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.05)
        if msg is None or msg.error():
            continue
        record = escalation_codec.decode(msg.value())
        if record["reason"] == "FIRST_RESPONSE_BREACH" and record["ticket_id"].startswith(tag):
            latencies.append(int(time.time() * 1000) - record["due_at"])
    consumer.close()
    return sorted(latencies)


def percentiles(latencies: list[int], n: int) -> str:
    return f"{len(latencies)}/{n} breaches: " + "  ".join(
        f"p{p}={percentile(latencies, p)} ms" for p in (50, 95, 99)
    )


def measure_latency(
    settings: Settings, root: Path, partitions: int, n: int, load_rate: float = 0.0
) -> None:
    """Deadline -> escalation readable by a read_committed consumer, on the wall clock: on an
    idle worker, then (``load_rate``) on the same worker while it drains that many events/s of
    other tickets (bench/steady_load.py)."""
    policy = root / "policy.yaml"
    policy.write_text(BENCH_POLICY)
    live_prefix = f"benchlive{uuid.uuid4().hex[:8]}-"
    live_topics = Topics(live_prefix)
    ensure_topics(settings, live_topics)
    live = start_worker(live_prefix, root / "w-latency", False, policy)
    wait_log(root / "w-latency.log", "Worker ready")
    time.sleep(3)
    idle = breach_latencies(settings, live_topics, partitions, n, "L")
    print(f"latency  : deadline -> readable (read_committed), idle worker, {percentiles(idle, n)}"
          "  (goal p99 < 500 ms)")  # fmt: skip
    if load_rate:
        latency_under_load(settings, live_topics, live_prefix, partitions, n, load_rate, idle)
    stop(live)


def latency_under_load(
    settings: Settings,
    topics: Topics,
    prefix: str,
    partitions: int,
    n: int,
    rate: float,
    idle: list[int],
) -> None:
    """The idle measurement again while a steady `rate` of other tickets' events flows into
    the same worker; prints the percentiles, their ratio to idle, the rate achieved, the
    worker's lag and the machine's load average (it is shared)."""
    import steady_load  # bench/steady_load.py, beside this file

    load = steady_load.SteadyLoad(topics.ticket_events, rate)
    load.start()
    time.sleep(10)  # the worker is draining the load at its steady state
    group = f"{prefix}{settings.app_id}"
    sent0, t0 = load.sent, time.monotonic()
    loaded = breach_latencies(settings, topics, partitions, n, "M")
    achieved = (load.sent - sent0) / (time.monotonic() - t0)
    lag = load.sent + n - committed_total(settings, group, topics.ticket_events, partitions)
    close_readers()
    load.stop()
    print(f"latency  : same worker draining {rate:,.0f} events/s of other tickets (achieved "
          f"{achieved:,.0f}/s, lag at the end ~{max(lag, 0):,} events), {percentiles(loaded, n)}"
          f"  (goal p99 < 500 ms)")  # fmt: skip
    ratios = "  ".join(
        f"p{p} {(percentile(loaded, p) or 0) / max(percentile(idle, p) or 0, 1):.2f}"
        for p in (50, 95, 99)
    )
    print(f"latency  : under load / idle: {ratios}; load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))  # fmt: skip


REBUILT = re.compile(
    r"due index rebuilt: (\d+) tickets on partitions \[[^]]*\] "
    r"\((\d+) changelog records restored, \d+ partitions kept, ([\d.]+)s\)"
)


def measure_restore(
    settings: Settings, root: Path, prefix: str, changelog: str, partitions: int, ceil: float
) -> None:
    """Failover: a worker with empty local state joins the drained group, so it restores every
    partition from the changelog before it is ready. Prints its own figures from its log."""
    on_topic = records(settings, [changelog], partitions)
    worker = start_worker(prefix, root / "w-restore", True, None)
    log = root / "w-restore.log"
    wait_log(log, "Worker ready")
    stop(worker)
    found = REBUILT.search(log.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"no 'due index rebuilt' line in {log}")
    tickets, restored, seconds = int(found[1]), int(found[2]), float(found[3])
    rate = restored / max(seconds, 1e-9)
    print(f"restore  : fresh worker, all {partitions} partitions from the changelog: "
          f"{restored:,} records (of {on_topic:,} offsets on the topic, markers included), "
          f"{tickets:,} tickets; assignment to ready {seconds:.1f}s = {rate:,.0f} records/s "
          f"(ratio to ceiling {rate / ceil:.2f})")  # fmt: skip


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc), 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def mapped_under(pid: int, source: Path) -> list[str]:
    """The shared objects under `source` a process has mapped (/proc/PID/maps): which
    compiled modules a worker really runs."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    top = f"{source.resolve()}/"
    paths = {line.split()[-1] for line in maps.splitlines() if line.endswith(".so")}
    return sorted(p.removeprefix(top) for p in paths if p.startswith(top))


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its descendants, in MB; 0 once gone."""
    return memory_mb(pid, "VmHWM")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/PID/status memory field (VmRSS: resident now) of a process and its descendants,
    in MB; 0 once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field)), 0)
    return kb / 1024 + sum(memory_mb(int(child), field) for child in children)


@dataclass
class Drain:
    """One event-time worker draining the backlog of its own topic prefix."""

    prefix: str
    name: str
    total: int
    metrics: bool = True
    registry: str | None = None  # the schema registry's URL; None: ids.json
    runtime: str = "loop"  # escalator worker --runtime
    source: Path = REPO  # where the worker imports the package from (start_worker)
    mapped: list[str] | None = None  # extension modules under `source` the worker had loaded
    worker: subprocess.Popen[bytes] | None = None
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)  # a group's (--group)
    done: int = 0
    first: tuple[float, int, float] | None = None  # wall time, committed, CPU at first commit
    last: tuple[float, float] = (0.0, 0.0)  # wall time, CPU when last seen
    peak_mb: float = 0.0  # peak RSS of the worker's processes, read before it stops
    rss_mb: float = 0.0  # their RSS then
    last_progress: float = 0.0  # wall time its committed offsets last moved
    with_sink: bool = False  # a Redis sink from `source` runs beside the worker
    sink: subprocess.Popen[bytes] | None = None
    sink_first: float = 0.0  # the sink's CPU at the worker's first commit
    sink_done: tuple[float, float] | None = None  # wall time, CPU once it caught up

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The run's workers: its own, and a group's others."""
        assert self.worker is not None
        return [self.worker, *self.others]

    def rates(self) -> tuple[float, float]:
        """(events/s of wall time, events per CPU second of the worker's processes)."""
        assert self.first is not None
        events = self.done - self.first[1]
        if events <= 0:  # nothing left to time after the first commit: not a rate of 0
            raise SystemExit(
                f"bench: {self.name} had committed its whole backlog ({self.done:,} events) when "
                "its first commit was seen; time a larger history (--agents, --days)"
            )
        wall, cpu = self.last[0] - self.first[0], self.last[1] - self.first[2]
        return events / max(wall, 1e-9), events / max(cpu, 1e-9)

    def whole(self) -> tuple[float, float]:
        """With the sink: (events/s until the sink caught up, events per CPU-s of worker and
        sink together)."""
        assert self.first is not None and self.sink_done is not None
        events = self.done - self.first[1]
        wall = self.sink_done[0] - self.first[0]
        cpu = self.last[1] - self.first[2] + self.sink_done[1] - self.sink_first
        return events / max(wall, 1e-9), events / max(cpu, 1e-9)


def start_sink(prefix: str, data: Path, source: Path) -> subprocess.Popen[bytes]:
    """`escalator sink redis` of `source` for the topics under `prefix`."""
    env = {**os.environ, "PYTHONPATH": str(source), "ESCALATOR_DATA_DIR": str(data),
           "ESCALATOR_METRICS_PORT": str(free_port())}  # fmt: skip
    cmd = [sys.executable, "-m", "streams.cli", "sink", "redis", "--topic-prefix", prefix,
           "--loglevel", "info"]  # fmt: skip
    log = open(data.parent / f"{data.name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(cmd, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)


def sink_caught_up(settings: Settings, run: Drain, since: float) -> None:
    """Wait until a heartbeat the sink wrote after `since` (epoch s) shows no lag."""
    assert run.sink is not None
    client = settings.redis.client(decode_responses=True)
    key = f"{settings.connectors.board_prefix}{run.prefix}sink"
    deadline = time.monotonic() + STALL_S
    while time.monotonic() < deadline:
        beat = client.hgetall(key)
        if beat.get("lag") == "0" and float(beat.get("updated_at", 0)) / 1000 > since:
            run.sink_done = (time.perf_counter(), cpu_seconds(run.sink.pid))
            client.close()
            return
        if run.sink.poll() is not None:
            raise SystemExit(f"sink {run.name} exited during the throughput run")
        time.sleep(0.1)
    raise SystemExit(f"sink {run.name} did not catch up in {STALL_S:.0f}s")


def drain(settings: Settings, root: Path, runs: list[Drain]) -> None:
    """Start a worker per run at once and follow their committed offsets until each is done.

    Runs measured side by side see the same load on a shared machine, so their ratio holds
    even while the machine's speed drifts."""
    for run in runs:
        run.worker = start_worker(
            run.prefix,
            root / run.name,
            True,
            None,
            run.metrics,
            run.registry,
            run.runtime,
            run.source,
        )
        if run.with_sink:
            run.sink = start_sink(run.prefix, root / f"{run.name}-sink", run.source)
    for run in runs:
        wait_log(root / f"{run.name}.log", "Worker ready")
        if run.sink is not None:
            wait_log(root / f"{run.name}-sink.log", "sink redis ready")
    follow(settings, runs)
    drained = time.time()
    for run in runs:
        if run.sink is not None:
            sink_caught_up(settings, run, drained)
            stop(run.sink)
    for run in runs:
        assert run.worker is not None
        run.peak_mb = peak_rss_mb(run.worker.pid)
        run.rss_mb = memory_mb(run.worker.pid)
        run.mapped = mapped_under(run.worker.pid, run.source)
        stop(run.worker)


def follow(settings: Settings, runs: list[Drain]) -> None:
    """Follow each run's committed offsets until it is done: the figures of Drain.rates, the
    CPU of all its workers."""
    progress = Progress("workers", total=sum(r.total for r in runs), stream=sys.stderr)
    try:
        _follow(settings, runs, progress)
    finally:
        close_readers()
    progress.close()


def _follow(settings: Settings, runs: list[Drain], progress: Progress) -> None:
    while any(r.done < r.total for r in runs):
        time.sleep(FOLLOW_S)
        for run in (r for r in runs if r.done < r.total):
            group = f"{run.prefix}{settings.app_id}"
            topic = Topics(run.prefix).ticket_events
            now_done = committed_total(settings, group, topic, settings.partitions)
            cpu = sum(cpu_seconds(worker.pid) for worker in run.processes())
            if now_done and run.first is None:
                run.first = (time.perf_counter(), now_done, cpu)
                if run.sink is not None:
                    run.sink_first = cpu_seconds(run.sink.pid)
            progress.update(now_done - run.done)
            if now_done > run.done or run.last_progress == 0.0:
                run.last_progress = time.perf_counter()
            run.done = now_done
            run.last = (time.perf_counter(), cpu)
            if any(worker.poll() is not None for worker in run.processes()):
                raise SystemExit(f"worker {run.name} exited during the throughput run")
            if time.perf_counter() - run.last_progress > STALL_S:
                raise SystemExit(f"worker {run.name} committed nothing for {STALL_S:.0f}s")


def alternating(
    settings: Settings,
    root: Path,
    history: Path,
    rounds: int,
    sources: dict[str, Path],
    ceilings: list[float] | None = None,
    with_sink: bool = False,
) -> dict[str, list[Drain]]:
    """`rounds` rounds, each draining a copy of the backlog per source (label -> the tree its
    worker runs from) one after the other, the order reversed every other round so that drift
    of a shared machine's speed falls on every side alike. With `ceilings`, each round first
    measures the ceiling on its first backlog and appends it there."""
    results: dict[str, list[Drain]] = {label: [] for label in sources}
    for i in range(rounds):
        labels = list(sources) if i % 2 == 0 else list(reversed(sources))
        for label in labels:
            prefix = f"bencha{uuid.uuid4().hex[:8]}-"
            topics = Topics(prefix)
            ensure_topics(settings, topics)
            sent, _ = replay(settings, history, topics, end_tick=True)
            total = sent + settings.partitions
            if ceilings is not None and label == labels[0]:
                ceilings.append(ceiling(settings, topics.ticket_events, settings.partitions, total))
            run = Drain(prefix, f"w{i}-{label}", total, source=sources[label],
                        with_sink=with_sink)  # fmt: skip
            drain(settings, root, [run])
            results[label].append(run)
            rate, per_cpu = run.rates()
            whole = ""
            if with_sink:
                rate2, per_cpu2 = run.whole()
                whole = f"; with sink {rate2:,.0f} events/s {per_cpu2:,.0f} events/CPU-s"
            print(f"round {i + 1}/{rounds}: {label:<8} {rate:>9,.0f} events/s {per_cpu:>9,.0f} "
                  f"events/CPU-s  (peak RSS {run.peak_mb:,.0f} MB){whole}")  # fmt: skip
            drop_topics(settings, prefix)
    return results


def against_baseline(
    settings: Settings, root: Path, history: Path, rounds: int, baseline: Path, with_sink: bool
) -> None:
    """--baseline: this tree's worker against one run from `baseline` (see module doc)."""
    if not any((baseline / "streams" / p / "worker.py").exists() for p in ("runtime", "")):
        raise SystemExit(
            f"bench: --baseline {baseline}: no worker there (streams/runtime/worker.py, or "
            "streams/worker.py before the layout of issue #19)"
        )
    ceilings: list[float] = []
    runs = alternating(settings, root, history, rounds, {"this": REPO, "baseline": baseline},
                       ceilings, with_sink)  # fmt: skip
    ceil = statistics.median(ceilings)
    print(f"ceiling  : bare confluent-kafka consumer + fastavro decode: {ceil:>10,.0f} events/s"
          f" (median of {rounds}: " + ", ".join(f"{c:,.0f}" for c in ceilings) + ")")  # fmt: skip
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        this = statistics.median(r.rates()[k] for r in runs["this"])
        base = statistics.median(r.rates()[k] for r in runs["baseline"])
        print(f"baseline : {label:<16} this {this:>9,.0f}  baseline {base:>9,.0f}  (medians of "
              f"{rounds}); ratio this/baseline {this / base:.3f}")  # fmt: skip
        if k == 0:
            print(f"baseline : ratio to ceiling this {this / ceil:.3f}, baseline {base / ceil:.3f}")
    if with_sink:
        for label, k in (("events/s to sink", 0), ("events/CPU-s w+s", 1)):
            this = statistics.median(r.whole()[k] for r in runs["this"])
            base = statistics.median(r.whole()[k] for r in runs["baseline"])
            print(f"with sink: {label:<16} this {this:>9,.0f}  baseline {base:>9,.0f}  (medians "
                  f"of {rounds}); ratio this/baseline {this / base:.3f}")  # fmt: skip


def side_by_side(
    settings: Settings, root: Path, history: Path, rounds: int, knob: str, registry: str | None
) -> None:
    """Worker throughput with ``knob`` (metrics, or the schema registry at ``registry``) on and
    off: each round drains two copies of the same backlog at the same time, one worker each
    way (see module doc); prints both rates, their medians and ratio."""
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(rounds):
        runs = []
        for on in (True, False) if i % 2 == 0 else (False, True):
            prefix = f"bench{knob[0]}{uuid.uuid4().hex[:8]}-"
            url = registry if on and knob == "registry" else None
            ensure_topics(settings, Topics(prefix))
            writer = replace(settings, schema_registry_url=url)
            sent, _ = replay(writer, history, Topics(prefix), end_tick=True)
            name = f"w{i}-{'on' if on else 'off'}"
            metrics = on or knob != "metrics"
            runs.append(Drain(prefix, name, sent + settings.partitions, metrics, url))
        drain(settings, root, runs)
        for run in runs:
            rate, per_cpu = run.rates()
            on = run.metrics if knob == "metrics" else run.registry is not None
            results[on].append((rate, per_cpu))
            print(f"round {i + 1}/{rounds}: {knob} {'on ' if on else 'off'} "
                  f"{rate:>9,.0f} events/s {per_cpu:>9,.0f} events/CPU-s")  # fmt: skip
            drop_topics(settings, run.prefix)
    goal = " (goal < 5%)" if knob == "metrics" else ""
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        on = statistics.median(r[k] for r in results[True])
        off = statistics.median(r[k] for r in results[False])
        overhead = (off - on) / off
        print(f"{knob:<9}: {label:<16} on {on:>9,.0f}  off {off:>9,.0f}  (medians of {rounds});"
              f" ratio on/off {on / off:.3f}, overhead {overhead:+.1%}{goal}")  # fmt: skip


def output_topics(topics: Topics) -> list[str]:
    return [topics.escalations, topics.priority_bumps, topics.reminders, topics.dlq,
            topics.queue_stats]  # fmt: skip


def faust_runtime(settings: Settings, root: Path, history: Path, ceil: float, loop: Drain) -> None:
    """The Faust runtime drains a copy of the backlog the loop drained (`loop`); figures next
    to the ceiling's and the loop's."""
    prefix = f"benchf{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix)
    ensure_topics(settings, topics)
    sent, _ = replay(settings, history, topics, end_tick=True)
    run = Drain(prefix, "w-faust", sent + settings.partitions, runtime="faust")
    drain(settings, root, [run])
    rate, per_cpu = run.rates()
    loop_rate, loop_cpu = loop.rates()
    changelog = f"{prefix}{settings.app_id}-tickets-changelog"
    written = records(settings, [*output_topics(topics), changelog], settings.partitions)
    print(f"faust    : 1 worker, at-least-once, Faust table (RocksDB) + changelog: "
          f"{rate:>10,.0f} events/s  ({per_cpu:,.0f} per CPU-s; {written / run.total:.2f} "
          f"records written per event; peak RSS {run.peak_mb:,.0f} MB)")  # fmt: skip
    print(f"runtimes : ratio to ceiling loop {loop_rate / ceil:.3f}, faust {rate / ceil:.3f}; "
          f"loop/faust {loop_rate / rate:.2f}x events/s, {loop_cpu / per_cpu:.2f}x events per "
          f"CPU-s, peak RSS {loop.peak_mb:,.0f} vs {run.peak_mb:,.0f} MB")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--latency-tickets", type=int, default=300)
    parser.add_argument("--latency-only", action="store_true", help="skip ceiling and throughput")
    parser.add_argument("--latency-under-load", type=float, metavar="RATE", default=0.0,
                        help="latency also while the worker drains RATE events/s of other "
                        "tickets (e.g. 5000)")  # fmt: skip
    parser.add_argument("--metrics-cost", action="store_true",
                        help="only throughput, with worker metrics on and off")  # fmt: skip
    parser.add_argument("--registry-cost", metavar="URL",
                        help="only throughput, with the registry at URL and without")  # fmt: skip
    parser.add_argument(
        "--compiled-cost",
        action="store_true",
        help="only throughput, from the mypyc-compiled copy and plain Python",
    )
    parser.add_argument(
        "--compiled-dir",
        type=Path,
        metavar="DIR",
        help="--compiled-cost: a copy scripts/compile-engine built already; --group: run the"
        " workers from it",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="only throughput, from this tree and from the checkout at DIR, alternating"
        " (with --compiled-cost: a second compiled copy)",
    )
    parser.add_argument(
        "--with-sink",
        action="store_true",
        help="--baseline: each side's Redis sink runs beside its worker and counts too",
    )
    parser.add_argument("--rounds", type=int, default=2, help="pairs of the -cost modes")
    parser.add_argument(
        "--runtimes", action="store_true", help="only the ceiling, the loop's and Faust's drains"
    )
    parser.add_argument(
        "--open-tickets", type=int, metavar="N", help="only: a worker holding N open tickets"
    )
    parser.add_argument(
        "--group", type=int, metavar="N", help="only throughput, 1 worker against N in a group"
    )
    args = parser.parse_args()
    settings = load_settings()
    partitions = settings.partitions
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.open_tickets:
            import open_tickets  # bench/open_tickets.py, beside this file

            tools = sys.modules[__name__]
            open_tickets.run(settings, root, args.open_tickets, tools, args.agents, args.days)
            return 0
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        topics = Topics(prefix)
        ensure_topics(settings, topics)
        if args.latency_only:
            load = args.latency_under_load
            measure_latency(settings, root, partitions, args.latency_tickets, load)
            return 0
        history = root / "history.jsonl"
        summary = generate_to_file(history, agents=args.agents, days=args.days, seed=99)
        print(f"history: {summary.tickets:,} tickets, {summary.events:,} events; "
              f"{partitions} partitions, {settings.processing_guarantee}")  # fmt: skip
        if args.compiled_cost:
            import compiled_worker  # bench/compiled_worker.py, beside this file

            copy = args.compiled_dir or compiled_worker.build(root / "compiled", REPO)
            baseline = args.baseline.resolve() if args.baseline else None
            bench = sys.modules[__name__]
            compiled_worker.run(settings, root, history, args.rounds, copy, bench, baseline)
            return 0
        if args.group:
            import group  # bench/group.py, beside this file

            tools, source = sys.modules[__name__], (args.compiled_dir or REPO).resolve()
            group.run(settings, root, history, args.rounds, args.group, tools, source)
            return 0
        if args.baseline:
            baseline = args.baseline.resolve()
            against_baseline(settings, root, history, args.rounds, baseline, args.with_sink)
            return 0
        if args.metrics_cost or args.registry_cost:
            knob = "metrics" if args.metrics_cost else "registry"
            side_by_side(settings, root, history, args.rounds, knob, args.registry_cost)
            return 0
        sent, _ = replay(settings, history, topics, end_tick=True)
        total = sent + partitions  # plus one end tick per partition

        ceil = ceiling(settings, topics.ticket_events, partitions, total)
        print(
            f"ceiling  : bare confluent-kafka consumer + fastavro decode: {ceil:>10,.0f} events/s"
        )

        run = Drain(prefix, "w-throughput", total, registry=settings.schema_registry_url)
        drain(settings, root, [run])
        rate, per_cpu = run.rates()
        changelog = f"{prefix}{settings.app_id}-tickets-changelog"
        written = records(settings, [*output_topics(topics), changelog], partitions)
        print(f"worker   : 1 worker, exactly-once, RocksDB + changelog: {rate:>10,.0f} events/s"
              f"  ({per_cpu:,.0f} per CPU-s; {written / total:.2f} records written per event;"
              f" ratio to ceiling {rate / ceil:.3f}, to the goal {rate / GOAL_EVENTS_S:.2f};"
              f" peak RSS {run.peak_mb:,.0f} MB)")  # fmt: skip
        faust_runtime(settings, root, history, ceil, run)
        if args.runtimes:
            return 0

        measure_restore(settings, root, prefix, changelog, partitions, ceil)
        load = args.latency_under_load
        measure_latency(settings, root, partitions, args.latency_tickets, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
