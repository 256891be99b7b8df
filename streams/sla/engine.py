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

from collections.abc import Sequence
from sys import intern
from typing import Final

from streams.sla.actions import (
    BREACH_REASON,
    RAISING_KINDS,
    Action,
    Escalation,
    Kind,
    Reason,
    Silenced,
    action_id,
    new_escalation,
    new_outcome,
    new_priority_bump,
    new_reminder,
)
from streams.sla.calendar import BusinessCalendar, Timeline
from streams.sla.events import (
    DONE_STATUSES,
    IMPLIED_STATUS,
    PRIORITY_RANK,
    WAITING_STATUSES,
    EventType,
    Priority,
    Status,
    TicketEvent,
)
from streams.sla.policy import METRICS, Escalate, Policy, SlaPolicy, Trigger, When
from streams.sla.state import MAX_TICKET_TAGS, SEEN_WINDOW, Clock, TicketState

_PRIORITIES: Final = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)
# Enum members as module constants: an attribute lookup on an enum class costs ~6x a global.
_CREATED: Final = EventType.CREATED
_TRANSFERRED: Final = EventType.TRANSFERRED
_CLOSED: Final = EventType.CLOSED
_PRIORITY_CHANGED: Final = EventType.PRIORITY_CHANGED
_AGENT_REPLIED: Final = EventType.AGENT_REPLIED
_CUSTOMER_REPLIED: Final = EventType.CUSTOMER_REPLIED
_CSAT_RECEIVED: Final = EventType.CSAT_RECEIVED
_ACKNOWLEDGED: Final = EventType.ESCALATION_ACKNOWLEDGED
_MATRIX_CLIMB: Final = "matrix:unanswered"
_OPEN: Final = Status.OPEN
_SLA_WARNING: Final = Reason.SLA_WARNING
# Due work at the same instant runs in this order: clocks (by metric), the matrix climb,
# then timed triggers in file order. _due() returns the rank with the instant.
_RANK: Final = {metric: rank for rank, metric in enumerate(METRICS)}
_CLIMB: Final = len(METRICS)
_FUNCTIONAL_CLIMB: Final = _CLIMB + 1
_TIMED: Final = _CLIMB + 2
_REMOVED: Final = ("deleted", "spam")  # attributes["removed"] of a CLOSED event: drop the ticket

_MATCH_CACHE: Final = 4096  # distinct (tier, priority, channel, category, tags) remembered
_Ends = tuple[tuple[str, bool], ...]  # clocks to end, in order, and whether that meets them
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
_ROUNDED: Final = frozenset(("next_response", "periodic_update", "pausable_update"))
_UPDATES: Final = ("periodic_update", "pausable_update")  # a round per agent reply
_PER_CYCLE: Final = ("requester_wait", "agent_work")  # from creation (or reopen) to solved
_NOT_WORKING: Final = frozenset(WAITING_STATUSES)  # agent_work stands still


def _timeline(calendar: BusinessCalendar, duration: int | None = None) -> Timeline | None:
    """The calendar's timeline, for adding positive durations and measuring end > start
    (which every caller checks first), or None where both are plain arithmetic (a 24x7
    calendar, or a `duration` of 0): callers then compute inline, without a call."""
    return None if duration == 0 else calendar.unchecked


def _held(sla: _Sla, clock: Clock) -> bool:
    """Whether a `pause` condition holds the clock; a hold the policy no longer has (an older
    policy's, or another SLA policy's) ends here."""
    if clock.held and clock.metric not in sla.holds:
        clock.held = False
    return clock.held


def _between(tl: Timeline | None, start: int, end: int) -> int:
    """Business time in [start, end) for end > start, which every caller checks first; plain
    subtraction without a timeline (a 24x7 calendar)."""
    return end - start if tl is None else tl.between(start, end)


