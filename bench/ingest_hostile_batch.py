"""What a hostile batch costs `escalator ingest` (figures, never pass/fail).

    .venv/bin/python bench/ingest_hostile_batch.py [--items 1000000]

The body is `[{},{},...]` (3 MB for a million items): every item is an invalid event. Printed:
peak Python memory of parsing it the old way (orjson.loads of the whole array, then validating
every item) and the new way (Ingest.parse_batch: item by item, stops at the 100th error or the
item cap), and the longest stall of the event loop while the server answers that request (a
10 ms ticker runs beside it). No Kafka needed: the sink is in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from connectors.sources.ingest import Ingest
from schemas.codec import codec_for
from streams.sla.events import EventError, event_from_dict

TOKEN = "bench-token-0123456789"


class NullPublisher:
    """Accepts every event at once: the bench measures parsing, not Kafka."""

    async def send(self, records: Any) -> None:
        pass

    async def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def old_way(body: bytes) -> int:
    """What the batch endpoint did before: the whole array at once, every item validated."""
    errors = 0
    for item in orjson.loads(body):
        try:
            event_from_dict(item)
        except EventError:
            errors += 1
    return errors


def peak(parse: Callable[[bytes], Any], body: bytes) -> tuple[float, float]:
    """(peak MB, seconds) of one parse: timed untraced, then traced for the memory."""
    started = time.perf_counter()
    parse(body)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    parse(body)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top / 1e6, seconds


async def loop_stall(ingest: Ingest, body: bytes) -> tuple[float, int]:
    """(longest gap of a 10 ms ticker in ms, HTTP status) while the server answers `body`."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with TestClient(TestServer(ingest.app())) as client:
        tick = asyncio.create_task(ticker())
        response = await client.post(
            "/v1/events/batch", data=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        done.set()
        await tick
    return max(gaps) * 1000, response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    body = b"[" + b",".join([b"{}"] * args.items) + b"]"
    ingest = Ingest(NullPublisher(), codec_for("TicketEvent"), TOKEN, batch_max_bytes=len(body) + 1)
    old_mb, old_s = peak(old_way, body)
    new_mb, new_s = peak(ingest.parse_batch, body)
    stall_ms, status = asyncio.run(loop_stall(ingest, body))
    print(f"body: {len(body) / 1e6:.1f} MB, {args.items:,} items of {{}}")
    print(f"old parse: peak {old_mb:8.1f} MB, {old_s * 1000:8.1f} ms (on the event loop)")
    print(f"new parse: peak {new_mb:8.1f} MB, {new_s * 1000:8.1f} ms (in a worker thread)")
    print(f"ratio:     memory {old_mb / max(new_mb, 1e-9):,.0f}x less, "
          f"time {old_s / max(new_s, 1e-9):,.0f}x less")  # fmt: skip
    print(
        f"server:    answered {status}, longest event-loop stall {stall_ms:.1f} ms "
        "(ticker every 10 ms)"
    )


if __name__ == "__main__":
    main()
