"""Chaos run: the whole pipeline under faults loses and duplicates nothing (figures and checks).

    .venv/bin/python bench/chaos.py [--minutes 10] [--rate 100] [--seed 1]

Setup, all on services of the run's own (so the broker restart disturbs nobody): a broker
(deploy/local/services with its own state dir and ports), a redis-server with an append-only
file (fsync always, so a restarted Redis keeps the board; the local services' Redis keeps
nothing), three event-time workers, ingest, the Redis sink and the webhook sink posting to a
local receiver that verifies every signature. A generated history is posted through ingest
(POST /v1/events/batch, JSON Lines) at a steady rate, retried on 503 and connection errors as a
sender must; a clock tick at its last event time ends it.

Faults while it runs: random SIGKILLs of workers (restarted on their kept store or on an empty
one, alternately) and of both sinks; one broker stop and start (`services down/start kafka`,
same data); one Redis SIGKILL and restart; the receiver flapping (5xx, then answers slower than
the target's timeout); and injected poison (undecodable records on ticket-events, escalations
and ticket-board, the Redis sink's input).

Checks at the end: every escalation of the backtest exactly once for a read_committed consumer
(lost 0, duplicated 0), the Redis board equals the backtest's (fired_at aside), the receiver
got every escalation at least once with a valid signature, and the DLQs hold only the poison.
Detection latency: from when ingest acknowledged the first event at or past an escalation's
due time (or the end tick) to when a read_committed consumer read it. The run's processes
could equally run on the event-time clock with `--event-time`, which is what makes the
comparison with the backtest exact.

Exit status 0 only if every check holds. tests/integration/test_chaos.py runs a 2-minute
version.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support: the harness

import redis  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.sinks.board_store import BoardKeys, BoardReader
from connectors.sinks.webhook_targets import verify
from schemas.codec import codec_for
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.board import BoardEntry, clockless
from streams.sla.events import parse_ts
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.demo import free_port
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history
from streams.tools.replay import send_ticks
from tests.support.pipeline import REPO, Pipeline, WorkerProcess

SERVICES = REPO / "deploy" / "local" / "services"
TOKEN = "chaos-ingest-token-0123456789"
SIGNING_KEY = "chaos-signing-key-0123456789abcdef"
POISON = (b"\x00poison: not avro", b"\xffpoison: not an escalation")
BATCH = 25  # events a POST
LIVENESS_STALL_S = 30  # ESCALATOR_LIVENESS_STALL_S of the run's workers (default 60)
LIVENESS_GRACE_S = 15  # /healthz failing this long restarts a worker (the chart's probe)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ services


@dataclass
class OwnServices:
    """A broker (deploy/local/services, own state dir and ports) and a persistent Redis."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    bootstrap: str = ""
    redis_port: int = 0
    redis_proc: subprocess.Popen[bytes] | None = None

    def up(self, with_redis: bool = True) -> None:
        port, controller = free_port(), free_port()
        while controller == port:
            controller = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
        self.env.update(
            ESCALATOR_LOCAL_DIR=str(self.root / "services"),
            ESCALATOR_KAFKA_PORT=str(port),
            ESCALATOR_KAFKA_CONTROLLER_PORT=str(controller),
            ESCALATOR_KAFKA_HEAP="-Xms128m -Xmx512m",
        )
        self.bootstrap = f"127.0.0.1:{port}"
        self.kafka("up")
        if with_redis:
            self.redis_port = free_port()
            self.start_redis()

    def kafka(self, command: str) -> None:
        proc = subprocess.run(
            ["bash", str(SERVICES), command, "kafka"], env=self.env, cwd=REPO,
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"services {command} kafka:\n{proc.stdout}{proc.stderr}")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(data)],
            stdout=(data / "redis.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer in 30 s")
            time.sleep(0.1)
        client.close()

    def kill_redis(self) -> None:
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.send_signal(signal.SIGKILL)
            self.redis_proc.wait(10)

    def down(self) -> None:
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)
        if self.env:
            subprocess.run(["bash", str(SERVICES), "down", "kafka"], env=self.env, cwd=REPO,
                           capture_output=True, timeout=120, check=False)  # fmt: skip


# ------------------------------------------------------------------------------ receiver


