"""An event-time worker's partition clock, carried in the metadata of the offsets it commits.

Why: the clock (the partition's watermark: the latest event time it read) decides what an
event-time worker does with a late event: more than the backfill horizon behind the clock,
it updates state and pages nobody. A worker that restarted, or took the partition over,
would otherwise start from no clock and page on the same late event. The offsets of a
partition and its clock commit together (in the transaction, exactly once), so the next
owner goes on from the clock of the offset it resumes from, as Kafka Streams does with its
partition time (KAFKA-7994).

Format: the offset's metadata string, ``{"v": 1, "wm": <epoch ms>}``. Anything else (no
metadata, another tool's, an offset reset by hand) means no clock: the worker starts from
none, as before this format existed.

confluent-kafka writes metadata as a C string, NUL included, and reads it back as one: the
loop's commits therefore store a trailing NUL, and metadata stored without one is read past
its end (seen: `{"v":1,"wm":...}ive-st0`). So other writers (the Faust runtime's aiokafka)
store the same bytes (`STORED_SUFFIX`), and the decoder reads only up to the closing brace.
"""

from __future__ import annotations

import orjson

VERSION = 1
STORED_SUFFIX = "\x00"  # what confluent-kafka adds to the metadata it commits


def encode_partition_time(watermark: int) -> str:
    return orjson.dumps({"v": VERSION, "wm": watermark}).decode()


def decode_partition_time(metadata: str | None) -> int | None:
    """The clock in an offset's metadata, or None when the metadata holds none of ours."""
    if not metadata or not metadata.startswith("{"):
        return None
    end = metadata.find("}")
    if end < 0:
        return None
    try:
        data = orjson.loads(metadata[: end + 1])
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    version, wm = data.get("v"), data.get("wm")
    if type(version) is not int or version != VERSION or type(wm) is not int or wm < 0:
        return None
    return wm
