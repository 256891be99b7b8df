"""A partition store's checkpoint: the changelog offset up to which its RocksDB holds every
committed record, so a restarted worker reads only the changelog's tail.

As Kafka Streams does under exactly-once, the file exists only while the store is closed
cleanly: it is written after the last transaction touching the store committed and the store
was flushed, and it is deleted when the store is opened, before any write. A worker that dies
while the store is open therefore leaves no checkpoint (its store may hold writes of a
transaction that never committed), and the next owner restores in full.

A checkpoint found is still only trusted when `distrust()` finds nothing wrong; any doubt
costs a full restore, never a wrong state.

Beside it, the due index of the partition as it stood at that close (INDEX_FILE): a trusted
checkpoint then restores without reading the store at all. It is written before the
checkpoint, names the checkpoint it belongs to, carries a checksum, and is taken (deleted)
with it; missing, damaged, of another version or of another checkpoint, it is ignored and
the index is rebuilt from the store.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE = ".checkpoint"
VERSION = 1
INDEX_FILE = ".due-index"
INDEX_MAGIC = b"escalator due index\n"
# marshal's format may change between Python versions: a file of another one is not read.
INDEX_VERSION = f"1/py{sys.version_info[0]}.{sys.version_info[1]}/marshal{marshal.version}"
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


def write_index(directory: Path, checkpoint: Checkpoint, index: Any) -> None:
    """Save `index` (plain data: lists, tuples, dicts, bytes, str, int) for the checkpoint
    about to be written. Atomically, like the checkpoint; marshal, since a million entries
    must load in well under a second (JSON takes several)."""
    body = marshal.dumps(index)
    header = json.dumps({
        "version": INDEX_VERSION, "checkpoint": asdict(checkpoint), "bytes": len(body),
        "blake2b": hashlib.blake2b(body, digest_size=16).hexdigest(),
    }).encode()  # fmt: skip
    tmp = directory / f"{INDEX_FILE}.tmp"
    with tmp.open("wb") as out:
        out.write(INDEX_MAGIC + len(header).to_bytes(4, "big") + header + body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, directory / INDEX_FILE)


def take_index(directory: Path, checkpoint: Checkpoint | None) -> tuple[Any, str | None]:
    """Read the due index saved with `checkpoint` and delete the file: (index, None), or
    (None, why it cannot be used)."""
    path = directory / INDEX_FILE
    try:
        raw = path.read_bytes()
    except OSError:
        raw = None
    path.unlink(missing_ok=True)
    (directory / f"{INDEX_FILE}.tmp").unlink(missing_ok=True)
    if raw is None:
        return None, "no due index saved"
    if checkpoint is None:
        return None, "no checkpoint"
    try:
        if not raw.startswith(INDEX_MAGIC):
            raise ValueError("not a due index file")
        start = len(INDEX_MAGIC) + 4
        end = start + int.from_bytes(raw[len(INDEX_MAGIC) : start], "big")
        header = json.loads(raw[start:end])
        body = raw[end:]
        if header["version"] != INDEX_VERSION:
            raise ValueError(f"version {header['version']!r}, this one reads {INDEX_VERSION!r}")
        if header["checkpoint"] != asdict(checkpoint):
            raise ValueError("saved with another checkpoint")
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        if header["bytes"] != len(body) or header["blake2b"] != digest:
            raise ValueError("checksum mismatch (damaged)")
        return marshal.loads(body), None
    except (ValueError, KeyError, TypeError, EOFError) as exc:
        return None, f"due index file unusable: {exc}"


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
