"""streams.transactions: Faust's per-partition transactions committed concurrently."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from streams.transactions import (
    commit_barrier,
    commit_transactions_concurrently,
    end_open_transactions,
    highwaters_from_broker,
    install,
)


class FakeTxnProducer:
    """Records the calls of one partition's transactional producer."""

    def __init__(self, name: str, log: list[str], gate: asyncio.Event | None = None,
                 opens: asyncio.Event | None = None, fail: bool = False) -> None:  # fmt: skip
        self.name, self.log, self.gate, self.opens, self.fail = name, log, gate, opens, fail

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        self.log.append(f"{self.name}:offsets:{group_id}:{sorted(offsets.values())}")

    async def commit_transaction(self) -> None:
        if self.opens is not None:
            self.opens.set()
        if self.gate is not None:
            await self.gate.wait()  # waits for the other partition's commit to start
        if self.fail:
            raise RuntimeError(f"{self.name} commit failed")
        self.log.append(f"{self.name}:commit")

    async def begin_transaction(self) -> None:
        self.log.append(f"{self.name}:begin")


class FakeFaustProducer:
    def __init__(self, producers: dict[str, FakeTxnProducer], app: Any = None) -> None:
        self._transaction_producers = producers
        self._trn_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.app = app


async def test_partitions_commit_at_the_same_time() -> None:
    # a's commit only finishes once b's commit has started: one after the other would hang.
    log: list[str] = []
    a_started, b_started = asyncio.Event(), asyncio.Event()
    faust_producer = FakeFaustProducer(
        {
            "app-0": FakeTxnProducer("a", log, gate=b_started, opens=a_started),
            "app-1": FakeTxnProducer("b", log, gate=a_started, opens=b_started),
        }
    )
    offsets = {"app-0": {"tp0": 10}, "app-1": {"tp1": 20}}
    await asyncio.wait_for(commit_transactions_concurrently(faust_producer, offsets, "g"), 5)
    assert log.index("a:offsets:g:[10]") < log.index("a:commit") < log.index("a:begin")
    assert log.index("b:offsets:g:[20]") < log.index("b:commit") < log.index("b:begin")


async def test_no_new_transaction_when_not_asked() -> None:
    log: list[str] = []
    faust_producer = FakeFaustProducer({"app-0": FakeTxnProducer("a", log)})
    await commit_transactions_concurrently(faust_producer, {"app-0": {"tp": 1}}, "g", False)
    assert log == ["a:offsets:g:[1]", "a:commit"]


async def test_a_failure_is_raised_after_the_others_committed() -> None:
    log: list[str] = []
    faust_producer = FakeFaustProducer(
        {"app-0": FakeTxnProducer("a", log, fail=True), "app-1": FakeTxnProducer("b", log)}
    )
    with pytest.raises(RuntimeError, match="a commit failed"):
        await commit_transactions_concurrently(
            faust_producer, {"app-0": {"tp0": 1}, "app-1": {"tp1": 2}}, "g"
        )
    assert "b:commit" in log and "b:begin" in log and "a:commit" not in log


async def test_unknown_transaction_is_skipped() -> None:
    log: list[str] = []
    faust_producer = FakeFaustProducer({"app-0": FakeTxnProducer("a", log)})
    await commit_transactions_concurrently(
        faust_producer, {"app-0": {"tp0": 1}, "gone-5": {"tp5": 3}}, "g"
    )
    assert log == ["a:offsets:g:[1]", "a:commit", "a:begin"]


async def test_commit_waits_until_the_message_being_sent_is_complete() -> None:
    """Records of one input message never straddle two transactions."""

    class App:
        pass

    app = App()
    log: list[str] = []
    faust_producer = FakeFaustProducer({"app-0": FakeTxnProducer("a", log)}, app=app)
    barrier = commit_barrier(app)
    assert commit_barrier(app) is barrier  # one per app
    async with barrier:
        log.append("send escalation")
        commit = asyncio.ensure_future(
            commit_transactions_concurrently(faust_producer, {"app-0": {"tp": 7}}, "g")
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert not commit.done() and "a:commit" not in log
        log.append("send changelog")
    await asyncio.wait_for(commit, 5)
    assert log == ["send escalation", "send changelog", "a:offsets:g:[7]", "a:commit", "a:begin"]


async def test_recovery_highwaters_come_from_the_broker_not_the_fetch_cache() -> None:
    """A partition not fetched since its assignment has no cached stable offset."""

    class Consumer:
        def last_stable_offset(self, tp: str) -> None:
            return None  # what aiokafka answers before the first fetch of tp

        async def end_offsets(self, partitions: list[str]) -> dict[str, int]:
            return {tp: 100 + i for i, tp in enumerate(partitions)}

    class Thread:
        def _ensure_consumer(self) -> Consumer:
            return Consumer()

    assert await highwaters_from_broker(Thread(), ["cl-0", "cl-1"]) == {"cl-0": 100, "cl-1": 101}


async def test_revoke_commits_every_transaction_still_open() -> None:
    class Txn:
        def __init__(self, open_: bool) -> None:
            self.open = open_

        def is_in_transaction(self) -> bool:
            return self.open

    class Producer:
        def __init__(self, name: str, open_: bool, log: list[str]) -> None:
            self.name, self._txn_manager, self.log = name, Txn(open_), log

        async def commit_transaction(self) -> None:
            self.log.append(f"{self.name}:commit")
            self._txn_manager.open = False

    class Manager:
        def __init__(self, log: list[str]) -> None:
            self.app = type("App", (), {})()
            self.log = log
            self.producer = FakeFaustProducer(
                {
                    "g-1-0": Producer("p0", True, log),
                    "g-1-1": Producer("p1", False, log),
                    "g-1-2": Producer("p2", True, log),
                }  # fmt: skip
            )

        async def flush(self) -> None:
            self.log.append("flush")

    log: list[str] = []
    manager = Manager(log)
    await end_open_transactions(manager, set())
    assert log == ["flush", "p0:commit", "p2:commit"]


def test_install_replaces_fausts_sequential_commit_and_cached_highwaters() -> None:
    from faust.transport.consumer import TransactionManager
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

    install()
    assert Producer.commit_transactions is commit_transactions_concurrently
    assert AIOKafkaConsumerThread._highwaters is highwaters_from_broker
    assert TransactionManager.on_partitions_revoked is end_open_transactions
