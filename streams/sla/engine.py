"""The SLA engine: (state, event) -> (state, actions) and (state, now) -> (state, actions).

Deterministic and clock-free: the live worker feeds wall-clock ticks, the
backtest feeds event time, and both get the same escalation ids. The engine
takes ownership of the state it is given and returns it updated (copying a
ticket's state for every event would halve throughput); callers keep the
returned object and drop the one they passed in.

Semantics in brief:
- first_response and resolution clocks start at CREATED (or at the first event
  seen for an unknown ticket); next_response starts at the first unanswered
  customer reply after the first response and ends at the next agent reply.
- Pause statuses stop every clock; leaving them resumes it.
- Each threshold (warn_at fractions, then 1.0 = breach) fires once per clock round.
- A breach escalates one level up the matrix; an escalation nobody answers
  (no agent reply) within its level's allowed time climbs to the next level.
- Everything fires at most once per (ticket, rule, level, cycle); a reopen starts a new cycle.
- Due work is handled at its due instant: `due_at` is that instant, and `fired_at` is the
  engine's clock when it fired. Driven in event time (no `now`), an event first steps the
  ticket through each instant due before it, so `fired_at == due_at`; driven by a wall
  clock, `fired_at` is that clock, never beyond it.
- The level rises at most once per instant through deadlines (breaches and climbs), and a
  level's climb timer starts when its escalation actually fired, so a late discovery never
  pages several levels at once. Climbs pause with the policy's pause statuses.
- Work due before `quiet_before` (the driver's clock less the policy's backfill horizon),
  and everything an event older than it triggers, updates state and outcomes but pages
  nobody: it comes out as a `Silenced` record instead of an escalation, bump or reminder.

The backtest runs every event of a month through here, so the policy is compiled once
at construction (per-SLA thresholds, targets and calendars, the matrix's climb times,
which triggers can hold for which event) and the per-event path does no matching or
lookups it can avoid.
"""

from __future__ import annotations

from typing import Final

from streams.sla.actions import Action
from streams.sla.clocks import _Ends
from streams.sla.due import DueWork
from streams.sla.events import (
    DONE_STATUSES,
    IMPLIED_STATUS,
    EventType,
    Priority,
    Status,
    TicketEvent,
)
from streams.sla.state import SEEN_WINDOW, TicketState

# Enum members as module constants: an attribute lookup on an enum class costs ~6x a global.
_CREATED: Final = EventType.CREATED
_TRANSFERRED: Final = EventType.TRANSFERRED
_CLOSED: Final = EventType.CLOSED
_AGENT_REPLIED: Final = EventType.AGENT_REPLIED
_CUSTOMER_REPLIED: Final = EventType.CUSTOMER_REPLIED
_CSAT_RECEIVED: Final = EventType.CSAT_RECEIVED
_ACKNOWLEDGED: Final = EventType.ESCALATION_ACKNOWLEDGED
_REMOVED: Final = ("deleted", "spam")  # attributes["removed"] of a CLOSED event: drop the ticket
_REPLIED_ENDS: Final[_Ends] = (("first_response", True), ("next_response", True))
_SOLVED_ENDS: Final[_Ends] = (
    ("resolution", True),
    ("first_response", False),
    ("next_response", False),
    ("requester_wait", True),
    ("agent_work", True),
    ("periodic_update", False),
    ("pausable_update", False),
)


