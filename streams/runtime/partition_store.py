"""One partition's ticket states as the worker keeps them: a dict or RocksDB, with the open
transaction's writes and the latest writes in memory in front (compiled with mypyc with the
processor: every event reads and writes here)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Final

_ABSENT: Final = object()


class PartitionStore:
    """One partition's ticket states (the processor's StateStore). With `log`, its writes are
    queued (`pending`) for an at-least-once loop to send to the changelog with the message
    that caused them; an exactly-once loop opens it without, and sends the last value of each
    key the open transaction wrote (`txn`) as the transaction commits.

    The writes of the open transaction stay in `txn` until it commits (`commit()`): an
    aborted one takes them back (`rollback()`), so the loop can redo its records from the
    committed offsets without a restart and a restore.

    With `front` (a disk store), the latest writes stay in memory, in two generations of up
    to `front` keys, and reach the disk only when they age out: a busy ticket's next event
    reads and writes a dict, while RocksDB holds the tickets that went quiet. Nothing is lost
    by keeping them in memory: the store is never reopened, the changelog is the durable copy.
    """

    __slots__ = ("data", "log", "pending", "front", "young", "old", "txn")

    def __init__(
        self, data: MutableMapping[bytes, bytes], front: int = 0, log: bool = True
    ) -> None:
        self.data = data
        self.log = log
        self.pending: list[tuple[bytes, bytes | None]] = []  # with `log` only
        self.front = front
        self.young: dict[bytes, bytes | None] = {}  # None: deleted
        self.old: dict[bytes, bytes | None] = {}
        self.txn: dict[bytes, bytes | None] = {}  # written, not committed yet

    def get(self, key: bytes) -> bytes | None:
        value = self.txn.get(key, _ABSENT)
        if value is not _ABSENT:
            return value  # type: ignore[return-value]
        if self.front:
            value = self.young.get(key, _ABSENT)
            if value is _ABSENT:
                value = self.old.get(key, _ABSENT)
                if value is _ABSENT:
                    return self.data.get(key)
            return value  # type: ignore[return-value]
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if self.log:
            self.pending.append((key, value))
        self.txn[key] = value

    def delete(self, key: bytes) -> None:
        if self.log:
            self.pending.append((key, None))
        self.txn[key] = None

    def commit(self) -> None:
        """The transaction that carried the writes committed: they become the store's."""
        txn = self.txn
        if not txn:
            return
        self.txn = {}
        if not self.front:
            store = self._store
            for key, value in txn.items():
                store(key, value)
            return
        write = self._write
        for key, value in txn.items():
            write(key, value)

    def rollback(self) -> dict[bytes, bytes | None]:
        """The transaction aborted: its writes are forgotten. Returns what each key was
        written (None: deleted), for the processor to take back what it derived."""
        undone, self.txn = self.txn, {}
        self.pending.clear()
        return undone

    def _write(self, key: bytes, value: bytes | None) -> None:
        young = self.young
        young[key] = value
        if len(young) >= self.front:
            # The old generation goes to disk, except what the young one overrides.
            for old_key, old_value in self.old.items():
                if old_key not in young:
                    self._store(old_key, old_value)
            self.old = young
            self.young = {}

    def _store(self, key: bytes, value: bytes | None) -> None:
        data = self.data
        if value is not None:
            data[key] = value
        elif key in data:
            del data[key]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (key, value), streamed: a partition may hold more tickets than memory.
        Writes during the iteration do not disturb it (a dict's keys are listed first, a
        RocksDB iterator reads a snapshot, the front and the open transaction are copied: at
        most 2 x `front` keys and a commit interval's writes)."""
        data = self.data
        front = dict(self.old)
        front.update(self.young)
        front.update(self.txn)
        if not self.front:
            for key in list(data):
                if key not in front:
                    value = data.get(key)
                    if value is not None:
                        yield key, value
        else:
            for key, value in data.items():
                if key not in front:
                    yield key, value
        for key, latest in front.items():
            if latest is not None:
                yield key, latest

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply a changelog record (a restore: nothing to send)."""
        self.txn.pop(key, None)
        self.young.pop(key, None)
        self.old.pop(key, None)
        self._store(key, value)

    def flush_front(self) -> None:
        """Write the front to the data (a checkpoint covers only what is on disk). The open
        transaction's writes are not the store's: a checkpoint is taken after a commit."""
        for generation in (self.old, self.young):
            for key, value in generation.items():
                self._store(key, value)
        self.old, self.young = {}, {}
