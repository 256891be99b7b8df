"""Faust's own floor under the worker's settings, run by bench/pipeline.py.

    .venv/bin/python bench/faust_floor.py TOPIC TOTAL DATA_DIR [--sends N] [--sink TOPIC]

An agent on the worker's Faust app (streams.worker.faust_app: same guarantee, commit
interval, linger, event loop) that reads TOPIC and does nothing else, or sends N raw
records per event to SINK the way the worker sends its outputs and changelog records
(streams.worker.send_raw). What separates the worker from this floor is the worker's own
work; what separates this floor from the bare confluent-kafka consumer is Faust's.
Prints one line: FLOOR <events/s> <events per CPU second>, then exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import mode.loop

mode.loop.use("uvloop")  # as `escalator worker` does

from faust import Worker  # noqa: E402

from streams.demo import free_port  # noqa: E402
from streams.processor import Out  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.worker import faust_app, send_raw  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("total", type=int)
    parser.add_argument("data_dir", type=Path, help="Faust's data dir (the caller removes it)")
    parser.add_argument("--sends", type=int, default=0)
    parser.add_argument("--sink")
    args = parser.parse_args()
    settings = replace(
        load_settings(),
        app_id=f"floor-{uuid.uuid4().hex[:8]}",
        data_dir=args.data_dir,
        store="memory://",
        web_port=free_port(),
    )
    app = faust_app(settings)
    source = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    # Like the worker's; without a table Faust does not run its own partition assignor.
    app.Table("floor", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    seen = {"n": 0, "wall": 0.0, "cpu": 0.0}

    @app.agent(source, name="floor")
    async def floor(stream: Any) -> None:
        async for event in stream.events():
            if seen["n"] == 0:
                seen["wall"], seen["cpu"] = time.perf_counter(), time.process_time()
            if args.sends:
                message = event.message
                out = Out(args.sink, message.key or b"", event.value or b"")
                await send_raw(app, message.topic, message.partition, [out] * args.sends)
            seen["n"] += 1
            if seen["n"] >= args.total:
                wall = time.perf_counter() - seen["wall"]
                cpu = time.process_time() - seen["cpu"]
                print(f"FLOOR {args.total / wall:.1f} {args.total / cpu:.1f}", flush=True)
                os._exit(0)

    sys.argv = [sys.argv[0]]
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
