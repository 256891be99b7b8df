"""The event-time driver's due queue, and the backtest's pause of the garbage collector."""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.history import LineError
from streams.backtest import DueQueue, backtest_events
from streams.sla.events import TicketEvent
from streams.sla.policy import load_policy

MINUTE = 60_000
T0 = 1_790_000_000_000

# Pushes relative to the current `now` (before it too: a late event's due work), and steps of
# `now` forward after which everything due is taken out.
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(-3 * MINUTE, 5 * MINUTE) | st.sampled_from([0, 1, MINUTE, -1]),
            st.sampled_from(["T1", "T2", "T3"]),
        ),
        st.tuples(st.just("take"), st.integers(0, 3 * MINUTE) | st.just(0), st.just("")),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_due_queue_takes_out_what_is_due_in_the_order_of_a_heap(
    ops: list[tuple[str, int, str]],
) -> None:
    queue = DueQueue()
    model: list[tuple[int, str]] = []
    now = T0
    for op, amount, ticket in ops:
        if op == "push":
            queue.push(now + amount, ticket)
            heapq.heappush(model, (now + amount, ticket))
            continue
        now += amount
        taken = []
        while (entry := queue.pop(now)) is not None:
            taken.append(entry)
        expected = []
        while model and model[0][0] <= now:
            expected.append(heapq.heappop(model))
        assert taken == expected
        assert all(queue.due_from <= at for at, _ in model)  # a lower bound: nothing missed
    rest = []
    while (entry := queue.pop(now + 10**9)) is not None:
        rest.append(entry)
    assert rest == sorted(model)


def test_due_queue_orders_one_instant_by_ticket_and_keeps_what_is_not_due() -> None:
    queue = DueQueue()
    for ticket in ("T3", "T1", "T2"):
        queue.push(T0 + 5, ticket)
    queue.push(T0 + 6, "T0")
    assert queue.pop(T0 + 4) is None
    assert [queue.pop(T0 + 5) for _ in range(4)] == [(T0 + 5, "T1"), (T0 + 5, "T2"),
                                                      (T0 + 5, "T3"), None]  # fmt: skip
    assert queue.pop(T0 + 6) == (T0 + 6, "T0")


def _events(enabled: list[bool]) -> Iterator[TicketEvent | LineError]:
    enabled.append(gc.isenabled())
    yield from ()


def test_backtest_pauses_the_collector_and_restores_it() -> None:
    assert gc.isenabled()
    during: list[bool] = []
    backtest_events([load_policy()], _events(during))
    assert during == [False]
    assert gc.isenabled()


def test_backtest_leaves_a_disabled_collector_disabled_and_restores_it_on_errors() -> None:
    def failing() -> Iterator[TicketEvent | LineError]:
        raise RuntimeError("bad input")
        yield  # pragma: no cover

    gc.disable()
    try:
        backtest_events([load_policy()], _events([]))
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError):
        backtest_events([load_policy()], failing())
    assert gc.isenabled()