class Receiver:
    """The webhook target: verifies each request's signature; `mode` is ok, 5xx or timeout
    (answers after the target's timeout, so the sink gives up on a request that arrived)."""

    def __init__(self, slow_s: float) -> None:
        self.mode = "ok"
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[int, bool]]] = defaultdict(list)  # id -> (status, signed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = verify(
                    SIGNING_KEY.encode(), self.headers["X-Escalator-Timestamp"],
                    self.headers["X-Escalator-Signature"], body, time.time(),
                )  # fmt: skip
                ident = self.headers["X-Escalator-Escalation-Id"] or ""
                mode = receiver.mode
                status = 500 if mode == "5xx" else 200
                if mode == "timeout":
                    time.sleep(receiver.slow_s)
                with receiver.lock:
                    receiver.got[ident].append((status if mode != "timeout" else 0, signed))
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok" if status == 200 else b"flapping")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> tuple[set[str], set[str]]:
        """(ids answered 200 with a valid signature, ids ever sent without a valid one)."""
        with self.lock:
            ok = {i for i, seen in self.got.items() if any(s == 200 and v for s, v in seen)}
            unsigned = {i for i, seen in self.got.items() if not all(v for _, v in seen)}
        return ok, unsigned

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------ the pipeline


def start_ingest(line: Pipeline) -> WorkerProcess:
    port = free_port()
    env = {**line.env(), "ESCALATOR_INGEST_TOKEN": TOKEN, "ESCALATOR_INGEST_RATE_LIMIT": "0",
           "ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS": "5000"}  # fmt: skip
    cmd = [sys.executable, "-m", "streams.cli", "ingest", "--host", "127.0.0.1", "--port",
           str(port), "--topic-prefix", line.prefix, "--loglevel", "info"]  # fmt: skip
    path = line.root / "ingest.log"
    with path.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    ingest = WorkerProcess("ingest", proc, path, port, ready="listening on")
    line.workers.append(ingest)
    return ingest


@dataclass
class Cluster:
    """Three workers, ingest, the Redis sink and the webhook sink on one Pipeline."""

    line: Pipeline
    procs: dict[str, WorkerProcess] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    unexpected_exits: list[str] = field(default_factory=list)
    liveness_restarts: list[str] = field(default_factory=list)
    failing: dict[str, float] = field(default_factory=dict)  # name -> /healthz failing since
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str, fresh: bool = False) -> WorkerProcess:
        if name.startswith("worker"):
            if fresh:
                shutil.rmtree(self.line.root / name, ignore_errors=True)
            proc = self.line.start_worker(name, event_time=True)
        elif name == "sink-redis":
            proc = self.line.start_sink(name, "redis")
        elif name == "sink-webhook":
            proc = self.line.start_sink(name, "webhook")
            proc.ready = "sink webhook: ready"
        else:
            proc = start_ingest(self.line)
        self.procs[name] = proc
        return proc

    def start_all(self) -> None:
        for name in ("worker-1", "worker-2", "worker-3", "sink-redis", "sink-webhook", "ingest"):
            self.start(name)
        for proc in self.procs.values():
            proc.wait_ready(180)

    def kill(self, name: str, fresh: bool) -> None:
        with self.lock:
            self.procs[name].kill()
        time.sleep(2)
        with self.lock:
            self.start(name, fresh)
            self.restarts[name] += 1

    def revive(self) -> None:
        """What Kubernetes would do: restart what exited by itself, and a worker whose liveness
        probe (/healthz, the loop's progress) has failed for LIVENESS_GRACE_S. Each is
        reported: a process should ride the faults out."""
        with self.lock:
            for name, proc in list(self.procs.items()):
                code = proc.proc.poll()
                if code is not None:
                    tail = proc.log_text()[-300:].strip().splitlines()
                    self.unexpected_exits.append(f"{name} exit {code}: {tail[-1] if tail else ''}")
                    log(f"{name} exited by itself (code {code}); restarting")
                    self.start(name)
                elif name.startswith("worker") and not self.alive(proc):
                    since = self.failing.setdefault(name, time.monotonic())
                    if time.monotonic() - since >= LIVENESS_GRACE_S:
                        self.liveness_restarts.append(f"{name} at {time.strftime('%H:%M:%S')}")
                        log(
                            f"{name}: /healthz failing for {LIVENESS_GRACE_S:g} s; SIGKILL, restart"
                        )
                        proc.kill()
                        self.failing.pop(name)
                        self.start(name)
                else:
                    self.failing.pop(name, None)

    @staticmethod
    def alive(proc: WorkerProcess) -> bool:
        url = f"http://127.0.0.1:{proc.web_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False
        except OSError:
            return True  # not serving yet (starting): the startup probe's business

    def pids(self) -> dict[str, int]:
        return {name: proc.proc.pid for name, proc in self.procs.items()}