class _Sla:
    """An SLA policy compiled for the hot path."""

    __slots__ = (
        "spec", "name", "thresholds", "targets", "steps", "pause", "timeline", "conditions",
        "deferred", "pause_of", "updates", "per_cycle", "extra", "by_group", "holds",
    )  # fmt: skip

    def __init__(
        self, spec: SlaPolicy, policy: Policy, calendar: BusinessCalendar | None = None
    ) -> None:
        team = calendar is not None  # a team's variant (group_calendars): only its calendar differs
        if calendar is None:
            calendar = policy.calendar(spec.calendar)
        self.spec = spec
        self.name = spec.name
        self.thresholds = (*spec.warn_at, 1.0)
        self.targets = {
            metric: {p: spec.targets.target(metric, p) for p in Priority} for metric in METRICS
        }
        # target -> each threshold with the elapsed time that reaches it, for the targets the
        # policy sets (a clock restored under an older policy may carry another one)
        self.steps = {
            target: self.thresholds_of(target)
            for by_priority in self.targets.values()
            for target in by_priority.values()
            if target is not None
        }
        self.pause = frozenset(spec.pause_statuses)
        self.timeline = _timeline(calendar)
        # the statuses each metric stands still in
        self.pause_of = {metric: self.pause for metric in METRICS}
        self.pause_of["periodic_update"] = frozenset()
        self.pause_of["agent_work"] = _NOT_WORKING
        # the metrics beyond the first three that this policy sets a target for
        tracked = {m for m in METRICS if any(t is not None for t in self.targets[m].values())}
        self.updates = tuple(m for m in _UPDATES if m in tracked)
        self.per_cycle = tuple(m for m in _PER_CYCLE if m in tracked)
        self.extra = bool(self.updates or self.per_cycle)
        self.conditions = tuple(
            (metric, c.start, c.stop, c.cancel, c.reset, c.pause, c.resume)
            for metric, c in ((m, spec.clocks[m]) for m in METRICS if m in spec.clocks)
        )
        # metrics whose clock waits for its `start` condition instead of starting at creation
        self.deferred = frozenset(m for m, start, *_ in self.conditions if start is not None)
        # metrics a `pause` condition can hold: a hold on any other (kept from an older policy,
        # or another SLA policy) ends at the next chance, as the policy no longer keeps it
        self.holds = frozenset(m for m, *_, pause, resume in self.conditions if pause and resume)
        # group -> this policy on the group's own calendar (empty for a team's variant)
        self.by_group: dict[str, _Sla] = {}
        if not team:
            for group in policy.spec.group_calendars:
                own = policy.sla_calendar(spec, group)
                if own is not calendar:
                    self.by_group[group] = _Sla(spec, policy, own)

    def thresholds_of(self, target: int) -> tuple[tuple[float, int], ...]:
        return tuple((fraction, round(target * fraction)) for fraction in self.thresholds)


class _Timed:
    """A timed trigger compiled: due `wait` after the ticket entered `status` (status_for),
    or after its first escalation (escalation_open_for)."""

    __slots__ = ("trigger", "rank", "status", "wait", "timeline", "key")

    def __init__(self, trigger: Trigger, rank: int, policy: Policy) -> None:
        when = trigger.when
        self.trigger = trigger
        self.rank = rank
        self.status = None if when.status_for is None else when.status_for.status
        if when.status_for is not None:
            self.wait = when.status_for.at_least
        else:
            self.wait = when.escalation_open_for or 0
        self.timeline = _timeline(policy.calendar(trigger.calendar), self.wait)
        self.key = f"trigger:{trigger.name}"  # + "#<status_seq>" for status_for

    def fired_key(self, state: TicketState) -> str:
        return self.key if self.status is None else f"{self.key}#{state.status_seq}"


