"""A Worker in the test's own process (its loop on a thread, real clients), so a test can stall
it at a chosen point or slow its restore; and a ticket's stored state to seed a changelog."""

from __future__ import annotations

import functools
import io
import threading
import time
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from streams.runtime.processor import build_processor, encode_state
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.runtime.worker import READY, Worker, changelog_topic
from streams.sla.engine import Engine
from streams.sla.policy import Policy, load_policy
from tests.support.live import event
from tests.support.pipeline import Pipeline


def worker_settings(pipeline: Pipeline, name: str) -> Settings:
    """What `escalator worker --topic-prefix` runs with, for a worker in this process."""
    settings = pipeline.settings
    settings = replace(
        settings, app_id=f"{pipeline.prefix}{settings.app_id}", data_dir=pipeline.root / name
    )
    changelog = changelog_topic(settings)
    ensure_topics(settings, pipeline.topics, [changelog], compact=True)
    admin = AdminClient(settings.kafka.confluent())
    deadline = time.monotonic() + 30
    while changelog not in admin.list_topics(timeout=10).topics:  # known to the clients
        assert time.monotonic() < deadline, f"{changelog} not in the metadata after 30 s"
        time.sleep(0.2)
    return settings


def new_worker(settings: Settings, policy: Policy, pipeline: Pipeline, out: io.StringIO) -> Worker:
    """A wall-clock Worker in this process, with the processor `escalator worker` makes."""
    processor = build_processor(settings, policy, pipeline.topics, False)
    return Worker(settings, processor, pipeline.topics, out=out)


class Stalling:
    """The group consumer, except that consume() can be held after it returned: the worker
    then stalls between a poll and its processing, as in a long pause of the process."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def consume(self, *args: Any) -> list[Any]:
        messages = self.consumer.consume(*args)
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait()
            self.stall.clear()
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


class Running:
    """A Worker's run() on a thread; `error` is what it raised."""

    def __init__(self, worker: Worker, out: io.StringIO) -> None:
        self.worker, self.out = worker, out
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_ready(self, after: int = 0, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.out.getvalue().count(READY) <= after:
            assert self.thread.is_alive(), f"worker died: {self.error!r}\n{self.out.getvalue()}"
            assert time.monotonic() < deadline, f"not ready:\n{self.out.getvalue()}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)


@functools.cache
def engine() -> Engine:
    return Engine(load_policy())


def ticket_state(ticket: str, at: int, partition: int = 0) -> bytes:
    state, _ = engine().apply(None, event(ticket, f"{ticket}-1", at))
    return encode_state(partition, state)