class Engine(DueWork):
    """Applies one policy to ticket states."""

    def apply(
        self,
        state: TicketState | None,
        event: TicketEvent,
        now: int = -1,
        quiet_before: int = -1,
    ) -> tuple[TicketState, list[Action]]:
        """Apply one event; due work up to its occurred_at fires first.

        `now` is the driver's wall clock, or -1 in event time: then the event's own time is
        the clock, and due work before it fires at each due instant. Nothing fires beyond a
        given `now`. See the module docstring for `quiet_before`."""
        actions: list[Action] = []
        t = event.occurred_at
        limit = t if now < 0 or t < now else now
        self._quiet_before = quiet_before
        self._quiet_event = t < quiet_before
        if state is None:
            state = TicketState(
                ticket_id=event.ticket_id, first_seen_at=t, clock_at=t, status_since=t
            )
            self._start_tracking(state, event)
            state.seen.append(event.event_id)
            self._handle(state, event, actions, absorbed=True)
        elif event.event_id in state.seen:
            self._quiet_event = False
            return state, actions
        else:
            due = state.next_due
            if due is not None and due <= limit:
                self._advance(state, limit, state.clock_at if now < 0 else now, actions)
            seen = state.seen  # state.remember, inline: the hottest path
            seen.append(event.event_id)  # not in it: see above
            if len(seen) > SEEN_WINDOW:
                del seen[0]
            self._handle(state, event, actions, absorbed=False)
        if t > state.clock_at:
            state.clock_at = t
        earliest = self._due(state)
        if earliest is None:
            state.next_due = None
        elif earliest[0] > limit:
            state.next_due = earliest[0]
        else:  # the event itself made something due (a tighter target, a late CREATED)
            state.next_due = self._advance(state, limit, t if now < 0 else now, actions)
        self._quiet_event = False
        return state, actions

    def advance(
        self, state: TicketState, now: int, quiet_before: int = -1, event_time: bool = False
    ) -> tuple[TicketState, list[Action]]:
        """Fire everything due at or before `now`: as of `now` (a wall clock that has reached
        it), or with `event_time` at each due instant in turn, as a perfect clock would."""
        actions: list[Action] = []
        self._quiet_before = quiet_before
        due = state.next_due
        if due is not None and due <= now:
            due = self._advance(state, now, state.clock_at if event_time else now, actions)
        else:
            due = self._next_due(state)
        if now > state.clock_at:
            state.clock_at = now
        state.next_due = due
        return state, actions

    def _start_tracking(self, state: TicketState, event: TicketEvent) -> None:
        """An unknown ticket: track it from what its first event carries."""
        t = event.occurred_at
        self._absorb(state, event, first=True)
        state.policy = self._match(state).name
        status = IMPLIED_STATUS.get(event.type) or event.status
        if status is not None:
            state.status = status
        if event.type is _CREATED:
            state.created_at = t
        if state.status not in DONE_STATUSES:
            deferred = self._sla(state).deferred
            if "first_response" not in deferred:
                self._start_clock(state, "first_response", 0, t)
            if "resolution" not in deferred:
                self._start_clock(state, "resolution", 0, t)
            for metric in self._sla(state).per_cycle:
                if metric not in deferred:
                    self._start_clock(state, metric, 0, t)

    def _handle(
        self, state: TicketState, event: TicketEvent, actions: list[Action], absorbed: bool
    ) -> None:
        t = event.occurred_at
        at = t if t > state.clock_at else state.clock_at  # the past cannot be re-run
        kind = event.type
        group = state.group
        if not absorbed and self._absorb(state, event):
            if kind is _CREATED:
                self._created(state, t)
            self._rematch(state, at, group, True)
        elif kind is _CREATED:
            self._created(state, t)

        if kind is _CLOSED and event.attributes.get("removed") in _REMOVED:
            state.closed = True
            self._remove(state, at)
            return
        status = IMPLIED_STATUS.get(kind) or event.status
        if kind is _TRANSFERRED:
            state.transfers += 1
        reopened = False
        if status is not None:
            if (
                state.status in DONE_STATUSES
                and status not in DONE_STATUSES
                and t >= state.status_since
            ):
                # REOPENED, or any event that moves a solved ticket back to work
                reopened = True
                self._reopen(state, at)
            if status != state.status and t >= state.status_since:
                self._set_status(state, status, at, t, actions)
        if kind is _CLOSED:
            state.closed = True

        if kind is _AGENT_REPLIED:
            self._end_clocks(state, _REPLIED_ENDS, t, actions)
            if state.status not in DONE_STATUSES and self._sla(state).updates:
                self._agent_update(state, t, at, actions)
            if self._stop_on_reply:
                state.awaiting_since = None
                state.f_since = None
        elif kind is _ACKNOWLEDGED:
            if self._stop_on_ack:
                self._acknowledge(state, event.attributes.get("escalation_id"))
        elif kind is _CUSTOMER_REPLIED and state.status not in DONE_STATUSES:
            clocks = state.clocks
            first = clocks.get("first_response")
            waiting = clocks.get("next_response")
            if (first is None or first.ended_at is not None) and (
                waiting is None or waiting.ended_at is not None
            ):
                self._start_clock(
                    state, "next_response", 0 if waiting is None else waiting.round + 1, at
                )
        if self._conditional:
            self._clock_conditions(state, event, at, reopened, actions)
        if state.status not in DONE_STATUSES:
            triggers = (self._reopening_triggers if reopened else self._type_triggers)[kind]
        elif kind is _CSAT_RECEIVED:
            triggers = self._type_triggers[kind]  # still done, so this event did not reopen
        else:
            return
        if event.tags_added:
            triggers = self._with_tag_triggers(triggers, event.tags_added)
        for trigger in triggers:
            if self._event_conditions_hold(state, event, trigger.when, reopened):
                self._run_trigger(
                    state, trigger, f"trigger:{trigger.name}", at, at, event.event_id, actions
                )

    def _set_status(
        self, state: TicketState, status: Status, at: int, t: int, actions: list[Action]
    ) -> None:
        sla = self._sla(state)
        pause = sla.pause
        was_paused = state.status in pause
        paused_since = state.status_since
        state.status = status
        state.status_since = t
        state.status_seq += 1
        if status in DONE_STATUSES:
            self._end_clocks(state, _SOLVED_ENDS, at, actions)
            state.awaiting_since = None
            state.escalated_at = None
            state.f_since = None
            return
        paused = status in pause
        if sla.extra:  # metrics that pause in other statuses than the policy's
            self._repause(state, sla, at)
        elif paused and not was_paused:
            self._pause_all(state, at)
        elif was_paused and not paused:
            self._resume_all(state, at)
        if was_paused:
            self._count_climb_pause(state, paused_since, at)


__all__ = ["Engine", "Priority"]
