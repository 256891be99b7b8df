"""A store's checkpoint: written on a clean close, taken on open, and trusted only when
nothing says the store may differ from the changelog's committed prefix."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streams.runtime import checkpoint
from streams.runtime.checkpoint import Checkpoint, distrust
from streams.runtime.settings import load_settings
from streams.runtime.worker import LocalState

NOW = 1_800_000_000.0
CP = Checkpoint("app-tickets-changelog", 2, 500, 90, "app-worker-a", NOW - 60)
WHERE = dict(changelog="app-tickets-changelog", partition=2, owner="app-worker-a", committed=90,
             low=0, high=520, now=NOW)  # fmt: skip


def test_a_sound_checkpoint_is_trusted() -> None:
    assert distrust(CP, **WHERE) is None  # type: ignore[arg-type]
    assert distrust(CP, **{**WHERE, "high": 500, "low": 500}) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"committed": 95}, "committed input offset 95 is not the checkpoint's 90"),
        ({"low": 501}, "changelog starts at 501"),  # deleted records (retention, DeleteRecords)
        ({"high": 499}, "changelog ends at 499"),  # the topic was recreated
        ({"owner": "app-worker-b"}, "another producer"),
        ({"partition": 1}, "checkpoint of app-tickets-changelog[2]"),
        ({"changelog": "other-tickets-changelog"}, "checkpoint of app-tickets-changelog[2]"),
        ({"now": NOW + checkpoint.MAX_AGE_S}, "h old"),
        ({"now": NOW - 3600}, "h old"),  # written in the future: a clock moved
    ],
)
def test_any_doubt_restores_in_full(change: dict[str, object], why: str) -> None:
    reason = distrust(CP, **{**WHERE, **change})  # type: ignore[arg-type]
    assert reason is not None and why in reason


def test_no_checkpoint_restores_in_full() -> None:
    assert "no checkpoint" in (distrust(None, **WHERE) or "")  # type: ignore[arg-type]


def test_take_reads_and_deletes(tmp_path: Path) -> None:
    checkpoint.write(tmp_path, CP)
    assert checkpoint.take(tmp_path) == CP
    assert not (tmp_path / checkpoint.FILE).exists()  # a crash from now on leaves none
    assert checkpoint.take(tmp_path) is None
    (tmp_path / checkpoint.FILE).write_text('{"changelog": "x"')  # torn by hand
    assert checkpoint.take(tmp_path) is None
    (tmp_path / checkpoint.FILE).write_text('{"version": 99}')
    assert checkpoint.take(tmp_path) is None


def _state(tmp_path: Path) -> LocalState:
    return LocalState(load_settings({"ESCALATOR_DATA_DIR": str(tmp_path)}))


def test_a_cleanly_closed_store_is_resumed_with_its_front(tmp_path: Path) -> None:
    state = _state(tmp_path)
    store = state.open(2, resume=True)
    assert 2 not in state.checkpoints
    store.load(b"T-old", b"on disk")
    store.put(b"T-new", b"in the front")  # not yet on disk: the close writes it
    store.commit()
    store.put(b"T-open", b"aborted")  # a transaction still open: never the store's
    kept = replace(CP, written_at=time.time())
    state.close(2, kept)
    state = _state(tmp_path)  # a new process
    store = state.open(2, resume=True)
    assert state.checkpoints[2] == kept
    assert dict(store.items()) == {b"T-old": b"on disk", b"T-new": b"in the front"}
    # open again without a clean close in between (a crash): nothing is kept
    state.stores.clear()
    state.dbs.pop(2).close()
    state = _state(tmp_path)
    store = state.open(2, resume=True)
    assert 2 not in state.checkpoints and list(store.items()) == []
    state.close_all()


def test_a_store_without_a_checkpoint_is_removed_at_start(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.open(0).put(b"T-1", b"x")
    state.dbs[0].close()  # the process dies with the store open
    _state(tmp_path)
    assert not (tmp_path / "tickets" / "0").exists()


INDEX = {"lanes": [([(5, b"T-1"), (9, b"T-2")], None)], "orphans": [], "fingerprint": [1]}


def test_a_due_index_is_taken_with_the_checkpoint_it_was_saved_with(tmp_path: Path) -> None:
    checkpoint.write_index(tmp_path, CP, INDEX)
    assert checkpoint.take_index(tmp_path, CP) == (INDEX, None)
    assert not (tmp_path / checkpoint.INDEX_FILE).exists()  # the store is about to change
    assert checkpoint.take_index(tmp_path, CP) == (None, "no due index saved")
    checkpoint.write_index(tmp_path, CP, INDEX)
    later = replace(CP, offset=CP.offset + 1)  # an index of an earlier close
    assert "another checkpoint" in (checkpoint.take_index(tmp_path, later)[1] or "")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda raw: raw[:-3], "checksum"),  # torn
        (lambda raw: raw[:-8] + bytes([raw[-8] ^ 1]) + raw[-7:], "checksum"),  # a flipped bit
        (lambda raw: raw.replace(b'"1/py', b'"0/py'), "version"),  # an older release's
        (lambda raw: b"garbage", "not a due index"),
        (lambda raw: raw[:30], "unusable"),
    ],
)
def test_a_damaged_due_index_is_not_used(tmp_path: Path, damage: Any, why: str) -> None:
    checkpoint.write_index(tmp_path, CP, INDEX)
    path = tmp_path / checkpoint.INDEX_FILE
    path.write_bytes(damage(path.read_bytes()))
    index, reason = checkpoint.take_index(tmp_path, CP)
    assert index is None and why in (reason or "")
    assert not path.exists()


def test_a_store_closed_with_its_index_keeps_it_until_the_next_open(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.open(1, resume=True).put(b"T-1", b"state")
    kept = replace(CP, partition=1, written_at=time.time())
    state.close(1, kept, INDEX)
    state = _state(tmp_path)  # a new process
    state.open(1, resume=True)
    assert state.checkpoints[1] == kept and state.indexes[1] == (INDEX, None)
    state.close(1)  # not kept: no checkpoint, no index
    state = _state(tmp_path)
    state.open(1, resume=True)
    assert 1 not in state.checkpoints and 1 not in state.indexes
    state.close_all()
