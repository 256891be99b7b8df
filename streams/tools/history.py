"""Ticket-event history as JSON Lines (plain or gzip): the replay and backtest input format.

One event per line in the canonical form of :func:`streams.sla.events.event_to_dict`.
Reading never stops at a bad line: it yields a :class:`LineError` (file, line number, field,
reason) and carries on, so a caller can report every problem of a file in one pass.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from streams.sla.events import (
    EventError,
    TicketEvent,
    event_from_dict,
    event_to_dict,
    json_type,
)
from streams.tools.partitioner import ticket_partition

__all__ = [
    "LineError", "count_lines", "is_gzip", "load_json", "open_history", "read_history",
    "shard_of", "write_history",
]  # fmt: skip

_GZIP_MAGIC: Final = b"\x1f\x8b"
OWNERS_KEPT: Final = 1 << 18  # tickets whose shard a sharded read remembers

_loads: Callable[[bytes], Any]
_dumps: Callable[[Any], bytes]
try:  # orjson is optional (faust-streaming[fast] brings it); same results, a few times faster
    import orjson  # type: ignore[import-not-found, unused-ignore]

    _loads = orjson.loads
    _dumps = orjson.dumps
    JSON_BACKEND = "orjson"
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def _dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()

    JSON_BACKEND = "json"

load_json: Final = _loads  # for other readers of JSON Lines: bytes or str in, as json.loads


@dataclass(frozen=True, slots=True)
class LineError:
    """A line of a history file that is not a valid event.

    ``field`` is the offending field's dotted path, or ``None`` when the line is not a JSON
    object at all (then ``reason`` starts with ``invalid JSON``).
    """

    path: str
    line: int  # 1-based
    field: str | None
    reason: str

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.path}:{self.line}: {self.reason}"
        return f"{self.path}:{self.line}: field {self.field!r}: {self.reason}"


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes (the extension is not consulted)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_history(path: str | Path) -> IO[bytes] | gzip.GzipFile:
    """Open a history file for binary reading, decompressing if it is gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # the GzipFile owns (and closes) the underlying file
    return open(path, "rb")  # noqa: SIM115 - returned to the caller


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):  # orjson.JSONDecodeError is a subclass
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid JSON: not UTF-8 at byte {exc.start + 1}"
    return f"invalid JSON: {exc}"


def read_history(
    path: str | Path,
    numbered: bool = False,
    shard: tuple[int, int] | None = None,
    partitions: int = 0,
) -> Iterator[Any]:
    """Events of a JSON Lines history (gzip detected by magic bytes), in file order:
    TicketEvent or LineError items, or with `numbered` (line, item) pairs.

    Blank lines are skipped; each bad line yields a :class:`LineError` instead of an event.
    The file is opened on the first ``next()``, so a missing file raises there. With
    `shard` (index, count), only the lines of the tickets `shard_of` puts in that shard are
    decoded (a line that is no JSON object goes to shard 0): `escalator backtest --jobs`;
    with `partitions`, by the tickets' partitions (`shard_of`).
    """
    if numbered:
        return _read_history(path, shard, partitions)
    return (item for _, item in _read_history(path, shard, partitions))


def shard_of(ticket_id: object, count: int, partitions: int = 0) -> int:
    """The shard of a ticket: the same in every process (Python's hash() is salted). With
    `partitions` (`backtest --arrival-order`), its ticket-events partition's, modulo `count`:
    a partition's clock spans its tickets, so each partition stays in one process."""
    key = ticket_id if isinstance(ticket_id, str) else repr(ticket_id)
    if partitions:
        return ticket_partition(key, partitions) % count
    return zlib.crc32(key.encode()) % count


def _read_history(
    path: str | Path, shard: tuple[int, int] | None = None, partitions: int = 0
) -> Iterator[tuple[int, TicketEvent | LineError]]:
    name = str(path)
    loads = _loads
    index, count = shard or (0, 1)
    owners: dict[str, int] = {}  # by partition: murmur2 in Python, once a ticket
    with open_history(path) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                data = loads(raw)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                if not raw.strip() or index != 0:
                    continue
                yield lineno, LineError(name, lineno, None, _json_error(exc))
                continue
            if count > 1:
                mine = False
                if type(data) is dict:
                    ticket = data.get("ticket_id")
                    if partitions and isinstance(ticket, str):
                        owner = owners.get(ticket)
                        if owner is None:
                            if len(owners) >= OWNERS_KEPT:
                                owners.clear()
                            owner = owners[ticket] = shard_of(ticket, count, partitions)
                    else:
                        owner = shard_of(ticket, count, partitions)
                    mine = owner == index
                if not mine and (type(data) is dict or index != 0):
                    continue
            if type(data) is not dict:
                yield (
                    lineno,
                    LineError(name, lineno, None, f"expected a JSON object, got {json_type(data)}"),
                )
                continue
            try:
                yield lineno, event_from_dict(data)  # global, not a local alias: compiled
            except EventError as exc:
                yield lineno, LineError(name, lineno, exc.field, exc.reason)


def write_history(path: str | Path, events: Iterable[TicketEvent]) -> int:
    """Write events as JSON Lines (gzip when the path ends in ``.gz``); returns the count.

    Gzip output is reproducible: no file name or modification time in the header.
    """
    count = 0
    dumps = _dumps
    to_dict = event_to_dict
    with open(path, "wb") as raw:
        out: IO[bytes] | gzip.GzipFile = raw
        if str(path).endswith(".gz"):
            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
        try:
            batch: list[bytes] = []
            for event in events:
                batch.append(dumps(to_dict(event)))
                count += 1
                if len(batch) >= 4096:
                    batch.append(b"")
                    out.write(b"\n".join(batch))
                    batch.clear()
            if batch:
                batch.append(b"")
                out.write(b"\n".join(batch))
        finally:
            if out is not raw:
                out.close()
    return count


def count_lines(path: str | Path) -> int:
    """Number of non-blank-terminated lines (newline count, plus a final unterminated line);
    cheap enough for sizing a progress bar. Blank and bad lines are counted too."""
    count = 0
    last = b"\n"
    with open_history(path) as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        count += 1
    return count
