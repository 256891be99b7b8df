"""Driving the pure engine over one ticket's history, for tests."""

from collections.abc import Sequence

from streams.sla.actions import Action
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent
from streams.sla.state import TicketState


def run_ticket(
    engine: Engine, events: Sequence[TicketEvent], until: int | None = None
) -> tuple[TicketState | None, list[Action]]:
    """Apply one ticket's events in order, then advance to `until`."""
    state: TicketState | None = None
    actions: list[Action] = []
    for event in events:
        state, out = engine.apply(state, event)
        actions.extend(out)
    if state is not None and until is not None:
        state, out = engine.advance(state, until)
        actions.extend(out)
    return state, actions
