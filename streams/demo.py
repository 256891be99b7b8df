"""`escalator demo`: a contact-center day through the real pipeline, in a minute or two.

Starts the local Kafka and Redis (or uses the configured ones), generates a day
of tickets, runs an event-time worker as a subprocess, replays the day at high
speed and prints escalations as they become readable on the topic. At the end
it checks the live result against the offline backtest of the same day.
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from connectors.generator import generate_to_file
from connectors.history import read_history
from schemas.codec import codec_for
from streams.backtest import backtest_events
from streams.replay import describe, replay
from streams.settings import load_settings
from streams.sla.policy import load_policy
from streams.topics import Topics, ensure_topics

REPO = Path(__file__).resolve().parent.parent


@dataclass
class DemoOptions:
    agents: int = 40
    days: int = 1
    seed: int = 2026
    rate: float = 2000.0
    workdir: Path = REPO / "var" / "demo"


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


def run_demo(options: DemoOptions, out: object = sys.stdout) -> int:
    """Run the demo; returns 0 when live escalations equal the backtest's."""
    write = out.write  # type: ignore[attr-defined]
    _services_up()
    settings = load_settings()
    run = time.strftime("%Y%m%d%H%M%S")
    topics = Topics(f"demo{run}-")
    ensure_topics(settings, topics)
    options.workdir.mkdir(parents=True, exist_ok=True)
    history = options.workdir / "day.jsonl"
    summary = generate_to_file(history, agents=options.agents, days=options.days, seed=options.seed)
    policy = load_policy()
    (report,) = backtest_events([policy], read_history(history))
    expected = sum(report.by_reason.values())
    write(
        f"demo: {summary.tickets:,} tickets, {summary.events:,} events of a contact-center day; "
        f"the backtest expects {expected:,} escalations\n"
    )
    port = free_port()
    data = options.workdir / f"worker-{run}"
    env = {
        **os.environ,
        "ESCALATOR_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "ESCALATOR_DATA_DIR": str(data),
        "ESCALATOR_WEB_PORT": str(port),
    }
    log_path = options.workdir / f"worker-{run}.log"
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--event-time",
             "--topic-prefix", topics.prefix, "--loglevel", "info"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    seen: list[str] = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 180
        while "Worker ready" not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: the worker did not start; see {log_path}")
            time.sleep(0.3)
        write(f"demo: worker running (log {log_path}, web http://127.0.0.1:{port}/)\n")
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
        write(report.format() + "\n")
        return 0 if same else 1
    except KeyboardInterrupt:
        write("\ndemo: interrupted, stopping\n")
        return 130
    finally:
        stop.set()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _print_escalations(settings, topics, seen, stop, write) -> None:  # type: ignore[no-untyped-def]
    codec = codec_for("Escalation", settings)
    consumer = Consumer(
        {
            **settings.kafka.confluent(),
            "group.id": f"demo-printer-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
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
