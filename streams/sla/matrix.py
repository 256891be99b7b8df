"""The engine's escalation matrix layer: breaches and unanswered escalations climb its levels
or a functional chain, at most one level per instant."""

from __future__ import annotations

from typing import Final

from streams.sla.actions import (
    BREACH_REASON,
    Action,
    Escalation,
    Kind,
    Reason,
    Silenced,
    action_id,
    new_escalation,
)
from streams.sla.calendar import Timeline
from streams.sla.clocks import Clocks
from streams.sla.compiled_policy import CompiledSla, business_time, timeline_of
from streams.sla.policy import Escalate, Policy
from streams.sla.state import Clock, TicketState

_MATRIX_CLIMB: Final = "matrix:unanswered"
_SLA_WARNING: Final = Reason.SLA_WARNING
_OVERDUE: Final = Reason.ESCALATION_OVERDUE
_ROUNDED: Final = frozenset(("next_response", "periodic_update", "pausable_update"))


class Page:
    """An escalation about to fire: the rule that fires it, whom it pages at which level and
    why, the event that caused it (None for due work), and whether it raises the ticket's
    level (a breach or a climb of the matrix does; a warning or a side chain does not).
    Not a dataclass: compiled, a dataclass's __init__ stays interpreted, this one does not."""

    __slots__ = ("rule", "kind", "reason", "level", "target", "metric", "event_id", "raise_level")

    def __init__(
        self, rule: str, kind: Kind, reason: Reason, level: int, target: str,
        metric: str | None = None, event_id: str | None = None, raise_level: bool = False,
    ) -> None:  # fmt: skip
        self.rule = rule
        self.kind = kind
        self.reason = reason
        self.level = level
        self.target = target
        self.metric = metric  # the SLA metric whose clock fired it
        self.event_id = event_id
        self.raise_level = raise_level