# ------------------------------------------------------------------------------ sending


@dataclass
class Sender:
    """Posts the history through ingest in batches at a steady rate, in file order; a batch is
    retried until accepted (503 while the broker is away, connection errors)."""

    url: str
    lines: list[str]
    rate: float
    accepted: list[tuple[int, float]] = field(default_factory=list)  # (max occurred_at, wall)
    retries: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    error: str | None = None

    def post(self, body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(
            self.url + "/v1/events/batch", data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()[:300].decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)

    def run(self) -> None:
        started = time.monotonic()
        try:
            for first in range(0, len(self.lines), BATCH):
                chunk = self.lines[first : first + BATCH]
                ahead = first / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                body = "\n".join(chunk).encode()
                while True:
                    status, text = self.post(body)
                    if status == 202:
                        break
                    if status not in (0, 429, 500, 502, 503, 504):
                        raise RuntimeError(f"ingest answered {status} to a valid batch: {text}")
                    self.retries[str(status or "connection")] += 1
                    time.sleep(0.5)
                latest = max(parse_ts(json.loads(raw)["occurred_at"]) for raw in chunk)
                self.accepted.append((latest, time.time()))
                self.sent += len(chunk)
        except Exception as exc:  # reported by the run, which then fails
            self.error = f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------ reading


class Collector(threading.Thread):
    """A read_committed consumer of escalations for the whole run: every record and when it
    became readable."""

    def __init__(self, line: Pipeline) -> None:
        super().__init__(daemon=True)
        self.line = line
        self.records: list[tuple[str, int, float]] = []  # (escalation id, due_at, read at)
        self.poison = 0
        self.last = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        codec = codec_for("Escalation", self.line.settings)
        consumer = Consumer(
            {
                **self.line.settings.kafka.confluent(),
                "group.id": f"chaos-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "log_level": 0,
                "enable.auto.commit": False,
            }
        )
        topic = self.line.topics.escalations
        consumer.assign([TopicPartition(topic, p, -2) for p in range(self.line.partitions)])
        try:
            while not self.halt.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                self.last = time.monotonic()
                if msg.value() in POISON:
                    self.poison += 1
                    continue
                record = codec.decode(msg.value())
                self.records.append((record["escalation_id"], record["due_at"], time.time()))
        finally:
            consumer.close()


def read_all(line: Pipeline, topic: str, idle: float = 5.0) -> list[bytes]:
    """The committed values of a topic, read from the start until `idle` quiet seconds."""
    consumer = Consumer(
        {
            **line.settings.kafka.confluent(),
            "group.id": f"dlq-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "log_level": 0,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(line.topics.name(topic), p, -2)
                     for p in range(line.partitions)])  # fmt: skip
    values: list[bytes] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle:
            msg = consumer.poll(0.25)
            if msg is not None and not msg.error():
                values.append(msg.value())
                last = time.monotonic()
    finally:
        consumer.close()
    return values


def board_entries(reader: BoardReader, attempts: int = 10) -> dict[str, BoardEntry]:
    """The board's entries without their clocks. BoardReader.entries lists the open tickets,
    then reads each: a ticket the sink removes in between fails its zip (the sink is still
    converging), so the read is tried again."""
    for _ in range(attempts):
        try:
            return clockless(reader.entries())
        except ValueError:
            time.sleep(0.2)
    return clockless(reader.entries())


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return check()


# ------------------------------------------------------------------------------ the run


@dataclass
class Fault:
    kind: str
    start: float  # wall time
    end: float


@dataclass
class ChaosResult:
    events: int
    requests_retried: dict[str, int]
    expected: int
    lost: list[str]
    duplicated: list[str]
    board_equal: bool
    board_diff: list[str]
    receiver_missing: list[str]
    unsigned: list[str]
    dlq_unexpected: dict[str, int]
    dlq_poison: dict[str, int]
    faults: Counter[str]
    unexpected_exits: list[str]
    liveness_restarts: list[str]
    orphans: list[str]
    worst_latency_faults_s: float
    latency_p50_s: float
    latency_max_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.duplicated and self.board_equal
                and not self.receiver_missing and not self.unsigned
                and not any(self.dlq_unexpected.values()) and self.error is None
                and not self.orphans)  # fmt: skip

    def lines(self) -> list[str]:
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        retried = ", ".join(f"{k}: {n}" for k, n in sorted(self.requests_retried.items()))
        dlq = ", ".join(f"{k} {n}" for k, n in self.dlq_poison.items())
        odd = {k: n for k, n in self.dlq_unexpected.items() if n}
        return [
            f"faults   : {sum(self.faults.values())} injected: {faults}",
            f"events   : {self.events:,} through ingest (batches of {BATCH}; retried requests:"
            f" {retried or 'none'})",
            f"escalations: {self.expected:,} in the backtest; lost {len(self.lost)},"
            f" duplicated {len(self.duplicated)} (read_committed)",
            f"board    : {'equals' if self.board_equal else 'DIFFERS from'} the backtest's"
            + (f" ({len(self.board_diff)} tickets differ)" if self.board_diff else ""),
            f"receiver : missing {len(self.receiver_missing)}, unsigned {len(self.unsigned)}",
            f"dlq      : poison parked: {dlq}; anything else: {odd or 'nothing'}",
            f"latency  : worst detection latency during faults {self.worst_latency_faults_s:.1f} s"
            f" (whole run p50 {self.latency_p50_s:.2f} s, max {self.latency_max_s:.1f} s)",
            f"processes: exits nobody caused: {len(self.unexpected_exits)}"
            + "".join(f"\n  {e}" for e in self.unexpected_exits)
            + f"; liveness restarts (a stalled loop): {len(self.liveness_restarts)}"
            + (f" ({', '.join(self.liveness_restarts)})" if self.liveness_restarts else ""),
            f"orphans  : processes alive after the run stopped everything: {len(self.orphans)}"
            + "".join(f"\n  {o}" for o in self.orphans),
            *([f"ERROR    : {self.error}"] if self.error else []),
            f"verdict  : {'OK' if self.ok else 'FAILED'}",
        ]


