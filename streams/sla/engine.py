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
- Due work is handled at its due instant (not at `now`), so catching up after
  downtime yields the same escalations as running on time.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.sla.actions import (
    BREACH_REASON,
    Action,
    Escalation,
    Kind,
    PriorityBump,
    Reason,
    Reminder,
    SlaOutcome,
    action_id,
)
from streams.sla.calendar import BusinessCalendar
from streams.sla.events import PRIORITY_RANK, EventType, Priority, Status, TicketEvent
from streams.sla.policy import Escalate, Policy, SlaPolicy, Trigger, When
from streams.sla.state import Clock, TicketState

_PRIORITIES = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)
_DONE = (Status.SOLVED, Status.CLOSED)
_ORDER = {"first_response": 0, "next_response": 1, "resolution": 2}


class Engine:
    """Applies one policy to ticket states."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._by_name = {sla.name: sla for sla in policy.sla_policies}
        # Which event triggers can possibly hold for an event, so most events test none.
        self._tag_triggers: dict[str, list[Trigger]] = {}
        self._type_triggers: dict[EventType, list[Trigger]] = {t: [] for t in EventType}
        for trigger in policy.event_triggers:
            when = trigger.when
            if when.tags_added:
                for tag in when.tags_added:
                    self._tag_triggers.setdefault(tag, []).append(trigger)
                continue
            types = set(EventType) if when.event is None else set(when.event)
            if when.transfers_at_least is not None:
                types &= {EventType.TRANSFERRED}
            if when.csat_at_most is not None:
                types &= {EventType.CSAT_RECEIVED}
            for event_type in types:
                self._type_triggers[event_type].append(trigger)
        self._order = {id(t): i for i, t in enumerate(policy.event_triggers)}
        self._timed_by_name = {t.name: t for t in policy.timed_triggers}

    # ------------------------------------------------------------------ public

    def apply(
        self, state: TicketState | None, event: TicketEvent
    ) -> tuple[TicketState, list[Action]]:
        """Apply one event; due work up to its occurred_at fires first."""
        actions: list[Action] = []
        t = event.occurred_at
        fresh = state is None
        if state is None:
            state = TicketState(
                ticket_id=event.ticket_id, first_seen_at=t, clock_at=t, status_since=t
            )
            self._start_tracking(state, event)
        elif event.event_id in state.seen:
            return state, actions
        elif state.next_due is not None and state.next_due <= t:
            self._advance(state, t, actions)
        state.seen.add(event.event_id)
        self._handle(state, event, actions, absorbed=fresh)
        if t > state.clock_at:
            state.clock_at = t
        state.next_due = self._next_due(state)
        if state.next_due is not None and state.next_due <= t:
            # The event itself made something due (a tighter target, a late CREATED).
            self._advance(state, t, actions)
            state.next_due = self._next_due(state)
        return state, actions

    def advance(self, state: TicketState, now: int) -> tuple[TicketState, list[Action]]:
        """Fire everything due at or before `now`."""
        actions: list[Action] = []
        if state.next_due is not None and state.next_due <= now:
            self._advance(state, now, actions)
        if now > state.clock_at:
            state.clock_at = now
        state.next_due = self._next_due(state)
        return state, actions

    def next_due(self, state: TicketState) -> int | None:
        return state.next_due

    def sla_policy(self, state: TicketState) -> SlaPolicy:
        return self._by_name[state.policy]

    # ------------------------------------------------------------------ time

    def _advance(self, state: TicketState, now: int, actions: list[Action]) -> None:
        while True:
            due = self._earliest(state)
            if due is None or due[0] > now:
                return
            at, kind, ref = due
            if kind == "clock":
                self._fire_threshold(state, state.clocks[ref], at, now, actions)
            elif kind == "climb":
                self._climb(state, at, now, actions)
            else:
                self._fire_timed(state, self._timed(ref), at, now, actions)

    def _next_due(self, state: TicketState) -> int | None:
        """The earliest due instant; the same as _earliest()[0], without building tuples."""
        best: int | None = None
        for clock in state.clocks.values():
            at = clock.next_at
            if at is not None and (best is None or at < best):
                best = at
        if state.awaiting_since is not None:
            at = self._climb_due(state)
            if at is not None and (best is None or at < best):
                best = at
        if state.status not in _DONE:
            for trigger in self.policy.timed_triggers:
                at = self._timed_due(state, trigger)
                if at is not None and (best is None or at < best):
                    best = at
        return best

    def _earliest(self, state: TicketState) -> tuple[int, str, str] | None:
        best: tuple[int, int, str, str] | None = None
        for clock in state.clocks.values():
            if clock.next_at is not None:
                cand = (clock.next_at, _ORDER[clock.metric], "clock", clock.metric)
                if best is None or cand < best:
                    best = cand
        climb = self._climb_due(state)
        if climb is not None and (best is None or (climb, 5) < best[:2]):
            best = (climb, 5, "climb", "")
        for index, trigger in enumerate(self.policy.timed_triggers):
            at = self._timed_due(state, trigger)
            if at is not None and (best is None or (at, 6 + index) < best[:2]):
                best = (at, 6 + index, "timed", trigger.name)
        return None if best is None else (best[0], best[2], best[3])

    def _climb_due(self, state: TicketState) -> int | None:
        matrix = self.policy.matrix
        if state.awaiting_since is None or state.level >= matrix.top:
            return None
        level = matrix.level(state.level)
        if level.allowed is None:
            return None
        calendar = self.policy.calendar(level.calendar or matrix.calendar)
        return calendar.add(state.awaiting_since, level.allowed)

    def _timed(self, name: str) -> Trigger:
        return self._timed_by_name[name]

    def _timed_key(self, state: TicketState, trigger: Trigger) -> str:
        if trigger.when.status_for is not None:
            return f"trigger:{trigger.name}#{state.status_seq}"
        return f"trigger:{trigger.name}"

    def _timed_due(self, state: TicketState, trigger: Trigger) -> int | None:
        when = trigger.when
        if state.status in _DONE:
            return None
        if when.status_for is not None:
            start = state.status_since if state.status == when.status_for.status else None
            wait = when.status_for.at_least
        else:
            start = state.escalated_at
            wait = when.escalation_open_for or 0
        if start is None or self._timed_key(state, trigger) in state.fired:
            return None
        return self.policy.calendar(trigger.calendar).add(start, wait)

    # ------------------------------------------------------------------ clocks

    def _thresholds(self, state: TicketState) -> list[float]:
        return [*self.sla_policy(state).warn_at, 1.0]

    def _calendar_of(self, state: TicketState) -> BusinessCalendar:
        return self.policy.calendar(self.sla_policy(state).calendar)

    def _paused(self, state: TicketState) -> bool:
        return state.status in self.sla_policy(state).pause_statuses

    def _schedule(self, state: TicketState, clock: Clock) -> None:
        """Recompute when this clock next crosses a threshold."""
        clock.next_at = None
        if not clock.active or clock.running_since is None or clock.target is None:
            return
        ahead = [f for f in self._thresholds(state) if f > clock.last_fraction]
        crossed = [f for f in ahead if round(clock.target * f) <= clock.elapsed]
        if crossed:
            # Thresholds already behind us (a tighter target after a priority change, a late
            # CREATED): only the furthest one fires; earlier warnings would be stale noise.
            skipped = ahead[: ahead.index(crossed[-1])]
            if skipped:
                clock.last_fraction = skipped[-1]
            clock.next_at = clock.running_since
        elif ahead:
            need = round(clock.target * ahead[0]) - clock.elapsed
            clock.next_at = self._calendar_of(state).add(clock.running_since, need)

    def _start_clock(self, state: TicketState, metric: str, round_: int, at: int) -> None:
        sla = self.sla_policy(state)
        clock = Clock(
            metric=metric,
            round=round_,
            started_at=at,
            target=sla.targets.target(metric, state.priority),
            running_since=None if self._paused(state) else at,
        )
        state.clocks[metric] = clock
        self._schedule(state, clock)

    def _accrue(self, state: TicketState, clock: Clock, at: int) -> None:
        if clock.running_since is not None and at > clock.running_since:
            clock.elapsed += self._calendar_of(state).between(clock.running_since, at)
            clock.running_since = at

    def _end_clock(
        self, state: TicketState, metric: str, at: int, met: bool, actions: list[Action]
    ) -> None:
        clock = state.clocks.get(metric)
        if clock is None or not clock.active:
            return
        self._accrue(state, clock, at)
        clock.running_since = None
        clock.ended_at = max(at, clock.started_at)
        clock.met = met
        clock.next_at = None
        actions.append(
            SlaOutcome(
                ticket_id=state.ticket_id,
                policy=state.policy,
                metric=metric,
                cycle=state.cycle,
                round=clock.round,
                started_at=clock.started_at,
                ended_at=clock.ended_at,
                met=met,
                breached=clock.breached_at is not None and clock.breached_at <= clock.ended_at,
                business_elapsed=clock.elapsed,
                target=clock.target,
            )
        )

    def _pause_all(self, state: TicketState, at: int) -> None:
        for clock in state.clocks.values():
            if clock.active and clock.running_since is not None:
                self._accrue(state, clock, at)
                clock.running_since = None
                clock.next_at = None

    def _resume_all(self, state: TicketState, at: int) -> None:
        for clock in state.clocks.values():
            if clock.active and clock.running_since is None:
                clock.running_since = at
                self._schedule(state, clock)

    def _fire_threshold(
        self, state: TicketState, clock: Clock, at: int, now: int, actions: list[Action]
    ) -> None:
        fraction = next(f for f in self._thresholds(state) if f > clock.last_fraction)
        clock.last_fraction = fraction
        suffix = f"#{clock.round}" if clock.metric == "next_response" else ""
        if fraction < 1.0:
            rule = f"sla:{clock.metric}{suffix}:warn{round(fraction * 100)}"
            self._escalate(
                state, rule, Kind.AUTOMATIC, Reason.SLA_WARNING, state.level,
                self.policy.matrix.level(state.level).contact, clock.metric, at, now, None,
                actions, raise_level=False,
            )  # fmt: skip
        else:
            clock.breached_at = at
            level = min(state.level + 1, self.policy.matrix.top)
            self._escalate(
                state, f"sla:{clock.metric}{suffix}:breach", Kind.HIERARCHICAL,
                BREACH_REASON[clock.metric], level, self.policy.matrix.level(level).contact,
                clock.metric, at, now, None, actions, raise_level=True,
            )  # fmt: skip
        self._schedule(state, clock)

    def _climb(self, state: TicketState, at: int, now: int, actions: list[Action]) -> None:
        level = state.level + 1
        fired = self._escalate(
            state, "matrix:unanswered", Kind.HIERARCHICAL, Reason.ESCALATION_OVERDUE, level,
            self.policy.matrix.level(level).contact, None, at, now, None, actions,
            raise_level=True,
        )  # fmt: skip
        if fired is None:
            # Already fired at this level in this cycle: stop climbing rather than spin.
            state.awaiting_since = None

    # ------------------------------------------------------------------ escalations

    def _escalate(
        self,
        state: TicketState,
        rule: str,
        kind: Kind,
        reason: Reason,
        level: int,
        target: str,
        metric: str | None,
        at: int,
        now: int,
        event_id: str | None,
        actions: list[Action],
        raise_level: bool,
    ) -> Escalation | None:
        key = f"{rule}|{level}"
        if key in state.fired:
            return None
        state.fired.add(key)
        escalation = Escalation(
            escalation_id=action_id(state.ticket_id, rule, level, state.cycle),
            ticket_id=state.ticket_id,
            kind=kind,
            level=level,
            from_level=state.level,
            target=target,
            reason=reason,
            policy=state.policy,
            rule=rule,
            sla_metric=metric,
            due_at=at,
            fired_at=now,
            event_id=event_id,
            cycle=state.cycle,
        )
        actions.append(escalation)
        if reason is not Reason.SLA_WARNING and state.escalated_at is None:
            state.escalated_at = at
        if raise_level and level > state.level:
            state.level = level
            state.awaiting_since = at
        return escalation

    def _run_trigger(
        self,
        state: TicketState,
        trigger: Trigger,
        rule: str,
        at: int,
        now: int,
        event_id: str | None,
        actions: list[Action],
    ) -> None:
        last: Escalation | None = None
        reason = Reason.PRIORITY_RULE
        for action in trigger.actions:
            if action.escalate is not None:
                spec = action.escalate
                reason = spec.reason
                level, target = self._target(state, spec)
                fired = self._escalate(
                    state, rule, spec.kind, spec.reason, level, target, None, at, now,
                    event_id, actions,
                    raise_level=spec.kind in (Kind.HIERARCHICAL, Kind.AUTOMATIC),
                )  # fmt: skip
                if fired is not None:
                    last = fired
                    if spec.support_level_up:
                        state.support_level = min(state.support_level + 1, 4)
            elif action.bump_priority is not None:
                bump = action.bump_priority
                old = state.priority
                rank = PRIORITY_RANK[old]
                new_rank = PRIORITY_RANK[bump.to] if bump.to is not None else rank + (bump.by or 0)
                new_rank = min(new_rank, 3)
                if new_rank <= rank or f"{rule}|bump" in state.fired:
                    continue
                if last is None:
                    last = self._escalate(
                        state, f"{rule}:priority", Kind.PRIORITY, reason, state.level,
                        self.policy.matrix.level(state.level).contact, None, at, now,
                        event_id, actions, raise_level=False,
                    )  # fmt: skip
                    if last is None:
                        continue
                state.fired.add(f"{rule}|bump")
                new = _PRIORITIES[new_rank]
                actions.append(
                    PriorityBump(
                        ticket_id=state.ticket_id,
                        old_priority=old.value,
                        new_priority=new.value,
                        reason=reason,
                        escalation_id=last.escalation_id,
                        fired_at=now,
                        event_id=event_id,
                    )
                )
                state.priority = new
                self._rematch(state, at)
            elif action.remind is not None:
                key = f"{rule}|remind"
                if key in state.fired:
                    continue
                state.fired.add(key)
                target = action.remind.target
                if target == "assignee":
                    target = state.assignee_id or state.group or "unassigned"
                elif target == "group":
                    target = state.group or "unassigned"
                actions.append(
                    Reminder(
                        reminder_id=action_id(state.ticket_id, rule, 0, state.cycle),
                        ticket_id=state.ticket_id,
                        target=target,
                        reason=action.remind.reason,
                        rule=rule,
                        due_at=at,
                        fired_at=now,
                    )
                )

    def _target(self, state: TicketState, spec: Escalate) -> tuple[int, str]:
        matrix = self.policy.matrix
        level = spec.level if spec.level is not None else state.level
        if spec.kind is Kind.EXECUTIVE:
            return matrix.top, matrix.executive.contact
        if spec.team is not None:
            return level, spec.team
        if spec.route_by_category:
            team = matrix.functional.get(state.category or "")
            return level, team or matrix.level(level).contact
        if spec.support_level_up:
            return level, matrix.support_levels.get(
                min(state.support_level + 1, 4), f"L{min(state.support_level + 1, 4)}"
            )
        return level, matrix.level(level).contact

    def _fire_timed(
        self, state: TicketState, trigger: Trigger, at: int, now: int, actions: list[Action]
    ) -> None:
        key = self._timed_key(state, trigger)
        state.fired.add(key)
        if self._state_conditions_hold(state, trigger.when):
            self._run_trigger(state, trigger, key, at, now, None, actions)

    # ------------------------------------------------------------------ events

    def _start_tracking(self, state: TicketState, event: TicketEvent) -> None:
        """An unknown ticket: track it from what its first event carries."""
        t = event.occurred_at
        self._absorb(state, event)
        state.policy = self._match(state).name
        status = _implied_status(event)
        if status is not None:
            state.status = status
        if event.type is EventType.CREATED:
            state.created_at = t
        if state.status not in _DONE:
            self._start_clock(state, "first_response", 0, t)
            self._start_clock(state, "resolution", 0, t)

    def _absorb(self, state: TicketState, event: TicketEvent) -> bool:
        """Copy what the event carries into the state; True if SLA matching inputs changed."""
        changed = False
        t = event.occurred_at
        priority = event.priority
        if priority is not None and priority != state.priority and t >= state.priority_at:
            state.priority = priority
            state.priority_at = t
            changed = True
        if event.customer_tier is not None and event.customer_tier != state.tier:
            state.tier = event.customer_tier
            changed = True
        if event.channel is not None and event.channel != state.channel:
            state.channel = event.channel
            changed = True
        if event.category is not None and event.category != state.category:
            state.category = event.category
            changed = True
        if event.tags_added or event.tags_removed:
            before = len(state.tags), frozenset(state.tags)
            state.tags.update(event.tags_added)
            state.tags.difference_update(event.tags_removed)
            changed = changed or before[1] != state.tags
        if event.customer_id is not None:
            state.customer_id = event.customer_id
        if event.group is not None:
            state.group = event.group
        if event.assignee_id is not None:
            state.assignee_id = event.assignee_id
        if event.support_level is not None:
            state.support_level = event.support_level
        return changed

    def _match(self, state: TicketState) -> SlaPolicy:
        return self.policy.match(
            state.tier, state.priority, state.channel, state.category, state.tags
        )

    def _rematch(self, state: TicketState, at: int) -> None:
        """Re-select the SLA policy and retarget unfinished clocks after an attribute change."""
        old = self.sla_policy(state)
        new = self._match(state)
        for clock in state.clocks.values():
            if clock.active:
                self._accrue(state, clock, at)
        state.policy = new.name
        paused = self._paused(state)
        for clock in state.clocks.values():
            if not clock.active:
                continue
            clock.target = new.targets.target(clock.metric, state.priority)
            if paused:
                clock.running_since = None
            elif clock.running_since is None and old is not new:
                clock.running_since = at
            self._schedule(state, clock)

    def _handle(
        self, state: TicketState, event: TicketEvent, actions: list[Action], absorbed: bool
    ) -> None:
        t = event.occurred_at
        at = max(t, state.clock_at)  # the past cannot be re-run: clock changes apply from here
        kind = event.type
        matching_changed = False if absorbed else self._absorb(state, event)
        if kind is EventType.CREATED and state.created_at is None:
            self._late_created(state, t)
        elif kind is EventType.CREATED:
            state.created_at = min(state.created_at or t, t)
        if matching_changed:
            self._rematch(state, at)

        status = _implied_status(event)
        if kind is EventType.TRANSFERRED:
            state.transfers += 1
        reopened = (
            state.status in _DONE
            and status is not None
            and status not in _DONE
            and t >= state.status_since
        )
        if reopened:  # REOPENED, or any event that moves a solved ticket back to work
            self._reopen(state, at)
        if status is not None and status != state.status and t >= state.status_since:
            self._set_status(state, status, at, t, actions)
        if kind is EventType.CLOSED:
            state.closed = True

        if kind is EventType.AGENT_REPLIED:
            self._end_clock(state, "first_response", t, True, actions)
            self._end_clock(state, "next_response", t, True, actions)
            state.awaiting_since = None
        elif kind is EventType.CUSTOMER_REPLIED and state.status not in _DONE:
            first = state.clocks.get("first_response")
            waiting = state.clocks.get("next_response")
            if (first is None or not first.active) and (waiting is None or not waiting.active):
                self._start_clock(
                    state, "next_response", 0 if waiting is None else waiting.round + 1, at
                )
        self._event_triggers(state, event, at, actions, reopened)

    def _late_created(self, state: TicketState, t: int) -> None:
        """CREATED arrived after other events: clocks count from creation, not first sight."""
        state.created_at = t
        for metric in ("first_response", "resolution"):
            clock = state.clocks.get(metric)
            if clock is None or not clock.active or clock.round != 0 or t >= clock.started_at:
                continue
            clock.elapsed += self._calendar_of(state).between(t, clock.started_at)
            clock.started_at = t
            self._schedule(state, clock)

    def _set_status(
        self, state: TicketState, status: Status, at: int, t: int, actions: list[Action]
    ) -> None:
        was_paused = self._paused(state)
        state.status = status
        state.status_since = t
        state.status_seq += 1
        if status in _DONE:
            self._end_clock(state, "resolution", at, True, actions)
            self._end_clock(state, "first_response", at, False, actions)
            self._end_clock(state, "next_response", at, False, actions)
            state.awaiting_since = None
            state.escalated_at = None
            return
        paused = self._paused(state)
        if paused and not was_paused:
            self._pause_all(state, at)
        elif was_paused and not paused:
            self._resume_all(state, at)

    def _reopen(self, state: TicketState, at: int) -> None:
        state.reopens += 1
        state.cycle += 1
        state.fired.clear()
        state.level = 1
        state.awaiting_since = None
        state.escalated_at = None
        state.closed = False
        state.status = Status.OPEN
        state.status_since = at
        state.status_seq += 1
        self._start_clock(state, "resolution", state.cycle, at)
        previous = state.clocks.get("next_response")
        self._start_clock(state, "next_response", 0 if previous is None else previous.round + 1, at)

    def _event_triggers(
        self,
        state: TicketState,
        event: TicketEvent,
        at: int,
        actions: list[Action],
        reopened: bool,
    ) -> None:
        if state.status in _DONE and event.type is not EventType.CSAT_RECEIVED:
            return
        candidates = self._type_triggers[event.type]
        if event.tags_added:
            tagged = [t for tag in event.tags_added for t in self._tag_triggers.get(tag, ())]
            if tagged:  # file order decides the order of actions
                candidates = sorted({id(t): t for t in (*candidates, *tagged)}.values(),
                                    key=lambda t: self._order[id(t)])  # fmt: skip
        for trigger in candidates:
            if self._event_conditions_hold(state, event, trigger.when, reopened):
                self._run_trigger(
                    state, trigger, f"trigger:{trigger.name}", at, at, event.event_id, actions
                )

    def _event_conditions_hold(
        self, state: TicketState, event: TicketEvent, when: When, reopened: bool
    ) -> bool:
        if when.tags_added is not None and not any(t in when.tags_added for t in event.tags_added):
            return False
        if when.event is not None and event.type not in when.event:
            return False
        if when.transfers_at_least is not None and (
            event.type is not EventType.TRANSFERRED or state.transfers < when.transfers_at_least
        ):
            return False
        if when.reopens_at_least is not None and (
            not reopened or state.reopens < when.reopens_at_least
        ):
            return False
        if when.csat_at_most is not None and (event.csat is None or event.csat > when.csat_at_most):
            return False
        return self._state_conditions_hold(state, when)

    @staticmethod
    def _state_conditions_hold(state: TicketState, when: When) -> bool:
        return when.accepts(state.tier, state.priority, state.channel, state.category, state.tags)


def _implied_status(event: TicketEvent) -> Status | None:
    if event.type is EventType.RESOLVED:
        return Status.SOLVED
    if event.type is EventType.CLOSED:
        return Status.CLOSED
    if event.type is EventType.REOPENED:
        return Status.OPEN
    return event.status


def run_ticket(
    engine: Engine, events: Sequence[TicketEvent], until: int | None = None
) -> tuple[TicketState | None, list[Action]]:
    """Apply one ticket's events in order, then advance to `until`: a convenience for tests."""
    state: TicketState | None = None
    actions: list[Action] = []
    for event in events:
        state, out = engine.apply(state, event)
        actions.extend(out)
    if state is not None and until is not None:
        state, out = engine.advance(state, until)
        actions.extend(out)
    return state, actions


__all__ = ["Engine", "Priority", "run_ticket"]
