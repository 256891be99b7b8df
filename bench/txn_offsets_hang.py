"""Does `send_offsets_to_transaction` keep its timeout after the broker stops and starts?

    .venv/bin/python bench/txn_offsets_hang.py [--timeout 10] [--cap 120]

Found by bench/chaos.py: after its broker restart, workers that survived it stalled inside
`Producer.send_offsets_to_transaction(..., 30 s)` (streams/runtime/worker.py `_commit`) for minutes,
until the liveness probe or max.poll.interval.ms (300 s) ended them. This reproduces it with
bare clients on a broker of its own (deploy/local/services, own state dir and ports): a
consumer in a group and a transactional producer commit one transaction; the broker is
stopped for 10 s and started on its data; the consumer polls until it is assigned again; then
one more transaction's `send_offsets_to_transaction(timeout)` runs in a thread and the time it
takes is printed (capped at --cap seconds). librdkafka issues 5456 and 5511 describe the cause
(the coordinator request's timeout is never checked).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.*, tests.integration

from confluent_kafka import Consumer, Producer, TopicPartition, libversion  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench.chaos import OwnServices  # noqa: E402


def timed_offsets(producer: Producer, consumer: Consumer, timeout: float, cap: float) -> str:
    """Begin a transaction, produce one record and send the consumer's positions; how long
    send_offsets_to_transaction took, or that it still blocks after `cap` seconds."""
    positions = consumer.position(consumer.assignment())
    offsets = [TopicPartition("in", tp.partition, max(tp.offset, 0)) for tp in positions]
    producer.begin_transaction()
    producer.produce("out", b"y", partition=0)
    outcome: list[str] = []

    def send() -> None:
        try:
            producer.send_offsets_to_transaction(
                offsets, consumer.consumer_group_metadata(), timeout
            )
            outcome.append("returned")
        except Exception as exc:  # the error is the figure
            outcome.append(f"raised {exc}")

    started = time.monotonic()
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(cap)
    took = time.monotonic() - started
    if not outcome:
        return f"STILL BLOCKED after {took:.0f} s (timeout {timeout:g} s)"
    if outcome[0] == "returned":
        producer.commit_transaction(30)
    return f"{outcome[0]} after {took:.1f} s (timeout {timeout:g} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cap", type=float, default=120.0)
    args = parser.parse_args()
    services = OwnServices(Path(tempfile.mkdtemp(prefix="txnhang-")))
    try:
        services.up(with_redis=False)
        boot = services.bootstrap
        admin = AdminClient({"bootstrap.servers": boot})
        for future in admin.create_topics([NewTopic("in", 3, 1), NewTopic("out", 3, 1)]).values():
            future.result()
        consumer = Consumer({"bootstrap.servers": boot, "group.id": "g", "log_level": 0,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "isolation.level": "read_committed"})  # fmt: skip
        consumer.subscribe(["in"])
        producer = Producer({"bootstrap.servers": boot, "transactional.id": "t", "log_level": 0})
        producer.init_transactions(30)
        while not consumer.assignment():
            consumer.poll(0.5)
        print(f"librdkafka {libversion()[0]}")
        print(f"before the broker restart: {timed_offsets(producer, consumer, args.timeout, 30)}")
        services.kafka("down")
        time.sleep(10)
        services.kafka("start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            consumer.poll(0.5)
        print(f"after it (assigned {len(consumer.assignment())} partitions again): "
              f"{timed_offsets(producer, consumer, args.timeout, args.cap)}")  # fmt: skip
    finally:
        services.down()
        shutil.rmtree(services.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
