"""Real worker processes on the real local broker, for pipeline tests and the bench.

Each Pipeline has its own topic prefix, so its topics, consumer group, changelog and RocksDB
state are its own; workers run as `escalator worker` subprocesses, exactly as in production,
and can be killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from schemas.codec import codec_for
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import Topics, ensure_topics
from streams.tools.demo import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    web_port: int
    ready: str = "Worker ready"  # the log line that says the process is ready

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 120.0, after: int = 0) -> None:
        """Wait for the n-th (after+1) ready line in the log: start or a later rebalance."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log_text()[-4000:]}")
            if self.log_text().count(self.ready) > after:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"worker {self.name} not ready in {timeout}s:\n{self.log_text()[-4000:]}"
        )

    def partitions(self) -> list[int]:
        """The ticket-events partitions the worker reports on /readyz (empty until ready)."""
        url = f"http://127.0.0.1:{self.web_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return list(json.load(response)["partitions"])
        except (OSError, ValueError, KeyError):
            return []

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Pipeline:
    bootstrap: str
    root: Path
    partitions: int = 3
    prefix: str = field(default_factory=lambda: f"it{uuid.uuid4().hex[:10]}-")
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    runtime: str = "loop"  # the worker's --runtime: loop (exactly-once) or faust (at-least-once)
    source: Path = REPO  # the tree workers run from: this one, or a compiled copy of it

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
        env.update(
            {
                "ESCALATOR_KAFKA_BOOTSTRAP": self.bootstrap,
                "ESCALATOR_PARTITIONS": str(self.partitions),
                "ESCALATOR_PROCESSING_GUARANTEE": (
                    "exactly_once" if self.runtime == "loop" else "at_least_once"
                ),
                **self.extra_env,
            }
        )
        return env

    @property
    def settings(self) -> Settings:
        return load_settings(self.env())

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def create_topics(self) -> None:
        ensure_topics(self.settings, self.topics)

    def start_worker(
        self,
        name: str,
        event_time: bool = True,
        policy: Path | None = None,
        shadow_policy: Path | None = None,
    ) -> WorkerProcess:
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {**self.env(), "ESCALATOR_DATA_DIR": str(data), "ESCALATOR_WEB_PORT": str(port)}
        if self.source != REPO:
            env["PYTHONPATH"] = str(self.source)
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--topic-prefix", self.prefix,
               "--loglevel", "info", "--runtime", self.runtime]  # fmt: skip
        if event_time:
            cmd.append("--event-time")
        if policy is not None:
            cmd += ["--policy", str(policy)]
        if shadow_policy is not None:
            cmd += ["--shadow-policy", str(shadow_policy)]
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=self.source, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(name, proc, log, port)
        self.workers.append(worker)
        return worker

    def start_alerts(
        self, name: str = "alerts", policy: Path | None = None, port: int | None = None
    ) -> WorkerProcess:
        """`escalator alerts` as a subprocess with its own metrics port (`web_port`, a free
        one unless given); wait_ready() waits for 'alerts ready'."""
        port = port or free_port()
        cmd = [sys.executable, "-m", "streams.cli", "alerts", "--topic-prefix", self.prefix,
               "--loglevel", "info"]  # fmt: skip
        if policy is not None:
            cmd += ["--policy", str(policy)]
        env = {**self.env(), "ESCALATOR_METRICS_PORT": str(port)}
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        process = WorkerProcess(name, proc, log, port, ready="alerts ready")
        self.workers.append(process)
        return process

    def start_sink(self, name: str, kind: str, *args: str) -> WorkerProcess:
        """`escalator sink KIND ARGS` as a subprocess with its own metrics port (`web_port`);
        wait_ready() waits for 'sink KIND ready'."""
        port = free_port()
        cmd = [sys.executable, "-m", "streams.cli", "sink", kind, "--topic-prefix", self.prefix,
               "--loglevel", "info", *args]  # fmt: skip
        env = {**self.env(), "ESCALATOR_METRICS_PORT": str(port)}
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        process = WorkerProcess(name, proc, log, port, ready=f"sink {kind} ready")
        self.workers.append(process)
        return process

    def read(
        self,
        topic: str,
        schema: str,
        expect: int | None = None,
        timeout: float = 60.0,
        idle: float = 3.0,
        distinct: str | None = None,
    ) -> list[dict[str, Any]]:
        """All committed records of an output topic, decoded, each with `_received_at` (ms);
        waits for `expect` records, or for `expect` distinct values of the field `distinct`
        (at-least-once repeats some), then `idle` more seconds to catch duplicates; without
        `expect`, until `idle` seconds bring nothing."""
        codec = codec_for(schema, self.settings)
        consumer = Consumer(
            {
                **self.settings.kafka.confluent(),
                "group.id": f"reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        name = self.topics.name(topic)
        consumer.assign([TopicPartition(name, p, -2) for p in range(self.partitions)])
        records: list[dict[str, Any]] = []
        values: set[Any] = set()
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(0.25)
                if msg is not None and not msg.error():
                    record = codec.decode(msg.value())
                    record["_received_at"] = int(time.time() * 1000)
                    records.append(record)
                    if distinct is not None:
                        values.add(record[distinct])
                    last = time.monotonic()
                    continue
                got = len(records) if distinct is None else len(values)
                enough = expect is None or got >= expect
                if enough and time.monotonic() - last > idle:
                    break
        finally:
            consumer.close()
        return records

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=20)


RUNTIMES = ("loop", "faust")