def faults_plan(seconds: float, rng: random.Random) -> list[tuple[float, str]]:
    """(offset s, kind): one broker outage, one Redis restart, two receiver flaps of each kind,
    poison early, and random SIGKILLs every 12-20 s."""
    plan = [
        (0.10 * seconds, "poison"),
        (0.15 * seconds, "receiver_5xx"),
        (0.40 * seconds, "broker_restart"),
        (0.55 * seconds, "receiver_timeout"),
        (0.65 * seconds, "redis_restart"),
    ]
    if seconds >= 300:
        plan += [(0.80 * seconds, "receiver_5xx"), (0.90 * seconds, "receiver_timeout")]
    at = 6.0
    while at < seconds * 0.95:
        plan.append((at, "sigkill"))
        at += rng.uniform(12, 20)
    return sorted(plan)


@contextlib.contextmanager
def chaos_setup(root: Path, seed: int) -> Iterator[tuple[OwnServices, Pipeline, Receiver, Cluster]]:
    services = OwnServices(root)
    receiver = Receiver(slow_s=1.5)
    line: Pipeline | None = None
    try:
        log("starting a broker and redis of the run's own")
        services.up()
        targets = root / "targets.yaml"
        targets.write_text(
            f"targets:\n  - name: receiver\n    url: {receiver.url}\n    timeout_s: 1\n"
            "    max_attempts: 60\n    backoff_base_s: 0.2\n    backoff_cap_s: 2\n"
            "    max_pending: 100000\n    circuit_failures: 10000\n"
        )
        line = Pipeline(services.bootstrap, root, prefix=run_prefix(seed))
        line.extra_env.update(
            ESCALATOR_REDIS_URL=services.redis_url,
            ESCALATOR_WEBHOOK_TARGETS_FILE=str(targets),
            ESCALATOR_WEBHOOK_SIGNING_KEY=SIGNING_KEY,
            ESCALATOR_LIVENESS_STALL_S=str(LIVENESS_STALL_S),
        )
        line.create_topics()
        cluster = Cluster(line)
        log("starting 3 workers, ingest, the redis and webhook sinks")
        cluster.start_all()
        yield services, line, receiver, cluster
    finally:
        if line is not None:
            line.close()
            ORPHANS.extend(kill_orphans(line.prefix))
        receiver.close()
        services.down()


