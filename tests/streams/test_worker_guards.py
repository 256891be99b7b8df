"""The worker's guards without Kafka: OffsetGuard, the state-dir wipe, TableStore's changelog."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.processor import Out
from streams.settings import Settings
from streams.worker import (
    RESTART_EXIT_CODE,
    OffsetGuard,
    TableStore,
    prepare_state_dir,
    send_raw,
)

TOPIC = "ticket-events"


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os._exit raises Exited; logging.shutdown (called before it) is recorded, not run."""
    calls: list[str] = []

    def fake_exit(code: int) -> None:
        calls.append("exit")
        raise Exited(code)

    monkeypatch.setattr("streams.worker.os._exit", fake_exit)
    monkeypatch.setattr("streams.worker.logging.shutdown", lambda: calls.append("shutdown"))
    return calls


def guard(committed: dict[TP, int] | None = None) -> OffsetGuard:
    consumer = SimpleNamespace(_committed_offset=dict(committed or {}))
    return OffsetGuard(SimpleNamespace(consumer=consumer), TOPIC)


# --------------------------------------------------------------------------- OffsetGuard


def test_in_order_offsets_pass(exits: list[str]) -> None:
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0])
    for offset in range(10, 20):
        g.check(0, offset)
    assert g.expected == {0: 20}
    assert exits == []


def test_a_jump_past_the_expected_offset_restarts_the_process(
    exits: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0])
    g.check(0, 10)
    with caplog.at_level(logging.ERROR, "escalator.worker"), pytest.raises(Exited) as info:
        g.check(0, 14)
    assert info.value.code == RESTART_EXIT_CODE == 75
    assert exits == ["shutdown", "exit"]  # logs flushed before the process ends
    assert "offsets 11..13 were skipped" in caplog.text
    assert g.expected == {0: 11}  # nothing past the gap was accepted


def test_after_repeated_restarts_the_guard_goes_on_loudly(
    exits: list[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCALATOR_WORKER_RESTARTS", "3")
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0])
    with caplog.at_level(logging.CRITICAL, "escalator.worker"):
        g.check(0, 14)
    assert exits == []
    assert "offsets 10..13 skipped again after 3 restarts" in caplog.text
    assert g.expected == {0: 15}


def test_the_first_offset_after_reset_must_be_the_committed_one(exits: list[str]) -> None:
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0])
    with pytest.raises(Exited) as info:
        g.check(0, 11)
    assert info.value.code == RESTART_EXIT_CODE


def test_redelivered_older_offsets_pass_without_lowering_the_expectation(
    exits: list[str],
) -> None:
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0])
    g.check(0, 10)
    g.check(0, 11)
    g.check(0, 5)  # seen again after a seek back: not a skip
    assert g.expected == {0: 12}
    g.check(0, 12)
    assert exits == []


def test_reset_uses_committed_offsets_of_this_topic_only(exits: list[str]) -> None:
    g = guard(
        {
            TP(TOPIC, 0): 10,
            TP(TOPIC, 1): 0,
            TP(TOPIC, 2): -1001,  # OFFSET_INVALID: nothing committed
            TP("escalator-clock", 3): 99,
            TP(TOPIC, 4): 7,  # not assigned to us
        }
    )
    g.expected = {5: 123}
    g.reset([0, 1, 2, 3])
    assert g.expected == {0: 10, 1: 0}


def test_partitions_without_a_committed_offset_accept_the_first_offset(
    exits: list[str],
) -> None:
    g = guard({TP(TOPIC, 0): 10})
    g.reset([0, 1])
    g.check(1, 500)
    g.check(1, 501)
    assert g.expected[1] == 502
    with pytest.raises(Exited) as info:
        g.check(1, 503)
    assert info.value.code == RESTART_EXIT_CODE


def test_consumer_without_committed_offsets(exits: list[str]) -> None:
    g = OffsetGuard(SimpleNamespace(consumer=object()), TOPIC)
    g.reset([0, 1])
    assert g.expected == {}
    g.check(0, 42)
    assert g.expected == {0: 43}


# --------------------------------------------------------------------------- state dir


def settings_for(path: Path, guarantee: str = "exactly_once") -> Settings:
    return Settings(data_dir=path, processing_guarantee=guarantee)


def with_state(path: Path) -> Path:
    (path / "tables" / "tickets-0.db").mkdir(parents=True)
    (path / "tables" / "tickets-0.db" / "CURRENT").write_text("x")
    return path


def test_crash_under_exactly_once_wipes_local_state(tmp_path: Path) -> None:
    data = with_state(tmp_path / "worker")
    assert prepare_state_dir(settings_for(data)) is True
    assert data.is_dir() and list(data.iterdir()) == []


def test_exactly_once_always_restores_from_the_changelog(tmp_path: Path) -> None:
    """A clean stop is no proof: Faust's final commit can fail on shutdown."""
    settings = settings_for(with_state(tmp_path / "worker"))
    assert prepare_state_dir(settings) is True
    with_state(settings.data_dir)
    assert prepare_state_dir(settings) is True
    assert list(settings.data_dir.iterdir()) == []


