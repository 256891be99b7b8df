"""streams.runtime.partition_store: one partition's states, its open transaction and its
in-memory front (the worker's stores, opened over dicts and RocksDB: test_worker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.runtime.partition_store import PartitionStore


def test_items_is_a_snapshot() -> None:
    part = PartitionStore({})
    part.put(b"a", b"1")
    part.put(b"b", b"2")
    for key, _ in part.items():
        part.delete(key)  # no "dict changed size during iteration"
    assert list(part.items()) == []


@pytest.mark.parametrize("disk", [False, True])
def test_a_front_keeps_the_latest_writes_in_memory_until_they_age_out(
    tmp_path: Path, disk: bool
) -> None:
    data: Any = {}
    if disk:
        from rocksdict import Options, Rdict

        data = Rdict(str(tmp_path / "db"), Options(raw_mode=True))
    data[b"z"] = b"on disk"
    part = PartitionStore(data, front=2)

    def put(key: bytes, value: bytes) -> None:  # each in a transaction that commits
        part.put(key, value)
        part.commit()

    def delete(key: bytes) -> None:
        part.delete(key)
        part.commit()

    delete(b"z")
    assert part.get(b"z") is None and data[b"z"] == b"on disk"  # the deletion hides it
    assert list(part.items()) == []
    put(b"a", b"1")  # the young generation is full: it becomes the old one
    assert part.get(b"a") == b"1" and b"a" not in data  # still in memory
    put(b"z", b"back")
    put(b"b", b"2")  # full again: of the old ones, only a=1 is not overridden
    assert data[b"a"] == b"1" and data[b"z"] == b"on disk" and b"b" not in data
    assert part.get(b"a") == b"1" and part.get(b"z") == b"back"
    put(b"a", b"1'")
    delete(b"b")  # full again: z=back reaches the disk
    assert data[b"z"] == b"back" and data[b"a"] == b"1"
    assert part.get(b"a") == b"1'" and part.get(b"b") is None
    put(b"c", b"3")
    put(b"d", b"4")  # full again: a=1' and the deletion of b reach the disk
    assert data[b"a"] == b"1'" and b"b" not in data
    put(b"e", b"5")
    assert sorted(k for k, _ in part.items()) == [b"a", b"c", b"d", b"e", b"z"]
    part.load(b"e", None)  # a restore overrides what memory holds
    part.load(b"f", b"6")
    assert part.get(b"e") is None and part.get(b"f") == b"6"
    assert sorted(k for k, _ in part.items()) == [b"a", b"c", b"d", b"f", b"z"]
    assert [k for k, _ in part.pending] == [b"z", b"a", b"z", b"b", b"a", b"b", b"c", b"d", b"e"]
    if disk:
        data.close()


def test_without_log_the_writes_are_not_queued() -> None:
    """An exactly-once loop sends a transaction's last value per key (`txn`) as it commits,
    so nothing queues each write (a tuple per write, some 1,200 a transaction)."""
    logged, unlogged = PartitionStore({}), PartitionStore({}, log=False)
    for part in (logged, unlogged):
        part.put(b"a", b"1")
        part.put(b"a", b"2")
        part.delete(b"b")
        assert part.txn == {b"a": b"2", b"b": None} and part.get(b"a") == b"2"
    assert logged.pending == [(b"a", b"1"), (b"a", b"2"), (b"b", None)]
    assert unlogged.pending == []
    unlogged.commit()
    assert unlogged.data == {b"a": b"2"} and unlogged.txn == {}


def test_an_aborted_transactions_writes_leave_the_store() -> None:
    part = PartitionStore({b"a": b"1"})
    part.put(b"a", b"2")
    part.delete(b"b")
    part.put(b"c", b"3")
    assert part.get(b"a") == b"2" and part.get(b"c") == b"3"  # read back before the commit
    assert sorted(part.items()) == [(b"a", b"2"), (b"c", b"3")]
    assert part.rollback() == {b"a": b"2", b"b": None, b"c": b"3"}
    assert part.pending == [] and part.get(b"a") == b"1" and part.get(b"c") is None
    part.put(b"c", b"3'")
    part.commit()
    assert part.data == {b"a": b"1", b"c": b"3'"} and part.rollback() == {}
