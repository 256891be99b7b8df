"""Inert tickets kept as their row in a backtest: the same actions and states as objects."""

from __future__ import annotations

import json
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
from streams.sla.policy import load_policy
from streams.tools.backtest import SHELVE_AFTER, BacktestRun, EventTimeDriver
from streams.tools.generator import generate_history
from streams.tools.shelf import TicketShelf

HISTORY = generate_history(agents=4, days=3, seed=5)


def _drive(events: list[TicketEvent], shelve: bool, **kwargs: Any) -> tuple[Any, ...]:
    """Every call's actions, the final tick's, and each ticket's state at the end; with
    the number of events that came to a shelved ticket."""
    driver = EventTimeDriver(Engine(load_policy()), shelve=shelve, **kwargs)
    calls = []
    woken = 0
    for line, event in enumerate(events):
        woken += event.ticket_id in driver.states.shelved
        calls.append([a.to_dict() for a in driver.feed(event, line)])
    assert driver.watermark is not None
    calls.append([a.to_dict() for a in driver.advance(driver.watermark + 86_400_000)])
    states = {ticket_id: state.to_dict() for ticket_id, state in driver.states.items()}
    return calls, states, driver.duplicates, driver.duplicate_lines, woken, driver.states, driver


def test_a_history_gives_the_same_actions_and_states_with_tickets_shelved() -> None:
    shelved = _drive(HISTORY, shelve=True)
    kept = _drive(HISTORY, shelve=False)
    assert shelved[:4] == kept[:4]
    woken, shelf = shelved[4], shelved[5]
    assert woken > 20  # tickets came back from the shelf, and did what they would have
    assert len(shelf.shelved) > len(shelf.live) > 0
    assert kept[5].shelved == {}
    assert len(shelf) == len(kept[1])


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=False))
def test_late_and_repeated_events_do_the_same_to_shelved_tickets(rnd: Any) -> None:
    """In arrival order: events of shelved tickets arrive hours late, or twice."""
    events = list(HISTORY)
    for _ in range(40):
        i = rnd.randrange(len(events) - 1)
        j = min(len(events) - 1, i + rnd.randrange(1, 400))
        events.insert(j, events.pop(i))  # arrives late
    for _ in range(20):
        i = rnd.randrange(len(events))
        events.insert(min(len(events), i + rnd.randrange(1, 600)), events[i])  # redelivered
    shelved = _drive(events, shelve=True, arrival_order=True)
    kept = _drive(events, shelve=False, arrival_order=True)
    assert shelved[:4] == kept[:4]
    assert shelved[2] >= 20 and shelved[4] > 0


def _left_idle() -> tuple[list[TicketEvent], EventTimeDriver]:
    """A ticket's events, after which it has nothing due, and a driver fed only them."""
    by_ticket: dict[str, list[TicketEvent]] = {}
    for event in HISTORY:
        by_ticket.setdefault(event.ticket_id, []).append(event)
    for events in by_ticket.values():
        driver = EventTimeDriver(Engine(load_policy()))
        for event in events:
            driver.feed(event)
        state = driver.states.live[events[0].ticket_id]
        if len(events) > 2 and state.next_due is None:
            return events, driver
    raise AssertionError("no ticket of the history is left with nothing due")


def test_a_ticket_is_shelved_an_hour_after_its_last_touch_and_only_with_nothing_due() -> None:
    events, driver = _left_idle()
    ticket = events[0].ticket_id
    last = driver.states.live[ticket].clock_at
    driver.advance(last + SHELVE_AFTER - 1)
    assert ticket in driver.states.live
    driver.advance(last + SHELVE_AFTER)
    assert ticket in driver.states.shelved and ticket not in driver.states.live
    # a ticket with work due stays an object however long it waits
    busy = EventTimeDriver(Engine(load_policy()))
    busy.feed(events[0])
    due = busy.states.live[ticket].next_due
    assert due is not None and due > events[0].occurred_at + SHELVE_AFTER
    busy.advance(due - 1)
    assert ticket in busy.states.live and not busy.states.shelved


def test_the_shelf_reads_a_shelved_ticket_without_waking_it() -> None:
    driver = EventTimeDriver(Engine(load_policy()), shelve=False)
    for event in HISTORY[:400]:
        driver.feed(event)
    shelf = TicketShelf()
    shelf.live.update(driver.states.live)
    ticket_id = next(iter(shelf.live))
    state = shelf.live[ticket_id]
    shelf.shelve(ticket_id)
    row = shelf.shelved[ticket_id]
    assert sys.getsizeof(row) < len(row) + 64  # exact size: no spare buffer per ticket
    copy = shelf[ticket_id]
    assert copy is not state and copy.to_dict() == state.to_dict()
    assert ticket_id in shelf and ticket_id not in shelf.live
    assert set(shelf) == set(driver.states) and len(shelf) == len(driver.states)
    assert shelf.get("no such ticket") is None
    woken = shelf.wake(ticket_id)
    assert woken is not None and woken.to_dict() == state.to_dict()
    assert shelf.live[ticket_id] is woken and ticket_id not in shelf.shelved
    assert shelf.wake(ticket_id) is None  # live already: nothing to wake


def _report(shelve: bool) -> tuple[str, BacktestRun]:
    run = BacktestRun.start(load_policy(), board=True)
    run.driver.shelve = shelve
    for line, event in enumerate(HISTORY):
        run.feed(event, line)
    run.finish(None)
    return json.dumps(run.report.to_dict(), sort_keys=True) + run.report.format(), run


def test_the_report_counts_the_clocks_of_shelved_tickets_still_running_at_the_end() -> None:
    shelved, run = _report(shelve=True)
    kept, _ = _report(shelve=False)
    assert shelved == kept
    shelf = run.driver.states
    running = [state for state in shelf.with_running_clocks() if state.ticket_id in shelf.shelved]
    assert running and all(any(c.active for c in s.clocks.values()) for s in running)
    assert run.report.tickets == len(shelf) > len(running) + len(shelf.live)


def test_dropping_superseded_due_entries_changes_nothing() -> None:
    often = _drive(HISTORY, shelve=True, compact_after=1)
    never = _drive(HISTORY, shelve=True, compact_after=10**9)
    assert often[:5] == never[:5]
    assert often[6]._due.waiting < never[6]._due.waiting  # it did drop entries
