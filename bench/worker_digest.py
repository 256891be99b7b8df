"""The worker's records, changelog and metrics on a history, driven offline, as one digest.

    .venv/bin/python bench/worker_digest.py [--agents 400 --days 3 | --history F] [--commit-every N]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/worker_digest.py ...

Why: a speed change to the loop or the processor must change no byte the worker writes. This
drives the event-time `Worker` that `escalator worker --event-time` builds, from the tree on
the path, with no broker: every message of a generated history (Avro, keyed by ticket, one
end tick per partition, as bench/pipeline.py replays it) goes through `Worker._handle`, and
a transaction commits every `--commit-every` messages through a producer that records every
record sent (topic, partition, key, value) instead of sending it, with the collector tuned as
the live worker tunes it (streams.runtime.worker.tune_collector). The wall clock is fixed, so
emitted_at and the event lag are too. Prints a SHA-256 of the output records in send order,
of the changelog records as each transaction restores them (compacted: the last value per
key), of the stores' contents, the processor's counters and the worker's /metrics families
(the process's own left out), each apart and all together, plus the records per topic and
the CPU seconds of the drive. Two trees that print the same digest wrote the same outputs
and restore the same state.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.processor import TICK_HEADER, SteadyClock, build_processor, encode_tick
from streams.runtime.settings import load_settings
from streams.runtime.topics import Topics
from streams.runtime.worker import Worker, tune_collector
from streams.runtime.worker_metrics import WorkerCollector
from streams.sla.policy import load_policy
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history

WALL_MS = 1_800_000_000_000  # 2027-01-15: the fixed wall clock (after every generated event)


class Message:
    """What the worker reads of a confluent-kafka message."""

    __slots__ = ("_value", "_key", "_partition", "_offset", "_headers")

    def __init__(self, value: bytes, key: bytes | None, partition: int, offset: int,
                 headers: list[tuple[str, bytes]] | None) -> None:  # fmt: skip
        self._value, self._key, self._partition = value, key, partition
        self._offset, self._headers = offset, headers

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, WALL_MS  # TIMESTAMP_CREATE_TIME

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key


class RecordingProducer:
    """The transactional producer's calls the worker makes. The outputs go into a hash in
    send order; the changelog's records into another per transaction, compacted as a reader
    of the committed transaction restores them: the last value per key, by partition, keys
    in the order of their first write."""

    def __init__(self, changelog: str) -> None:
        self.changelog = changelog
        self.outputs = hashlib.sha256()
        self.states = hashlib.sha256()
        self.txn: dict[tuple[int, bytes], bytes | None] = {}
        self.counts: dict[str, int] = {}
        self.compacted = 0  # changelog records, compacted per transaction

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if topic == self.changelog:
            self.txn[partition, key] = value
        else:
            _record(self.outputs, topic, partition, key, value)

    def begin_transaction(self) -> None:
        pass

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        order = {pk: i for i, pk in enumerate(self.txn)}
        for partition, key in sorted(self.txn, key=lambda pk: (pk[0], order[pk])):
            _record(self.states, self.changelog, partition, key, self.txn[partition, key])
        self.compacted += len(self.txn)
        self.txn = {}

    def poll(self, timeout: float) -> int:
        return 0


def _record(h: Any, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
    h.update(b"%s\0%d\0%d\0" % (topic.encode(), partition, len(key)))
    h.update(key)
    h.update(b"-" if value is None else b"%d\0" % len(value))
    if value is not None:
        h.update(value)


def messages(history: Path, partitions: int) -> list[Message]:
    """The history as ticket-events messages, partitioned by key, then an end tick on each."""
    codec = codec_for("TicketEvent", load_settings({}), Topics())
    offsets = [0] * partitions
    out, last = [], 0
    for item in read_history(history):
        key = item.ticket_id.encode()
        p = zlib.crc32(key) % partitions
        out.append(Message(codec.encode(ticket_event_to_avro(item)), key, p, offsets[p], None))
        offsets[p] += 1
        last = max(last, item.occurred_at)
    for p in range(partitions):
        out.append(Message(encode_tick(last), None, p, offsets[p], [(TICK_HEADER, b"1")]))
    return out


def drive(data: Path, history: Path, commit_every: int) -> dict[str, Any]:
    settings = load_settings({"ESCALATOR_DATA_DIR": str(data), "ESCALATOR_STORE": "memory://",
                              "ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})  # fmt: skip
    topics = Topics("digest-")
    processor = build_processor(settings, load_policy(), topics, True)
    for lane in [processor] if processor.shadow is None else [processor, processor.shadow]:
        lane.clock = SteadyClock(lambda: WALL_MS, lambda: 0.0)
    worker = Worker(settings, processor, topics, event_time=True)
    worker.consumer.close()  # never read: the messages are handed to the worker
    producer = RecordingProducer(worker.changelog)
    worker.producer = producer  # type: ignore[assignment]
    partitions = settings.partitions
    for p in range(partitions):
        worker.state.open(p)
    worker._set_owned(list(range(partitions)))
    worker.rebalancing = False
    msgs = messages(history, partitions)
    tune_collector()  # as `escalator worker` does once built (its CPU, not the digest)
    handle = worker._handle
    started = time.process_time()
    for i, msg in enumerate(msgs, 1):
        handle(msg)  # type: ignore[arg-type]
        if i % commit_every == 0:
            worker._commit()
    worker._commit()
    cpu = time.process_time() - started
    stores = hashlib.sha256()
    for p in range(partitions):
        for key, value in sorted(worker.state.stores[p].items()):
            stores.update(b"%d\0%d\0" % (p, len(key)) + key + b"%d\0" % len(value) + value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(processor, lambda: []))
    metrics = generate_latest(registry)
    counters = repr(asdict(processor.counters)).encode()
    parts = {
        "outputs": producer.outputs.hexdigest(),
        "changelog": producer.states.hexdigest(),
        "stores": stores.hexdigest(),
        "counters": hashlib.sha256(counters).hexdigest(),
        "metrics": hashlib.sha256(metrics).hexdigest(),
    }
    everything = hashlib.sha256("".join(parts.values()).encode()).hexdigest()
    return {"messages": len(msgs), "cpu": cpu, "parts": parts, "digest": everything,
            "counts": producer.counts, "compacted": producer.compacted}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--commit-every", type=int, default=500)
    parser.add_argument("--history", type=Path, help="a history file, not generated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        history = args.history or Path(tmp) / "history.jsonl"
        if args.history is None:
            generate_to_file(history, agents=args.agents, days=args.days, seed=99)
        result = drive(Path(tmp) / "data", history, args.commit_every)
    n, cpu = result["messages"], result["cpu"]
    print(f"{n:,} messages, {cpu:.2f} CPU-s ({n / cpu:,.0f} per CPU-s) from "
          f"{Path(sys.modules['streams'].__file__ or '').parent.parent}")  # fmt: skip
    print("records : " + ", ".join(f"{t} {c:,}" for t, c in sorted(result["counts"].items()))
          + f" ({result['compacted']:,} compacted per transaction)")  # fmt: skip
    for name, digest in result["parts"].items():
        print(f"{name:<8}: {digest}")
    print(f"digest  : {result['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