ORPHANS: list[str] = []  # processes of a run still alive after every one it started was stopped


def run_prefix(seed: int) -> str:
    """The run's topic prefix, which also names its processes for kill_orphans: this process's
    id in it, so two runs at once (a soak and a chaos run, same seed) never kill each other's."""
    return f"chaos{seed}-{os.getpid()}-"


def kill_orphans(prefix: str) -> list[str]:
    """SIGKILL this run's processes that outlived their stopped parents (say a worker child
    whose supervisor was SIGKILLed) and say which they were."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "streams.cli" in cmdline and f"--topic-prefix {prefix} " in cmdline:
            found.append(f"pid {proc.name}: {cmdline.strip()}")
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)
    return found


def run_chaos(root: Path, minutes: float, rate: float, seed: int = 1) -> ChaosResult:
    rng = random.Random(seed)
    ORPHANS.clear()
    seconds = minutes * 60
    history = root / "history.jsonl"
    agents = max(5, int(rate * seconds / 55))  # the generator makes ~55 events/agent/day
    summary = generate_to_file(history, agents=agents, days=1, seed=seed)
    lines = [raw for raw in history.read_text().splitlines() if raw.strip()]
    rate = len(lines) / seconds
    log(f"history: {summary.tickets:,} tickets, {len(lines):,} events; {rate:.0f} events/s")
    out = io.StringIO()
    (report,) = backtest_events([load_policy()], read_history(history), [out], board=True)
    assert report.board is not None
    expected = {
        json.loads(raw)["escalation_id"]
        for raw in out.getvalue().splitlines()
        if json.loads(raw)["action"] == "escalation"
    }
    with chaos_setup(root, seed) as (services, line, receiver, cluster):
        collector = Collector(line)
        collector.start()
        ingest = cluster.procs["ingest"]
        sender = Sender(f"http://127.0.0.1:{ingest.web_port}", lines, rate)
        sending = threading.Thread(target=sender.run, daemon=True)
        faults: list[Fault] = []
        counts: Counter[str] = Counter()
        started = time.time()
        sending.start()
        plan = faults_plan(seconds, rng)
        victims = ["worker-1", "worker-2", "worker-3", "sink-redis", "sink-webhook"]
        fresh = False
        for offset, kind in plan:
            while time.time() < started + offset:
                time.sleep(0.5)
                cluster.revive()
            t0 = time.time()
            if kind == "sigkill":
                victim = rng.choice(victims)
                if victim.startswith("worker"):
                    fresh = not fresh
                empty = fresh and victim.startswith("worker")
                log(f"sigkill {victim}" + (" (restarts on an empty store)" if empty else ""))
                cluster.kill(victim, empty)
                counts[f"sigkill_{victim.split('-')[0]}"] += 1
            elif kind == "broker_restart":
                log("broker down")
                services.kafka("down")
                time.sleep(10)
                services.kafka("start")
                log("broker up again")
                counts[kind] += 1
            elif kind == "redis_restart":
                log("redis SIGKILL")
                services.kill_redis()
                time.sleep(5)
                services.start_redis()
                log("redis up again")
                counts[kind] += 1
            elif kind.startswith("receiver"):
                receiver.mode = kind.split("_")[1]
                log(f"receiver flapping: {receiver.mode} for 12 s")
                time.sleep(12)
                receiver.mode = "ok"
                counts[kind] += 1
            elif kind == "poison":
                producer = Producer({**idempotent_producer(line.settings), "log_level": 0})
                producer.produce(line.topics.ticket_events, value=POISON[0], key=b"POISON-1")
                producer.produce(line.topics.escalations, value=POISON[1], key=b"POISON-2")
                producer.produce(line.topics.board, value=POISON[1], key=b"POISON-3")
                producer.flush(30)
                counts[kind] += 3
            faults.append(Fault(kind, t0, time.time()))
        while sending.is_alive():
            sending.join(1)
            cluster.revive()
        if sender.error is None:
            last = max(t for t, _ in sender.accepted)
            send_ticks(line.settings, line.topics, last)
            sender.accepted.append((2**62, time.time()))
            log(f"all {sender.sent:,} events accepted; end tick sent")

        def supervised(check: Callable[[], bool]) -> Callable[[], bool]:
            def supervise() -> bool:
                cluster.revive()
                return check()

            return supervise

        def complete() -> bool:
            seen = {i for i, _, _ in collector.records}
            return expected <= seen and time.monotonic() - collector.last > 10

        reader = BoardReader(redis.Redis.from_url(services.redis_url, decode_responses=True),
                             BoardKeys.from_settings(line.settings, line.prefix))  # fmt: skip
        want_board = clockless(report.board)
        complete_ok = wait_until(supervised(complete), 180)
        board_ok = wait_until(supervised(lambda: board_entries(reader) == want_board), 120)
        wait_until(supervised(lambda: expected <= receiver.delivered()[0]), 120)
        log(f"converged: escalations {complete_ok}, board {board_ok}")
        dlqs = {t: read_all(line, t) for t in ("ticket-events-dlq", "redis-sink-dlq",
                                               "webhook-dlq")}  # fmt: skip
        collector.halt.set()
        collector.join(10)
        board_now = board_entries(reader)

    ids = Counter(i for i, _, _ in collector.records)
    dead = {t: codec_for("WebhookDeadLetter" if t == "webhook-dlq" else "DeadLetter")
            for t in dlqs}  # fmt: skip
    poison: dict[str, int] = {}
    unexpected: dict[str, int] = {}
    for topic, values in dlqs.items():
        originals = [dead[topic].decode(v)["original"] for v in values]
        poison[topic] = sum(o in POISON for o in originals)
        unexpected[topic] = sum(o not in POISON for o in originals)
    # Detection latency: acknowledged-at of the first batch reaching each due time -> read at.
    reach = [t for t, _ in sender.accepted]
    for i in range(1, len(reach)):
        reach[i] = max(reach[i], reach[i - 1])
    latencies: list[tuple[float, float]] = []  # (trigger wall time, latency s)
    first_read: dict[str, tuple[int, float]] = {}
    for ident, due, at in collector.records:
        first_read.setdefault(ident, (due, at))
    for due, at in first_read.values():
        k = bisect.bisect_left(reach, due)
        if k < len(reach):
            trigger = sender.accepted[k][1]
            latencies.append((trigger, max(0.0, at - trigger)))
    in_faults = [lat for trig, lat in latencies
                 if any(f.start <= trig <= f.end + 30 for f in faults)]  # fmt: skip
    ordered = sorted(lat for _, lat in latencies)
    delivered, unsigned = receiver.delivered()
    diff = sorted(t for t in set(want_board) | set(board_now or {})
                  if want_board.get(t) != (board_now or {}).get(t))  # fmt: skip
    return ChaosResult(
        events=sender.sent,
        requests_retried=dict(sender.retries),
        expected=len(expected),
        lost=sorted(expected - set(ids)),
        duplicated=sorted(i for i, n in ids.items() if n > 1) + sorted(set(ids) - expected),
        board_equal=not diff,
        board_diff=diff,
        receiver_missing=sorted(expected - delivered),
        unsigned=sorted(unsigned),
        dlq_unexpected=unexpected,
        dlq_poison=poison,
        faults=counts,
        unexpected_exits=cluster.unexpected_exits,
        liveness_restarts=cluster.liveness_restarts,
        orphans=list(ORPHANS),
        worst_latency_faults_s=max(in_faults, default=0.0),
        latency_p50_s=ordered[len(ordered) // 2] if ordered else 0.0,
        latency_max_s=ordered[-1] if ordered else 0.0,
        error=sender.error,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events a second via ingest")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        result = run_chaos(root, args.minutes, args.rate, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs: {root}")
    for text in result.lines():
        print(text)
    if result.lost or result.duplicated:
        print(f"lost: {result.lost[:20]}\nduplicated: {result.duplicated[:20]}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