class Climbs(Clocks):
    """The escalation matrix: breaches and unanswered escalations climbing its levels, and the
    functional and named chains beside it."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
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
                self._climbs[n] = (climb[0], timeline_of(climb[1], climb[0]))
        self._repeat = matrix.repeat
        self._stop_on_reply = "agent_reply" in matrix.stop_climb_on
        self._stop_on_ack = "acknowledged" in matrix.stop_climb_on
        calendar = policy.calendar(matrix.calendar)
        chains = {**matrix.functional, **{f"@{name}": c for name, c in matrix.chains.items()}}
        # category (or "@<name>" for a named chain: no category starts with "@") -> its
        # steps: (contact, allowed, calendar)
        self._chains: dict[str, tuple[tuple[str, int | None, Timeline | None], ...]] = {
            key: tuple(
                (step.contact, step.allowed, timeline_of(calendar, step.allowed)) for step in chain
            )
            for key, chain in chains.items()
        }
        self._metric_chain = {metric: f"@{name}" for metric, name in matrix.by_metric.items()}
        self._kind_chain = {Kind(kind): f"@{name}" for kind, name in matrix.by_kind.items()}
        self._tier_chain = {tier: f"@{name}" for tier, name in matrix.by_tier.items()}

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
            target = self._contacts_of(state)[state.level]
            page = Page(rule, Kind.AUTOMATIC, _SLA_WARNING, state.level, target, metric)
            self._escalate(state, page, at, now, actions)
        else:
            clock.breached_at = at
            self._breach(state, sla, f"sla:{metric}{suffix}:breach", metric, at, now, actions)
        self._schedule(sla, clock)

    def _breach(
        self, state: TicketState, sla: CompiledSla, rule: str, metric: str, at: int, now: int,
        actions: list[Action],
    ) -> None:  # fmt: skip
        """Route a breach: to the category's functional chain (breach_route: category), to
        the chain the matrix names for the ticket's tier or the metric, or one level up."""
        reason = BREACH_REASON[metric]
        by_category = self._chains.get(state.category or "")
        chain = self._tier_chain.get(state.tier or "") if self._tier_chain else None
        if chain is None and metric in self._metric_chain:
            chain = self._metric_chain[metric]
        if sla.spec.breach_route == "category" and by_category is not None:
            page = Page(rule, Kind.FUNCTIONAL, reason, state.level, by_category[0][0], metric)
            self._escalate(state, page, at, now, actions)
        elif chain is not None:
            head = self._chains[chain][0][0]
            page = Page(rule, Kind.HIERARCHICAL, reason, state.level, head, metric)
            self._start_chain(state, chain, page, at, now, actions)
        else:
            level = self._deadline_level(state, now)
            target = self._contacts_of(state)[level]
            page = Page(rule, Kind.HIERARCHICAL, reason, level, target, metric, raise_level=True)
            self._escalate(state, page, at, now, actions)

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
            rule = f"matrix:repeat{state.repeat}"
            target = self._contacts_of(state)[2]
            page = Page(rule, Kind.HIERARCHICAL, _OVERDUE, 2, target)
            fired = self._escalate(state, page, at, now, actions)
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
        target = self._contacts_of(state)[level]
        page = Page(rule, Kind.HIERARCHICAL, _OVERDUE, level, target, raise_level=True)
        fired = self._escalate(state, page, at, now, actions)
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
        page = Page(rule, kind, _OVERDUE, state.level, contact)
        fired = self._escalate(state, page, at, now, actions)
        state.f_step = step
        if fired is None:
            state.f_since = None
        else:
            state.f_since = now
            state.f_paused = 0
            state.f_id = fired.escalation_id

    def _start_chain(
        self, state: TicketState, key: str, page: Page, at: int, now: int, actions: list[Action]
    ) -> Escalation | None:
        """Page a named chain's first step and climb it: it takes over from any chain the
        ticket was climbing (one side chain at a time; the latest is the one unanswered)."""
        fired = self._escalate(state, page, at, now, actions)
        if fired is not None:
            state.f_chain = key
            state.f_step = 0
            state.f_since = now
            state.f_paused = 0
            state.f_id = fired.escalation_id
        return fired

    def _escalate(
        self, state: TicketState, page: Page, at: int, now: int, actions: list[Action]
    ) -> Escalation | None:
        """Fire `page` once per (rule, level) and cycle: an escalation, or Silenced before
        the backfill horizon; None where it fired before or was silenced."""
        rule = page.rule
        level = page.level
        key = f"{rule}|{level}"
        if key in state.fired:
            return None
        self._mark_fired(state, key)
        ticket_id = state.ticket_id
        if self._quiet_event or at < self._quiet_before:
            actions.append(
                Silenced(
                    ticket_id,
                    "escalation",
                    rule,
                    page.reason,
                    level,
                    state.policy,
                    page.metric,
                    at,
                    now,
                )  # fmt: skip
            )
            return None
        escalation = new_escalation(
            action_id(ticket_id, rule, level, state.cycle), ticket_id, page.kind, level,
            state.level, page.target, page.reason, state.policy, rule, page.metric, at, now,
            page.event_id, state.cycle,
        )  # fmt: skip
        actions.append(escalation)
        if page.reason is not _SLA_WARNING and state.escalated_at is None:
            state.escalated_at = now
        if page.raise_level and level > state.level:
            state.level = level
            state.raised_at = now
            state.awaiting_since = now  # the next level's timer starts when this one fired
            state.climb_paused = 0
            state.climb_id = escalation.escalation_id
        if page.kind is Kind.FUNCTIONAL and rule[:11] != "functional:":
            chain = self._chains.get(state.category or "")
            if chain is not None and page.target == chain[0][0] and state.f_since is None:
                state.f_chain = state.category
                state.f_step = 0
                state.f_since = now
                state.f_paused = 0
                state.f_id = escalation.escalation_id
        return escalation

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

    @staticmethod
    def _acknowledge(state: TicketState, escalation_id: str | None) -> None:
        """Stop the climb the acknowledged escalation started (the matrix's or the functional
        chain's); an acknowledgement naming no escalation stops both. One naming an escalation
        a later one superseded changes nothing: the later one is the one still unanswered."""
        if escalation_id is None or escalation_id == state.climb_id:
            state.awaiting_since = None
        if escalation_id is None or escalation_id == state.f_id:
            state.f_since = None

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
                state.climb_paused += business_time(climb[1], start, at)
        since = state.f_since
        chain = self._chains.get(state.f_chain or "")
        if since is not None and chain is not None and state.f_step < len(chain):
            start = since if since > paused_since else paused_since
            if at > start:
                state.f_paused += business_time(chain[state.f_step][2], start, at)