def test_at_least_once_never_wipes(tmp_path: Path) -> None:
    data = with_state(tmp_path / "worker")
    assert prepare_state_dir(settings_for(data, "at_least_once")) is False
    assert (data / "tables" / "tickets-0.db" / "CURRENT").is_file()


@pytest.mark.parametrize("content", ["missing", "empty"])
def test_nothing_to_wipe(tmp_path: Path, content: str) -> None:
    data = tmp_path / "a" / "worker"
    if content != "missing":
        data.mkdir(parents=True)
    assert prepare_state_dir(settings_for(data)) is False
    assert data.is_dir() and list(data.iterdir()) == []


# --------------------------------------------------------------------------- TableStore


class FakeChangelog:
    def get_topic_name(self) -> str:
        return "app-tickets-changelog"


class FakeProducer:
    """Faust's driver producer as send_raw uses it: send returns a delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.started = 0

    async def maybe_start(self) -> None:
        self.started += 1

    async def send(self, *args: Any, transactional_id: str | None) -> asyncio.Future[Any]:
        self.sent.append((*args, transactional_id))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def fake_app(exactly_once: bool) -> Any:
    groups = {"ticket-events": 1, "escalator-clock": 1}
    return SimpleNamespace(
        producer=FakeProducer(),
        in_transaction=exactly_once,
        conf=SimpleNamespace(id="escalator"),
        assignor=SimpleNamespace(group_for_topic=groups.__getitem__),
    )


class FakeTable:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = FakeChangelog()
        self.delivered: list[Any] = []

    def _on_changelog_sent(self, future: Any) -> None:
        self.delivered.append(future.result())


def test_table_store_reads_and_writes_the_local_table() -> None:
    table = FakeTable()
    store = TableStore(table)
    assert store.get(b"a") is None
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.delete(b"a")
    store.delete(b"never-there")
    assert table.data == {b"b": b"2"}
    assert store.get(b"b") == b"2"
    assert list(store.items()) == [(b"b", b"2")]
    assert store.pending == [(b"a", b"1"), (b"b", b"2"), (b"a", None), (b"never-there", None)]
    assert table.delivered == []  # nothing sent before flush


def test_items_is_a_snapshot() -> None:
    store = TableStore(FakeTable())
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    for key, _ in store.items():
        store.delete(key)  # no "dict changed size during iteration"
    assert list(store.items()) == []


def test_flush_hands_out_pending_records_once() -> None:
    table = FakeTable()
    store = TableStore(table)
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.delete(b"a")

    topic, sent = "app-tickets-changelog", table._on_changelog_sent
    assert store.flush() == [
        Out(topic, b"a", b"1", sent), Out(topic, b"b", b"2", sent), Out(topic, b"a", None, sent)
    ]  # fmt: skip
    assert store.pending == [] and store.flush() == []


async def test_outputs_and_changelog_go_in_the_transaction_of_their_input() -> None:
    # Faust's own send finds no transaction for a topic the app does not consume and sends
    # outside every transaction; send_raw names the input partition's transaction itself.
    app = fake_app(exactly_once=True)
    table = FakeTable()
    store = TableStore(table)
    store.put(b"T1", b"state")
    outs = [Out("escalations", b"T1", b"esc"), *store.flush()]

    await send_raw(app, "ticket-events", 4, outs)

    assert app.producer.sent == [
        ("escalations", b"T1", b"esc", 4, None, None, "escalator-1-4"),
        ("app-tickets-changelog", b"T1", b"state", 4, None, None, "escalator-1-4"),
    ]
    assert app.producer.started == 0  # Faust starts the transactional producers itself
    for offset, future in enumerate(app.producer.futures):
        future.set_result(("delivered", offset))
    await asyncio.sleep(0)
    assert table.delivered == [("delivered", 1)]  # only the changelog record reports back


async def test_without_exactly_once_send_raw_uses_the_plain_producer() -> None:
    app = fake_app(exactly_once=False)
    await send_raw(app, "escalator-clock", 2, [Out("queue-stats", b"", b"hb")])
    assert app.producer.sent == [("queue-stats", b"", b"hb", 2, None, None, None)]
    assert app.producer.started == 1


def test_app_uses_the_configured_session_and_commit_timing(tmp_path: Path) -> None:
    from streams.settings import load_settings
    from streams.sla.policy import load_policy
    from streams.worker import build_app

    settings = load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_SESSION_TIMEOUT_MS": "9000",
         "ESCALATOR_COMMIT_INTERVAL_MS": "250", "ESCALATOR_STORE": "memory://"}
    )  # fmt: skip
    app = build_app(settings, load_policy(), event_time=True)
    assert app.conf.broker_session_timeout == 9.0
    assert app.conf.broker_heartbeat_interval == 3.0
    assert app.conf.broker_commit_interval == 0.25
    assert app.conf.processing_guarantee.value == "exactly_once"