class Engine:
    """Applies one policy to ticket states."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.backfill_horizon = policy.tracking.backfill_horizon
        self._slas = {sla.name: _Sla(sla, policy) for sla in policy.sla_policies}
        self._teams = any(sla.by_group for sla in self._slas.values())
        # Set for the duration of one apply/advance call (see the module docstring).
        self._quiet_before = -1
        self._quiet_event = False
        # Matching is a pure function of five attributes, and costs microseconds: memoized.
        self._match_tags = any(sla.match.tags is not None for sla in policy.sla_policies)
        self._match_group = any(sla.match.group is not None for sla in policy.sla_policies)
        # groups with a calendar of their own: a move into or out of one moves the clocks
        self._team_groups = frozenset(policy.spec.group_calendars) if self._teams else frozenset()
        self._matched: dict[tuple[object, ...], _Sla] = {}
        # Tag sets are shared between tickets (a few dozen distinct ones in practice).
        self._tag_sets: dict[frozenset[str], frozenset[str]] = {}
        matrix = policy.matrix
        self._top = matrix.top
        self._contacts = tuple(matrix.level(n).contact for n in range(matrix.top + 2))
        # tier -> its contacts per level, where the matrix names other ones for it
        self._tier_contacts = {
            tier: tuple(
                overrides.get(min(max(n, 1), matrix.top), contact)
                for n, contact in enumerate(self._contacts)
            )
            for tier, overrides in matrix.tier_contacts.items()
        }
        # level -> (allowed, calendar) for the levels an unanswered escalation climbs from
        self._climbs: dict[int, tuple[int, Timeline | None]] = {}
        for n in range(matrix.top + 1):  # the top climbs too when the matrix repeats
            climb = policy.climb(n)
            if climb is not None:
                self._climbs[n] = (climb[0], _timeline(climb[1], climb[0]))
        self._repeat = matrix.repeat
        self._conditional = any(sla.conditions for sla in self._slas.values())
        self._stop_on_reply = "agent_reply" in matrix.stop_climb_on
        self._stop_on_ack = "acknowledged" in matrix.stop_climb_on
        calendar = policy.calendar(matrix.calendar)
        chains = {**matrix.functional, **{f"@{name}": c for name, c in matrix.chains.items()}}
        # category (or "@<name>" for a named chain: no category starts with "@") -> its
        # steps: (contact, allowed, calendar)
        self._chains: dict[str, tuple[tuple[str, int | None, Timeline | None], ...]] = {
            key: tuple(
                (step.contact, step.allowed, _timeline(calendar, step.allowed)) for step in chain
            )
            for key, chain in chains.items()
        }
        self._metric_chain = {metric: f"@{name}" for metric, name in matrix.by_metric.items()}
        self._kind_chain = {Kind(kind): f"@{name}" for kind, name in matrix.by_kind.items()}
        self._tier_chain = {tier: f"@{name}" for tier, name in matrix.by_tier.items()}
        self._timed = tuple(
            _Timed(t, _TIMED + i, policy) for i, t in enumerate(policy.timed_triggers)
        )
        self._after_escalation = tuple(t for t in self._timed if t.status is None)
        self._in_status = {
            status: tuple(t for t in self._timed if t.status == status) for status in Status
        }
        # Which event triggers can possibly hold for an event, so most events test none;
        # each list is in file order, which decides the order of actions.
        self._tag_triggers: dict[str, list[Trigger]] = {}
        self._type_triggers: dict[EventType, list[Trigger]] = {t: [] for t in EventType}
        # ... and for an event that reopens the ticket: those and the reopens_at_least ones.
        self._reopening_triggers: dict[EventType, list[Trigger]] = {t: [] for t in EventType}
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
            for event_type in EventType:
                if event_type in types:
                    self._reopening_triggers[event_type].append(trigger)
                    if when.reopens_at_least is None:  # otherwise only an event that reopens
                        self._type_triggers[event_type].append(trigger)
        self._order = {id(t): i for i, t in enumerate(policy.event_triggers)}

    # ------------------------------------------------------------------ public

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
            state.seen[event.event_id] = None
            self._handle(state, event, actions, absorbed=True)
        elif event.event_id in state.seen:
            self._quiet_event = False
            return state, actions
        else:
            due = state.next_due
            if due is not None and due <= limit:
                self._advance(state, limit, state.clock_at if now < 0 else now, actions)
            seen = state.seen  # state.remember, inline: the hottest path
            seen[event.event_id] = None
            if len(seen) > SEEN_WINDOW:
                del seen[next(iter(seen))]
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

    def _sla(self, state: TicketState, group: str | None = None, grouped: bool = False) -> _Sla:
        """The ticket's SLA policy compiled on the calendar its clocks run on: its group's own
        (group_calendars), or the policy's. `grouped`: for `group` instead of the ticket's."""
        sla = self._slas[state.policy]
        if self._teams:
            key = group if grouped else state.group
            if key is not None:
                return sla.by_group.get(key, sla)
        return sla

    # ------------------------------------------------------------------ time

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

    # ------------------------------------------------------------------ clocks

    def _schedule(self, sla: _Sla, clock: Clock) -> None:
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
            clock.elapsed += _between(self._sla(state).timeline, since, at)
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
                    clock.elapsed += _between(tl, since, at)
                clock.running_since = None
                clock.next_at = None

    def _repause(self, state: TicketState, sla: _Sla, at: int) -> None:
        """Each running clock stands still or runs as its metric does in the new status."""
        status = state.status
        for clock in state.clocks.values():
            if clock.ended_at is not None:
                continue
            since = clock.running_since
            if status in sla.pause_of[clock.metric]:
                if since is not None:
                    if at > since:
                        clock.elapsed += _between(sla.timeline, since, at)
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

    def _fire_threshold(
        self, state: TicketState, clock: Clock, at: int, now: int, actions: list[Action]
    ) -> None:
        sla = self._sla(state)
        fraction = next(f for f in sla.thresholds if f > clock.last_fraction)
        clock.last_fraction = fraction
        metric = clock.metric
        suffix = f"#{clock.round}" if metric in _ROUNDED else ""
        if clock.resets:
            suffix += f"~{clock.resets}"
        if fraction < 1.0:
            rule = f"sla:{metric}{suffix}:warn{round(fraction * 100)}"
            self._escalate(
                state, rule, Kind.AUTOMATIC, Reason.SLA_WARNING, state.level,
                self._contacts_of(state)[state.level], metric, at, now, None, actions,
                raise_level=False,
            )  # fmt: skip
        else:
            clock.breached_at = at
            rule = f"sla:{metric}{suffix}:breach"
            chain = self._chains.get(state.category or "")
            if sla.spec.breach_route == "category" and chain is not None:
                self._escalate(
                    state, rule, Kind.FUNCTIONAL, BREACH_REASON[metric], state.level,
                    chain[0][0], metric, at, now, None, actions, raise_level=False,
                )  # fmt: skip
            elif self._tier_chain and (state.tier or "") in self._tier_chain:
                self._start_chain(
                    state, self._tier_chain[state.tier or ""], rule, Kind.HIERARCHICAL,
                    BREACH_REASON[metric], metric, at, now, None, actions,
                )  # fmt: skip
            elif metric in self._metric_chain:
                self._start_chain(
                    state, self._metric_chain[metric], rule, Kind.HIERARCHICAL,
                    BREACH_REASON[metric], metric, at, now, None, actions,
                )  # fmt: skip
            else:
                level = self._deadline_level(state, now)
                self._escalate(
                    state, rule, Kind.HIERARCHICAL, BREACH_REASON[metric], level,
                    self._contacts_of(state)[level], metric, at, now, None, actions,
                    raise_level=True,
                )  # fmt: skip
        self._schedule(sla, clock)

    def _deadline_level(self, state: TicketState, now: int) -> int:
        """The level a deadline raises the ticket to: one up, unless a deadline already
        raised it at this instant (a late discovery pages one level at a time)."""
        if state.raised_at == now and state.level > 1:
            return state.level
        return min(state.level + 1, self._top)

    def _climb(self, state: TicketState, at: int, now: int, actions: list[Action]) -> None:
        if state.level >= self._top:  # due only when the matrix repeats: start again at 2
            if state.repeat >= self._repeat:
                state.awaiting_since = None
                return
            state.repeat += 1
            fired = self._escalate(
                state, f"matrix:repeat{state.repeat}", Kind.HIERARCHICAL,
                Reason.ESCALATION_OVERDUE, 2, self._contacts_of(state)[2], None, at, now, None,
                actions, raise_level=False,
            )  # fmt: skip
            if fired is None:
                state.awaiting_since = None
            else:
                state.level = 2
                state.awaiting_since = now
                state.climb_paused = 0
                state.climb_id = fired.escalation_id
            return
        rule = _MATRIX_CLIMB if state.repeat == 0 else f"matrix:repeat{state.repeat}"
        level = self._deadline_level(state, now)
        fired = self._escalate(
            state, rule, Kind.HIERARCHICAL, Reason.ESCALATION_OVERDUE, level,
            self._contacts_of(state)[level], None, at, now, None, actions, raise_level=True,
        )  # fmt: skip
        if fired is None or state.awaiting_since != now:
            # Already fired at this level in this cycle, or silenced: stop climbing rather
            # than spin.
            state.awaiting_since = None

    def _functional_climb(
        self, state: TicketState, at: int, now: int, actions: list[Action]
    ) -> None:
        """The functional chain's next step: its timer starts when it fired."""
        category = state.f_chain or ""
        step = state.f_step + 1
        contact = self._chains[category][step][0]
        if category[:1] == "@":  # a named chain (escalation_matrix.chains)
            rule, kind = f"chain:{category[1:]}#{step}", Kind.HIERARCHICAL
        else:
            rule, kind = f"functional:{category}#{step}", Kind.FUNCTIONAL
        fired = self._escalate(
            state, rule, kind, Reason.ESCALATION_OVERDUE, state.level, contact, None, at, now,
            None, actions, raise_level=False,
        )  # fmt: skip
        state.f_step = step
        if fired is None:
            state.f_since = None
        else:
            state.f_since = now
            state.f_paused = 0
            state.f_id = fired.escalation_id

    # ------------------------------------------------------------------ escalations

    def _start_chain(
        self, state: TicketState, key: str, rule: str, kind: Kind, reason: Reason,
        metric: str | None, at: int, now: int, event_id: str | None, actions: list[Action],
    ) -> Escalation | None:  # fmt: skip
        """Page a named chain's first step and climb it: it takes over from any chain the
        ticket was climbing (one side chain at a time; the latest is the one unanswered)."""
        fired = self._escalate(
            state, rule, kind, reason, state.level, self._chains[key][0][0], metric, at, now,
            event_id, actions, raise_level=False,
        )  # fmt: skip
        if fired is not None:
            state.f_chain = key
            state.f_step = 0
            state.f_since = now
            state.f_paused = 0
            state.f_id = fired.escalation_id
        return fired

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
        ticket_id = state.ticket_id
        if self._quiet_event or at < self._quiet_before:
            actions.append(
                Silenced(
                    ticket_id, "escalation", rule, reason, level, state.policy, metric, at, now
                )
            )
            return None
        escalation = new_escalation(
            action_id(ticket_id, rule, level, state.cycle), ticket_id, kind, level, state.level,
            target, reason, state.policy, rule, metric, at, now, event_id, state.cycle,
        )  # fmt: skip
        actions.append(escalation)
        if reason is not _SLA_WARNING and state.escalated_at is None:
            state.escalated_at = now
        if raise_level and level > state.level:
            state.level = level
            state.raised_at = now
            state.awaiting_since = now  # the next level's timer starts when this one fired
            state.climb_paused = 0
            state.climb_id = escalation.escalation_id
        if kind is Kind.FUNCTIONAL and rule[:11] != "functional:":
            chain = self._chains.get(state.category or "")
            if chain is not None and target == chain[0][0] and state.f_since is None:
                state.f_chain = state.category
                state.f_step = 0
                state.f_since = now
                state.f_paused = 0
                state.f_id = escalation.escalation_id
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
                chain = self._kind_chain.get(spec.kind) if self._kind_chain else None
                if chain is not None and not (
                    spec.team or spec.route_by_category or spec.support_level_up
                ):
                    fired = self._start_chain(
                        state, chain, rule, spec.kind, spec.reason, None, at, now, event_id,
                        actions,
                    )  # fmt: skip
                else:
                    level, target = self._target(state, spec)
                    fired = self._escalate(
                        state, rule, spec.kind, spec.reason, level, target, None, at, now,
                        event_id, actions,
                        raise_level=spec.kind in RAISING_KINDS,
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
                        self._contacts_of(state)[state.level], None, at, now, event_id, actions,
                        raise_level=False,
                    )  # fmt: skip
                    if last is None:
                        continue
                state.fired.add(f"{rule}|bump")
                new = _PRIORITIES[new_rank]
                actions.append(
                    new_priority_bump(
                        state.ticket_id,
                        old.value,
                        new.value,
                        reason,
                        last.escalation_id,
                        now,
                        event_id,
                    )  # fmt: skip
                )
                state.priority = new
                state.priority_at = at
                self._rematch(state, at)
            elif action.remind is not None:
                key = f"{rule}|remind"
                if key in state.fired:
                    continue
                state.fired.add(key)
                if self._quiet_event or at < self._quiet_before:
                    actions.append(
                        Silenced(
                            state.ticket_id,
                            "reminder",
                            rule,
                            action.remind.reason,
                            0,
                            state.policy,
                            None,
                            at,
                            now,
                        )  # fmt: skip
                    )
                    continue
                target = action.remind.target
                if target == "assignee":
                    target = state.assignee_id or state.group or "unassigned"
                elif target == "group":
                    target = state.group or "unassigned"
                actions.append(
                    new_reminder(
                        action_id(state.ticket_id, rule, 0, state.cycle),
                        state.ticket_id,
                        target,
                        action.remind.reason,
                        rule,
                        at,
                        now,
                    )  # fmt: skip
                )

    def _target(self, state: TicketState, spec: Escalate) -> tuple[int, str]:
        matrix = self.policy.matrix
        level = spec.level if spec.level is not None else state.level
        if spec.kind is Kind.EXECUTIVE:
            return matrix.top, matrix.executive.contact
        if spec.team is not None:
            return level, spec.team
        if spec.route_by_category:
            chain = self._chains.get(state.category or "")
            return level, self._contacts_of(state)[level] if chain is None else chain[0][0]
        if spec.support_level_up:
            return level, matrix.support_levels.get(
                min(state.support_level + 1, 4), f"L{min(state.support_level + 1, 4)}"
            )
        return level, self._contacts_of(state)[level]

    def _contacts_of(self, state: TicketState) -> tuple[str, ...]:
        """The matrix's contact per level for this ticket's customer tier."""
        if self._tier_contacts:
            return self._tier_contacts.get(state.tier or "", self._contacts)
        return self._contacts

    def _fire_timed(
        self, state: TicketState, timed: _Timed, at: int, now: int, actions: list[Action]
    ) -> None:
        key = timed.fired_key(state)
        state.fired.add(key)
        if self._state_conditions_hold(state, timed.trigger.when):
            self._run_trigger(state, timed.trigger, key, at, now, None, actions)

    # ------------------------------------------------------------------ events

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

    def _absorb(self, state: TicketState, event: TicketEvent, first: bool = False) -> bool:
        """Copy what the event carries into the state; True if SLA matching inputs changed.

        Only a deliberate change sets the priority (PRIORITY_CHANGED, CREATED or the first
        event seen): help-desk webhooks carry the current priority on every event, which
        would otherwise undo a trigger's bump. Attributes with few distinct values are
        interned: every ticket then shares one string instead of keeping its own copy."""
        changed = False
        priority = event.priority
        if (
            priority is not None
            and priority != state.priority
            and (first or event.type is _PRIORITY_CHANGED or event.type is _CREATED)
        ):
            t = event.occurred_at
            if t >= state.priority_at:
                state.priority = priority
                state.priority_at = t
                changed = True
        value = event.customer_tier
        if value is not None and value != state.tier:
            state.tier = intern(value)
            changed = True
        value = event.channel
        if value is not None and value != state.channel:
            state.channel = intern(value)
            changed = True
        value = event.category
        if value is not None and value != state.category:
            state.category = intern(value)
            changed = True
        if event.tags_added or event.tags_removed:
            tags = state.tags.union(event.tags_added).difference(event.tags_removed)
            if len(tags) > MAX_TICKET_TAGS:  # bounded state: the first tags by name stay
                tags = frozenset(sorted(tags)[:MAX_TICKET_TAGS])
            if tags != state.tags:
                shared = self._tag_sets
                if len(shared) >= _MATCH_CACHE:
                    shared.clear()
                state.tags = shared.setdefault(tags, tags)
                changed = True
        if event.customer_id is not None:
            state.customer_id = event.customer_id
        value = event.group
        if value is not None and value != state.group:
            # a key of SLA matching only if used; a team's calendar only for its group
            if self._match_group or value in self._team_groups or state.group in self._team_groups:
                changed = True
            state.group = intern(value)
        value = event.assignee_id
        if value is not None and value != state.assignee_id:
            state.assignee_id = intern(value)
        if event.support_level is not None:
            state.support_level = event.support_level
        return changed

    def _match(self, state: TicketState) -> _Sla:
        tags = state.tags if self._match_tags else None
        group = state.group if self._match_group else None
        key = (state.tier, state.priority, state.channel, state.category, tags, group)
        sla = self._matched.get(key)
        if sla is None:
            if len(self._matched) >= _MATCH_CACHE:
                self._matched.clear()
            spec = self.policy.match(
                state.tier, state.priority, state.channel, state.category, state.tags, group
            )
            sla = self._matched[key] = self._slas[spec.name]
        return sla

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
                clock.elapsed += _between(old.timeline, since, at)
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
                    clock.elapsed += _between(sla.timeline, since, at)
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
                            clock.elapsed += _between(sla.timeline, since, at)
                        clock.running_since = None
                        clock.next_at = None
            elif self._event_conditions_hold(state, event, resume, reopened):
                clock.held = False
                if state.status not in sla.pause_of[metric]:
                    clock.running_since = at
                    self._schedule(sla, clock)

    @staticmethod
    def _acknowledge(state: TicketState, escalation_id: str | None) -> None:
        """Stop the climb the acknowledged escalation started (the matrix's or the functional
        chain's); an acknowledgement naming no escalation stops both. One naming an escalation
        a later one superseded changes nothing: the later one is the one still unanswered."""
        if escalation_id is None or escalation_id == state.climb_id:
            state.awaiting_since = None
        if escalation_id is None or escalation_id == state.f_id:
            state.f_since = None

    def _with_tag_triggers(self, triggers: list[Trigger], tags: Sequence[str]) -> list[Trigger]:
        tagged = [t for tag in tags for t in self._tag_triggers.get(tag, ())]
        if not tagged:
            return triggers
        unique = {id(t): t for t in (*triggers, *tagged)}.values()
        return sorted(unique, key=lambda t: self._order[id(t)])  # file order decides

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
            clock.elapsed += _between(sla.timeline, t, clock.started_at)
            clock.started_at = t
            self._schedule(sla, clock)

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

    def _count_climb_pause(self, state: TicketState, paused_since: int, at: int) -> None:
        """Climb timers stand still during a pause: each pause status's stay (PENDING then
        ON_HOLD is one pause, made of two) adds the business time it covered, on the climb's
        own calendar, to what the climb may take; counted from the escalation if it came
        during the pause."""
        since = state.awaiting_since
        climb = self._climbs.get(state.level)
        if since is not None and climb is not None:
            start = since if since > paused_since else paused_since
            if at > start:
                state.climb_paused += _between(climb[1], start, at)
        since = state.f_since
        chain = self._chains.get(state.f_chain or "")
        if since is not None and chain is not None and state.f_step < len(chain):
            start = since if since > paused_since else paused_since
            if at > start:
                state.f_paused += _between(chain[state.f_step][2], start, at)

    def _reopen(self, state: TicketState, at: int) -> None:
        state.reopens += 1
        state.cycle += 1
        state.fired.clear()
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

    def _event_conditions_hold(
        self, state: TicketState, event: TicketEvent, when: When, reopened: bool
    ) -> bool:
        if when.tags_added is not None and not any(t in when.tags_added for t in event.tags_added):
            return False
        if when.tags_removed is not None and not any(
            t in when.tags_removed for t in event.tags_removed
        ):
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
        return when.accepts(
            state.tier, state.priority, state.channel, state.category, state.tags, state.group
        )


__all__ = ["Engine", "Priority"]
