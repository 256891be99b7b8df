"""Due work: what a ticket has due next (clock thresholds, the matrix's and a chain's climbs,
timed triggers) and firing it in order."""

from __future__ import annotations

from streams.sla.actions import Action
from streams.sla.clocks import _CLIMB, _FUNCTIONAL_CLIMB, _RANK, _TIMED
from streams.sla.events import DONE_STATUSES
from streams.sla.policy import METRICS
from streams.sla.state import TicketState
from streams.sla.triggers import Triggers


class DueWork(Triggers):
    """Finds a ticket's earliest due work and fires due work in order."""

    def _advance(
        self, state: TicketState, until: int, floor: int, actions: list[Action]
    ) -> int | None:
        """Fire due work in order up to `until`, each at its due instant or at `floor` if
        that is later (the instant the engine learnt of it); returns the next due instant."""
        while True:
            due = self._due(state)
            if due is None:
                return None
            at, rank = due
            if at > until:
                return at
            now = at if at > floor else floor
            if rank < _CLIMB:
                self._fire_threshold(state, state.clocks[METRICS[rank]], at, now, actions)
            elif rank == _CLIMB:
                self._climb(state, at, now, actions)
            elif rank == _FUNCTIONAL_CLIMB:
                self._functional_climb(state, at, now, actions)
            else:
                self._fire_timed(state, self._timed[rank - _TIMED], at, now, actions)

    def _next_due(self, state: TicketState) -> int | None:
        due = self._due(state)
        return None if due is None else due[0]

    def _due(self, state: TicketState) -> tuple[int, int] | None:
        """The earliest due work as (instant, rank); the rank breaks ties (see _RANK)."""
        best = -1  # none yet (instants are never negative): an int, unlike an Optional, is
        # never boxed where compiled
        rank = 0
        for clock in state.clocks.values():
            at = clock.next_at
            if at is None:
                continue
            if best < 0 or at < best:
                best = at
                rank = _RANK[clock.metric]
            elif at == best and _RANK[clock.metric] < rank:
                rank = _RANK[clock.metric]
        status = state.status
        since = state.awaiting_since
        # a solved or paused ticket does not climb (looked up only for a ticket with a timer)
        climbing = (since is not None or state.f_since is not None) and (
            status not in DONE_STATUSES and status not in self._slas[state.policy].pause
        )
        if since is not None and climbing:
            climb = self._climbs.get(state.level)
            if climb is not None:
                allowed, tl = climb
                allowed += state.climb_paused
                at = since + allowed if tl is None else tl.add(since, allowed)
                if best < 0 or at < best:
                    best = at
                    rank = _CLIMB
        since = state.f_since
        if since is not None and climbing:
            chain = self._chains.get(state.f_chain or "")
            if chain is not None and state.f_step + 1 < len(chain):
                _, wait, tl = chain[state.f_step]
                if wait is not None:
                    wait += state.f_paused
                    at = since + wait if tl is None else tl.add(since, wait)
                    if best < 0 or at < best:
                        best = at
                        rank = _FUNCTIONAL_CLIMB
        if status not in DONE_STATUSES:
            since = state.escalated_at
            if since is not None:
                for timed in self._after_escalation:
                    if timed.key not in state.fired:
                        tl = timed.timeline
                        at = since + timed.wait if tl is None else tl.add(since, timed.wait)
                        if best < 0 or at < best or (at == best and timed.rank < rank):
                            best = at
                            rank = timed.rank
            for timed in self._in_status[status]:
                if timed.fired_key(state) not in state.fired:
                    tl = timed.timeline
                    since = state.status_since
                    at = since + timed.wait if tl is None else tl.add(since, timed.wait)
                    if best < 0 or at < best or (at == best and timed.rank < rank):
                        best = at
                        rank = timed.rank
        return None if best < 0 else (best, rank)
