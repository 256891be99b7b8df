"""Fixtures for the SLA engine tests.

``tests/`` is not an importable package (no ``__init__.py``; plain ``pytest`` does not put the
repository root on ``sys.path``), so shared helpers are handed out as fixtures rather than
imported from a module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, SlaOutcome
from streams.sla.engine import Engine
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import Policy, load_policy, parse_policy
from streams.sla.state import TicketState


class Ticket:
    """Drives one ticket through an engine and records every action it produced."""

    def __init__(self, engine: Engine, ticket_id: str = "T1") -> None:
        self.engine = engine
        self.ticket_id = ticket_id
        self.state: TicketState | None = None
        self.actions: list[Action] = []
        self._ids = itertools.count(1)

    def event(self, type_: EventType | str, at: int, **fields: Any) -> TicketEvent:
        event_id = fields.pop("event_id", None) or f"{self.ticket_id}-e{next(self._ids)}"
        return TicketEvent(
            event_id=event_id,
            ticket_id=self.ticket_id,
            type=EventType(type_),
            occurred_at=at,
            **fields,
        )

    def send(self, type_: EventType | str, at: int, **fields: Any) -> list[Action]:
        """Build an event and apply it; returns the actions of this call only."""
        return self.apply(self.event(type_, at, **fields))

    def apply(self, event: TicketEvent) -> list[Action]:
        self.state, out = self.engine.apply(self.state, event)
        self.actions.extend(out)
        return out

    def advance(self, now: int, event_time: bool = True) -> list[Action]:
        """Advance to `now`: as a perfect clock would (each due instant in turn), or as a
        wall clock that only now reached `now` (event_time=False)."""
        assert self.state is not None
        self.state, out = self.engine.advance(self.state, now, event_time=event_time)
        self.actions.extend(out)
        return out

    @property
    def escalations(self) -> list[Escalation]:
        return [a for a in self.actions if isinstance(a, Escalation)]

    @property
    def bumps(self) -> list[PriorityBump]:
        return [a for a in self.actions if isinstance(a, PriorityBump)]

    @property
    def reminders(self) -> list[Reminder]:
        return [a for a in self.actions if isinstance(a, Reminder)]

    @property
    def outcomes(self) -> list[SlaOutcome]:
        return [a for a in self.actions if isinstance(a, SlaOutcome)]

    def rules(self) -> list[str]:
        return [e.rule for e in self.escalations]

    def by_rule(self, rule: str) -> list[Escalation]:
        return [e for e in self.escalations if e.rule == rule]

    def one(self, rule: str) -> Escalation:
        found = self.by_rule(rule)
        assert len(found) == 1, (rule, self.rules())
        return found[0]


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="session")
def default_engine(default_policy: Policy) -> Engine:
    return Engine(default_policy)


@pytest.fixture(scope="session")
def make_engine() -> Callable[[str], Engine]:
    """``make_engine(yaml_text)``: an engine for a small policy written in the test."""

    def make(text: str) -> Engine:
        return Engine(parse_policy(text, "test.yaml"))

    return make


@pytest.fixture(scope="session")
def ticket() -> Callable[..., Ticket]:
    """``ticket(engine, "T1")``: a driver for one ticket."""

    def make(engine: Engine, ticket_id: str = "T1") -> Ticket:
        return Ticket(engine, ticket_id)

    return make
