"""`escalator demo`: a contact-center day through the real pipeline, in a minute or two.

Starts the local Kafka and Redis (or uses the configured ones), generates a day
of tickets, runs an event-time worker, the Redis board sink and the board page as
subprocesses, replays the day at high speed and prints escalations as they
become readable on the topic. At the end it checks the live escalations and the
board in Redis against the offline backtest of the same day. Ctrl-C stops
everything it started; the demo's topics and board keys (prefix demo<time>-)
stay for a look afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from connectors.sinks.board_store import BoardKeys, BoardReader
from schemas.codec import codec_for
from schemas.readable import describe
from streams.runtime.kafka_config import committed_reader
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import Topics, ensure_topics
from streams.sla.board import BoardEntry, clockless
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history
from streams.tools.replay import replay

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DemoOptions:
    agents: int = 40
    days: int = 1
    seed: int = 2026
    rate: float = 2000.0
    workdir: Path = REPO / "var" / "demo"
    stay: bool = False  # keep worker, sink and board running after the check, until Ctrl-C


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _services_up() -> None:
    if os.environ.get("ESCALATOR_KAFKA_BOOTSTRAP") and os.environ.get("ESCALATOR_REDIS_URL"):
        return
    script = REPO / "deploy" / "local" / "services"
    result = subprocess.run(["bash", str(script), "up"], cwd=REPO, check=False)
    if result.returncode != 0:
        raise SystemExit("demo: local services did not start (see the line above)")


def _local_registry() -> str | None:
    """ESCALATOR_SCHEMA_REGISTRY_URL, or the local schema registry's URL when
    `deploy/local/services up registry` runs it; None: the committed ids.json."""
    if os.environ.get("ESCALATOR_SCHEMA_REGISTRY_URL"):
        return os.environ["ESCALATOR_SCHEMA_REGISTRY_URL"]
    script = REPO / "deploy" / "local" / "services"
    status = subprocess.run(
        ["bash", str(script), "status", "registry"], cwd=REPO, capture_output=True, check=False
    )
    if status.returncode != 0:
        return None
    state = Path(os.environ.get("ESCALATOR_LOCAL_DIR") or REPO / "var" / "local")
    for line in (state / "registry" / "info.env").read_text().splitlines():
        if line.startswith("REGISTRY_URL="):
            return line.split("=", 1)[1].strip()
    return None


class Children:
    """The processes the demo starts, each logging to its own file; stopped in reverse order."""

    def __init__(self, workdir: Path, run: str) -> None:
        self.workdir = workdir
        self.run = run
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Path:
        log_path = self.workdir / f"{name}-{self.run}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *args],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started.append((name, proc, log_path))
        return log_path

    def wait_for(self, name: str, line: str, timeout: float = 180.0) -> None:
        """Until the process's log shows `line`; exits the demo if it dies or takes too long."""
        _, proc, log_path = next(c for c in self.started if c[0] == name)
        deadline = time.monotonic() + timeout
        while line not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: the {name} did not start; see {log_path}")
            time.sleep(0.3)

    def exited(self) -> str | None:
        """The name of a process that is no longer running, if any."""
        return next((name for name, proc, _ in self.started if proc.poll() is not None), None)

    def stop(self) -> None:
        for _, proc, _ in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in reversed(self.started):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_demo(options: DemoOptions, out: object = sys.stdout) -> int:
    """Run the demo; returns 0 when live escalations and the board equal the backtest's."""
    write = out.write  # type: ignore[attr-defined]
    _services_up()
    settings = load_settings()
    registry = _local_registry()
    if registry:
        settings = replace(settings, schema_registry_url=registry)
        write(f"demo: schema registry at {registry} (subjects <topic>-value)\n")
    run = time.strftime("%Y%m%d%H%M%S")
    topics = Topics(f"demo{run}-")
    ensure_topics(settings, topics)
    options.workdir.mkdir(parents=True, exist_ok=True)
    history = options.workdir / "day.jsonl"
    summary = generate_to_file(history, agents=options.agents, days=options.days, seed=options.seed)
    policy = load_policy()
    (report,) = backtest_events([policy], read_history(history), board=True)
    expected = sum(report.by_reason.values())
    expected_board = clockless(report.board or {})
    write(
        f"demo: {summary.tickets:,} tickets, {summary.events:,} events of a contact-center day; "
        f"the backtest expects {expected:,} escalations, {len(expected_board):,} tickets open "
        "on the board at the end\n"
    )
    port, sink_port, board_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "ESCALATOR_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "ESCALATOR_REDIS_URL": settings.redis.url,
        "ESCALATOR_SCHEMA_REGISTRY_URL": settings.schema_registry_url or "",
    }
    prefix = ["--topic-prefix", topics.prefix]
    board_keys = BoardKeys.from_settings(settings, topics.prefix)
    children = Children(options.workdir, run)
    seen: list[str] = []
    stop = threading.Event()
    try:
        worker_log = children.start(
            "worker",
            ["worker", "--event-time", *prefix, "--loglevel", "info"],
            {**env, "ESCALATOR_DATA_DIR": str(options.workdir / f"worker-{run}"),
             "ESCALATOR_WEB_PORT": str(port)},
        )  # fmt: skip
        children.start(
            "sink", ["sink", "redis", *prefix], {**env, "ESCALATOR_METRICS_PORT": str(sink_port)}
        )
        children.start(
            "board",
            ["board", "--port", str(board_port), *prefix, "--worker-url",
             f"http://127.0.0.1:{port}", "--sink-url", f"http://127.0.0.1:{sink_port}"],
            env,
        )  # fmt: skip
        children.wait_for("worker", "Worker ready")
        children.wait_for("sink", "sink redis ready")
        children.wait_for("board", "escalator board: serving")
        write(
            f"demo: worker running (log {worker_log}, metrics http://127.0.0.1:{port}/metrics)\n"
            f"demo: escalation board at http://127.0.0.1:{board_port}/ (Redis keys "
            f"{board_keys.prefix}*, sink metrics http://127.0.0.1:{sink_port}/metrics)\n"
        )
        printer = threading.Thread(
            target=_print_escalations, args=(settings, topics, seen, stop, write), daemon=True
        )
        printer.start()
        replay(settings, history, topics, rate=options.rate, end_tick=True)
        idle_since = time.monotonic()
        count = 0
        while time.monotonic() - idle_since < 10 and len(seen) < expected:
            if len(seen) != count:
                count, idle_since = len(seen), time.monotonic()
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        printer.join(5)
        same = len(seen) == expected and len(set(seen)) == len(seen)
        write(
            f"\ndemo: {len(seen):,} escalations fired live, {expected:,} in the backtest: "
            + ("identical count, no duplicates\n" if same else "MISMATCH\n")
        )
        board = _settled_board(settings, board_keys, expected_board)
        same_board = board == expected_board
        write(
            f"demo: {len(board):,} tickets open on the board in Redis, {len(expected_board):,} "
            "in the backtest: " + ("identical\n" if same_board else "MISMATCH\n")
        )
        write(report.format() + "\n")
        if options.stay:
            write(f"\ndemo: the board stays at http://127.0.0.1:{board_port}/; Ctrl-C stops "
                  "the worker, the sink and the board\n")  # fmt: skip
            while (gone := children.exited()) is None:
                time.sleep(1)
            write(f"demo: the {gone} stopped; see its log in {options.workdir}\n")
        return 0 if same and same_board else 1
    except KeyboardInterrupt:
        write("\ndemo: interrupted, stopping\n")
        return 130
    finally:
        stop.set()
        children.stop()


def _settled_board(
    settings: Settings, keys: BoardKeys, expected: dict[str, BoardEntry], timeout: float = 30.0
) -> dict[str, BoardEntry]:
    """The Redis board once it equals `expected`, or as it is after `timeout` seconds."""
    client = settings.redis.client(decode_responses=True)
    reader = BoardReader(client, keys)
    deadline = time.monotonic() + timeout
    try:
        while True:
            board = clockless(reader.entries())
            if board == expected or time.monotonic() > deadline:
                return board
            time.sleep(0.5)
    finally:
        client.close()


def _print_escalations(settings, topics, seen, stop, write) -> None:  # type: ignore[no-untyped-def]
    codec = codec_for("Escalation", settings, topics)
    consumer = Consumer(committed_reader(settings, f"demo-printer-{time.time_ns()}"))
    consumer.assign([TopicPartition(topics.escalations, p, -2) for p in range(settings.partitions)])
    try:
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            record = codec.decode(msg.value())
            seen.append(record["escalation_id"])
            write(describe("Escalation", record) + "\n")
    finally:
        consumer.close()
