"""A ticket's SLA clocks: the engine's layer that starts, pauses, resumes and ends them, and
retargets them when the ticket moves to another SLA policy."""

from __future__ import annotations

from typing import Final

from streams.sla.actions import Action, new_outcome
from streams.sla.compiled_policy import CompiledSla, business_time
from streams.sla.events import DONE_STATUSES, Status, TicketEvent
from streams.sla.matching import Matching
from streams.sla.policy import METRICS, Policy
from streams.sla.state import Clock, TicketState

_OPEN: Final = Status.OPEN

# Due work at the same instant runs in this order: clocks (by metric), the matrix climb,
# then timed triggers in file order. _due() returns the rank with the instant.
_RANK: Final = {metric: rank for rank, metric in enumerate(METRICS)}
_CLIMB: Final = len(METRICS)
_FUNCTIONAL_CLIMB: Final = _CLIMB + 1
_TIMED: Final = _CLIMB + 2
_Ends = tuple[tuple[str, bool], ...]  # clocks to end, in order, and whether that meets them


def _held(sla: CompiledSla, clock: Clock) -> bool:
    """Whether a `pause` condition holds the clock; a hold the policy no longer has (an older
    policy's, or another SLA policy's) ends here."""
    if clock.held and clock.metric not in sla.holds:
        clock.held = False
    return clock.held


