"""Which SLA policy a ticket is on: the policies compiled, a ticket matched to one, the
attributes an event carries copied into its state, and a rule's conditions tested."""

from __future__ import annotations

from sys import intern
from typing import Final

from streams.sla.compiled_policy import CompiledSla
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import Policy, When
from streams.sla.state import MAX_TICKET_TAGS, TicketState

_CREATED: Final = EventType.CREATED
_PRIORITY_CHANGED: Final = EventType.PRIORITY_CHANGED
_MATCH_CACHE: Final = 4096  # distinct (tier, priority, channel, category, tags) remembered


class Matching:
    """The compiled SLA policies and matching a ticket to one; the base of the engine."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.backfill_horizon = policy.tracking.backfill_horizon
        self._slas = {sla.name: CompiledSla(sla, policy) for sla in policy.sla_policies}
        self._teams = any(sla.by_group for sla in self._slas.values())
        # Matching is a pure function of five attributes, and costs microseconds: memoized.
        self._match_tags = any(sla.match.tags is not None for sla in policy.sla_policies)
        self._match_group = any(sla.match.group is not None for sla in policy.sla_policies)
        # groups with a calendar of their own: a move into or out of one moves the clocks
        self._team_groups = frozenset(policy.spec.group_calendars) if self._teams else frozenset()
        self._matched: dict[tuple[object, ...], CompiledSla] = {}
        # Tag sets are shared between tickets (a few dozen distinct ones in practice).
        self._tag_sets: dict[frozenset[str], frozenset[str]] = {}
        # So are the sets of rules a ticket fired: a set of its own cost each ticket ~400 bytes.
        self._fired_sets: dict[frozenset[str], frozenset[str]] = {}

    def _mark_fired(self, state: TicketState, key: str) -> None:
        """Record that the ticket fired `key` (a rule and level, a trigger), in a set shared
        with the tickets that fired the same ones."""
        fired = state.fired.union((key,))
        shared = self._fired_sets
        if len(shared) >= _MATCH_CACHE:
            shared.clear()
        state.fired = shared.setdefault(fired, fired)

    def _sla(
        self, state: TicketState, group: str | None = None, grouped: bool = False
    ) -> CompiledSla:
        """The ticket's SLA policy compiled on the calendar its clocks run on: its group's own
        (group_calendars), or the policy's. `grouped`: for `group` instead of the ticket's."""
        sla = self._slas[state.policy]
        if self._teams:
            key = group if grouped else state.group
            if key is not None:
                return sla.by_group.get(key, sla)
        return sla

    def _match(self, state: TicketState) -> CompiledSla:
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
