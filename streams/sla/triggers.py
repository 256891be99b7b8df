"""The engine's trigger layer: timed triggers compiled, and running a triggered rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from streams.sla.actions import (
    RAISING_KINDS,
    Action,
    Escalation,
    Kind,
    Reason,
    Silenced,
    action_id,
    new_priority_bump,
    new_reminder,
)
from streams.sla.clocks import _TIMED
from streams.sla.compiled_policy import timeline_of
from streams.sla.events import PRIORITY_RANK, EventType, Status
from streams.sla.matrix import Climbs, Page
from streams.sla.policy import BumpPriority, Escalate, Policy, Remind, Trigger
from streams.sla.state import TicketState

_PRIORITIES: Final = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)


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
        self.timeline = timeline_of(policy.calendar(trigger.calendar), self.wait)
        self.key = f"trigger:{trigger.name}"  # + "#<status_seq>" for status_for

    def fired_key(self, state: TicketState) -> str:
        return self.key if self.status is None else f"{self.key}#{state.status_seq}"


class Triggers(Climbs):
    """The policy's event and timed triggers: which can hold for an event, and what firing one
    does."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
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
        """Run a fired rule's actions in file order; a bump names the rule's last escalation."""
        last: Escalation | None = None
        reason = Reason.PRIORITY_RULE
        for action in trigger.actions:
            if action.escalate is not None:
                reason = action.escalate.reason
                fired = self._escalate_as(state, action.escalate, rule, at, now, event_id, actions)
                if fired is not None:
                    last = fired
            elif action.bump_priority is not None:
                bump = action.bump_priority
                last = self._bump(state, bump, rule, reason, last, at, now, event_id, actions)
            elif action.remind is not None:
                self._remind(state, action.remind, rule, at, now, actions)

    def _escalate_as(
        self, state: TicketState, spec: Escalate, rule: str, at: int, now: int,
        event_id: str | None, actions: list[Action],
    ) -> Escalation | None:  # fmt: skip
        """An `escalate` action: the chain the matrix names for its kind (unless it names its
        own target), or the target it names; with support_level_up, one support level up."""
        chain = self._kind_chain.get(spec.kind) if self._kind_chain else None
        if chain is not None and not (spec.team or spec.route_by_category or spec.support_level_up):
            head = self._chains[chain][0][0]
            page = Page(rule, spec.kind, spec.reason, state.level, head, event_id=event_id)
            fired = self._start_chain(state, chain, page, at, now, actions)
        else:
            level, target = self._target(state, spec)
            raising = spec.kind in RAISING_KINDS
            page = Page(rule, spec.kind, spec.reason, level, target, None, event_id, raising)
            fired = self._escalate(state, page, at, now, actions)
        if fired is not None and spec.support_level_up:
            state.support_level = min(state.support_level + 1, 4)
        return fired

    def _bump(
        self, state: TicketState, bump: BumpPriority, rule: str, reason: Reason,
        last: Escalation | None, at: int, now: int, event_id: str | None, actions: list[Action],
    ) -> Escalation | None:  # fmt: skip
        """A `bump_priority` action, upwards only and once per rule and cycle. It names the
        escalation behind it: the rule's `last`, or else one of its own (kind PRIORITY), which
        it returns as the rule's last; without one (fired before, or silenced) no bump."""
        old = state.priority
        rank = PRIORITY_RANK[old]
        new_rank = PRIORITY_RANK[bump.to] if bump.to is not None else rank + (bump.by or 0)
        new_rank = min(new_rank, 3)
        if new_rank <= rank or f"{rule}|bump" in state.fired:
            return last
        if last is None:
            target = self._contacts_of(state)[state.level]
            page = Page(
                f"{rule}:priority", Kind.PRIORITY, reason, state.level, target, None, event_id
            )
            last = self._escalate(state, page, at, now, actions)
            if last is None:
                return None
        self._mark_fired(state, f"{rule}|bump")
        new = _PRIORITIES[new_rank]
        actions.append(
            new_priority_bump(
                state.ticket_id, old.value, new.value, reason, last.escalation_id, now, event_id
            )
        )
        state.priority = new
        state.priority_at = at
        self._rematch(state, at)
        return last

    def _remind(
        self, state: TicketState, remind: Remind, rule: str, at: int, now: int,
        actions: list[Action],
    ) -> None:  # fmt: skip
        """A `remind` action, once per rule and cycle: to the assignee, the group or a name."""
        key = f"{rule}|remind"
        if key in state.fired:
            return
        self._mark_fired(state, key)
        ticket_id = state.ticket_id
        if self._quiet_event or at < self._quiet_before:
            actions.append(
                Silenced(ticket_id, "reminder", rule, remind.reason, 0, state.policy, None, at, now)
            )
            return
        target = remind.target
        if target == "assignee":
            target = state.assignee_id or state.group or "unassigned"
        elif target == "group":
            target = state.group or "unassigned"
        reminder_id = action_id(ticket_id, rule, 0, state.cycle)
        actions.append(new_reminder(reminder_id, ticket_id, target, remind.reason, rule, at, now))

    def _fire_timed(
        self, state: TicketState, timed: _Timed, at: int, now: int, actions: list[Action]
    ) -> None:
        key = timed.fired_key(state)
        self._mark_fired(state, key)
        if self._state_conditions_hold(state, timed.trigger.when):
            self._run_trigger(state, timed.trigger, key, at, now, None, actions)

    def _with_tag_triggers(self, triggers: list[Trigger], tags: Sequence[str]) -> list[Trigger]:
        tagged = [t for tag in tags for t in self._tag_triggers.get(tag, ())]
        if not tagged:
            return triggers
        unique = {id(t): t for t in (*triggers, *tagged)}.values()
        return sorted(unique, key=lambda t: self._order[id(t)])  # file order decides