class Clocks(Matching):
    """What runs a ticket's clocks: start, pause, resume, end, and their conditions."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        # Set for the duration of one apply/advance call (see streams.sla.engine).
        self._quiet_before = -1
        self._quiet_event = False
        self._conditional = any(sla.conditions for sla in self._slas.values())

    def _schedule(self, sla: CompiledSla, clock: Clock) -> None:
        """Recompute when this clock next crosses a threshold."""
        clock.next_at = None
        since = clock.running_since
        target = clock.target
        if clock.ended_at is not None or since is None or target is None:
            return
        elapsed = clock.elapsed
        last = clock.last_fraction
        crossed: float | None = None  # the furthest threshold already behind us
        before: float | None = None  # the one before it
        steps = sla.steps.get(target)
        for fraction, need in sla.thresholds_of(target) if steps is None else steps:
            if fraction <= last:
                continue
            if need <= elapsed:
                before, crossed = crossed, fraction
            elif crossed is None:
                tl = sla.timeline
                clock.next_at = (
                    since + need - elapsed if tl is None else tl.add(since, need - elapsed)
                )
                return
            else:
                break
        if crossed is not None:
            # Thresholds already behind us (a tighter target after a priority change, a late
            # CREATED): only the furthest one fires; earlier warnings would be stale noise.
            if before is not None:
                clock.last_fraction = before
            clock.next_at = since

    def _start_clock(self, state: TicketState, metric: str, round_: int, at: int) -> None:
        sla = self._sla(state)
        previous = state.clocks.get(metric)
        # a `pause` condition outlasts a round
        held = previous is not None and previous.held and metric in sla.holds
        running = None if held or state.status in sla.pause_of[metric] else at
        clock = Clock(metric, round_, at, 0, running, sla.targets[metric][state.priority])
        clock.held = held
        state.clocks[metric] = clock
        self._schedule(sla, clock)

    def _end_clocks(self, state: TicketState, ends: _Ends, at: int, actions: list[Action]) -> None:
        clocks = state.clocks
        for metric, met in ends:
            clock = clocks.get(metric)
            if clock is not None and clock.ended_at is None:
                self._end_clock(state, clock, at, met, actions)

    def _end_clock(
        self, state: TicketState, clock: Clock, at: int, met: bool, actions: list[Action]
    ) -> None:
        since = clock.running_since
        if since is not None and at > since:
            clock.elapsed += business_time(self._sla(state).timeline, since, at)
        clock.running_since = None
        ended = clock.ended_at = at if at > clock.started_at else clock.started_at
        clock.met = met
        clock.next_at = None
        # A breach that fired stands, even if a late event dates the clock's end before it:
        # outcomes and escalations agree.
        breached = clock.breached_at is not None
        outcome = new_outcome(
            state.ticket_id, state.policy, clock.metric, state.cycle, clock.round,
            clock.started_at, ended, met, breached, clock.elapsed, clock.target,
        )  # fmt: skip
        actions.append(outcome)

    def _pause_all(self, state: TicketState, at: int) -> None:
        tl = self._sla(state).timeline
        for clock in state.clocks.values():
            since = clock.running_since
            if clock.ended_at is None and since is not None:
                if at > since:
                    clock.elapsed += business_time(tl, since, at)
                clock.running_since = None
                clock.next_at = None

    def _repause(self, state: TicketState, sla: CompiledSla, at: int) -> None:
        """Each running clock stands still or runs as its metric does in the new status."""
        status = state.status
        for clock in state.clocks.values():
            if clock.ended_at is not None:
                continue
            since = clock.running_since
            if status in sla.pause_of[clock.metric]:
                if since is not None:
                    if at > since:
                        clock.elapsed += business_time(sla.timeline, since, at)
                    clock.running_since = None
                    clock.next_at = None
            elif since is None and not _held(sla, clock):
                clock.running_since = at
                self._schedule(sla, clock)

    def _agent_update(self, state: TicketState, t: int, at: int, actions: list[Action]) -> None:
        """An agent reply ends the update clocks' round (met unless breached) and starts the
        next: the first reply starts round 0."""
        for metric in self._sla(state).updates:
            clock = state.clocks.get(metric)
            round_ = 0
            if clock is not None:
                round_ = clock.round + 1
                if clock.ended_at is None:
                    self._end_clock(state, clock, t, True, actions)
            self._start_clock(state, metric, round_, at)

    def _resume_all(self, state: TicketState, at: int) -> None:
        sla = self._sla(state)
        for clock in state.clocks.values():
            if clock.ended_at is None and clock.running_since is None and not _held(sla, clock):
                clock.running_since = at
                self._schedule(sla, clock)

    def _rematch(
        self, state: TicketState, at: int, group: str | None = None, regrouped: bool = False
    ) -> None:
        """Re-select the SLA policy and retarget unfinished clocks after an attribute change
        (`regrouped`: the ticket was in `group` before it, whose calendar the clocks ran on)."""
        old = self._sla(state, group, regrouped)
        new = self._match(state)
        if self._teams and state.group is not None:
            new = new.by_group.get(state.group, new)
        for clock in state.clocks.values():
            since = clock.running_since
            if clock.ended_at is None and since is not None and at > since:
                clock.elapsed += business_time(old.timeline, since, at)
                clock.running_since = at
        state.policy = new.name
        for clock in state.clocks.values():
            if clock.ended_at is not None:
                continue
            clock.target = new.targets[clock.metric][state.priority]
            if state.status in new.pause_of[clock.metric]:
                clock.running_since = None
            elif (
                clock.running_since is None
                and (old is not new or clock.held)
                and not _held(new, clock)
            ):
                clock.running_since = at
            self._schedule(new, clock)

    def _clock_conditions(
        self,
        state: TicketState,
        event: TicketEvent,
        at: int,
        reopened: bool,
        actions: list[Action],
    ) -> None:
        """The SLA policy's per-metric `start`, `stop`, `cancel`, `reset`, `pause` and `resume`
        conditions, on this event."""
        sla = self._sla(state)
        for metric, start, stop, cancel, reset, pause, resume in sla.conditions:
            clock = state.clocks.get(metric)
            if clock is None:
                if (
                    start is not None
                    and state.status not in DONE_STATUSES
                    and self._event_conditions_hold(state, event, start, reopened)
                ):
                    self._start_clock(state, metric, 0, at)
                continue
            if clock.ended_at is not None:
                continue
            if stop is not None and self._event_conditions_hold(state, event, stop, reopened):
                self._end_clock(state, clock, at, True, actions)  # done: met, unless breached
            elif cancel is not None and self._event_conditions_hold(state, event, cancel, reopened):
                # out of scope: stopped with no outcome, neither met nor missed
                since = clock.running_since
                if since is not None and at > since:
                    clock.elapsed += business_time(sla.timeline, since, at)
                clock.running_since = None
                clock.ended_at = at if at > clock.started_at else clock.started_at
                clock.next_at = None
            elif reset is not None and self._event_conditions_hold(state, event, reset, reopened):
                held = _held(sla, clock)
                running = None if held or state.status in sla.pause_of[metric] else at
                fresh = Clock(metric, clock.round, at, 0, running, clock.target)
                fresh.resets = clock.resets + 1
                fresh.held = held
                state.clocks[metric] = clock = fresh
                self._schedule(sla, fresh)
            if clock.ended_at is not None or pause is None or resume is None:
                continue
            if not clock.held:
                if self._event_conditions_hold(state, event, pause, reopened):
                    # banks the business time used so far, as a pause status does
                    clock.held = True
                    since = clock.running_since
                    if since is not None:
                        if at > since:
                            clock.elapsed += business_time(sla.timeline, since, at)
                        clock.running_since = None
                        clock.next_at = None
            elif self._event_conditions_hold(state, event, resume, reopened):
                clock.held = False
                if state.status not in sla.pause_of[metric]:
                    clock.running_since = at
                    self._schedule(sla, clock)

    def _remove(self, state: TicketState, at: int) -> None:
        """A deleted or spam ticket: every clock stops, with no outcome (it was never work),
        and nothing more is due; the drivers drop its state after the closed retention."""
        for clock in state.clocks.values():
            if clock.ended_at is None:
                clock.ended_at = at if at > clock.started_at else clock.started_at
                clock.running_since = None
                clock.next_at = None
        state.status = Status.CLOSED
        state.awaiting_since = None
        state.escalated_at = None
        state.f_since = None

    def _created(self, state: TicketState, t: int) -> None:
        if state.created_at is None:
            self._late_created(state, t)
        else:
            state.created_at = min(state.created_at, t)

    def _late_created(self, state: TicketState, t: int) -> None:
        """CREATED arrived after other events: clocks count from creation, not first sight."""
        state.created_at = t
        sla = self._sla(state)
        for metric in ("first_response", "resolution", *sla.per_cycle):
            clock = state.clocks.get(metric)
            if clock is None or clock.ended_at is not None or clock.round != 0:
                continue
            if t >= clock.started_at:
                continue
            clock.elapsed += business_time(sla.timeline, t, clock.started_at)
            clock.started_at = t
            self._schedule(sla, clock)

    def _reopen(self, state: TicketState, at: int) -> None:
        state.reopens += 1
        state.cycle += 1
        state.fired = frozenset()
        state.level = 1
        state.awaiting_since = None
        state.escalated_at = None
        state.f_chain = None
        state.f_step = 0
        state.f_since = None
        state.climb_id = None
        state.f_id = None
        state.repeat = 0
        state.closed = False
        state.status = _OPEN
        state.status_since = at
        state.status_seq += 1
        self._start_clock(state, "resolution", state.cycle, at)
        for metric in self._sla(state).per_cycle:
            self._start_clock(state, metric, state.cycle, at)
        previous = state.clocks.get("next_response")
        self._start_clock(state, "next_response", 0 if previous is None else previous.round + 1, at)
