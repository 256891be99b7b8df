"""A partition store's checkpoint: the changelog offset up to which its RocksDB holds every
committed record, so a restarted worker reads only the changelog's tail (issue #22).

As Kafka Streams does under exactly-once, the file exists only while the store is closed
cleanly: it is written after the last transaction touching the store committed and the store
was flushed, and it is deleted when the store is opened, before any write. A worker that dies
while the store is open therefore leaves no checkpoint (its store may hold writes of a
transaction that never committed), and the next owner restores in full.

A checkpoint found is still only trusted when `distrust()` finds nothing wrong; any doubt
costs a full restore, never a wrong state.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = ".checkpoint"
VERSION = 1
# Compaction removes a tombstone delete.retention.ms (24 h by default) after it was written: a
# tail read from a checkpoint older than that could miss a deletion. Kept well below it.
MAX_AGE_S = 6 * 3600.0


@dataclass(frozen=True)
class Checkpoint:
    """What a cleanly closed store holds."""

    changelog: str  # the changelog topic
    partition: int
    offset: int  # the store holds every committed changelog record below this offset
    input_offset: int  # the committed ticket-events offset its state corresponds to
    owner: str  # the transactional id (or instance) that committed that state
    written_at: float  # unix seconds
    version: int = VERSION


def write(directory: Path, checkpoint: Checkpoint) -> None:
    """Atomically: a crash leaves the old file, or none, never half of one."""
    path = directory / FILE
    tmp = directory / f"{FILE}.tmp"
    with tmp.open("w") as out:
        json.dump(asdict(checkpoint), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _sync_dir(directory)


def take(directory: Path) -> Checkpoint | None:
    """Read the checkpoint and delete it (the store is about to change). None when there is
    none or it cannot be read: the store is then not to be trusted."""
    path = directory / FILE
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError):
        fields = None
    path.unlink(missing_ok=True)
    (directory / f"{FILE}.tmp").unlink(missing_ok=True)
    if directory.exists():
        _sync_dir(directory)
    try:
        checkpoint = Checkpoint(**fields) if isinstance(fields, dict) else None
    except TypeError:
        return None
    if checkpoint is None or checkpoint.version != VERSION:
        return None
    return checkpoint


def distrust(
    checkpoint: Checkpoint | None,
    *,
    changelog: str,
    partition: int,
    owner: str,
    committed: int,
    low: int,
    high: int,
    now: float | None = None,
) -> str | None:
    """Why the store must be restored in full, or None when reading the changelog from
    `checkpoint.offset` gives the committed state. `committed` is the group's committed
    input offset; `low`/`high` the changelog partition's start and (read_committed) end."""
    if checkpoint is None:
        return "no checkpoint (first start, or the last stop was not clean)"
    if (checkpoint.changelog, checkpoint.partition) != (changelog, partition):
        return f"checkpoint of {checkpoint.changelog}[{checkpoint.partition}]"
    if checkpoint.owner != owner:
        return f"checkpoint written by {checkpoint.owner!r}, another producer"
    if checkpoint.input_offset != committed:
        # Issue #18's rule: someone committed the partition since this store was current.
        return (
            f"committed input offset {committed} is not the checkpoint's {checkpoint.input_offset}"
        )
    if checkpoint.offset < low:
        return f"changelog starts at {low}, after the checkpoint's {checkpoint.offset}"
    if checkpoint.offset > high:
        return f"changelog ends at {high}, before the checkpoint's {checkpoint.offset}"
    age = (time.time() if now is None else now) - checkpoint.written_at
    if not 0 <= age <= MAX_AGE_S:
        return f"checkpoint {age / 3600:.1f} h old (compaction may have dropped tombstones)"
    return None


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
