"""Minimal Faust app for the integration smoke test (run as a worker subprocess).

Configured by environment variables set by test_smoke.py:
SMOKE_BOOTSTRAP, SMOKE_APP_ID, SMOKE_TOPIC, SMOKE_DATADIR, SMOKE_OUT, SMOKE_PARTITIONS.
The agent counts events per ``ticket_id`` in a RocksDB (rocksdict) table and writes the table
contents as JSON to SMOKE_OUT after every event, so the test can see what the table holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust

PARTITIONS = int(os.environ.get("SMOKE_PARTITIONS", "1"))
OUT = Path(os.environ["SMOKE_OUT"])

app = faust.App(
    os.environ["SMOKE_APP_ID"],
    broker=f"kafka://{os.environ['SMOKE_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["SMOKE_DATADIR"],
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    table_standby_replicas=0,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)

events = app.topic(
    os.environ["SMOKE_TOPIC"], key_serializer="raw", value_serializer="json", partitions=PARTITIONS
)
counts = app.Table("counts", default=int, partitions=PARTITIONS, options={"driver": "rocksdict"})


@app.agent(events)
async def count(stream: Any) -> None:
    # Messages are keyed by ticket_id, so each ticket's count lives in its message's partition.
    async for event in stream:
        counts[event["ticket_id"]] += 1
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(counts.items())))
        tmp.replace(OUT)


if __name__ == "__main__":
    app.main()
