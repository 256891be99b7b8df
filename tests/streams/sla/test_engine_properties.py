"""SLA engine properties on generated ticket histories (default policy and a business policy).

The oracle below re-derives every SLA clock from the events alone (when it starts, pauses,
resumes and stops, and which target applies) and uses only the calendar's `add`/`between`
(tested in test_calendar.py), so a breach escalation is checked against an independent
deadline rather than against the engine's own bookkeeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, SlaOutcome
from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status, TicketEvent
from streams.sla.policy import load_policy, parse_policy
from streams.sla.state import TicketState

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H
START = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)  # a Monday; DST on 3/8, 3/29

# A small business-hours policy: Berlin office hours (DST on 2026-03-29), per-priority
# targets, two warnings, a business-calendar matrix and two triggers.
BUSINESS = """\
version: 1
calendars:
  office:
    timezone: Europe/Berlin
    hours:
      mon-fri: ["08:00-12:00", "13:00-17:00"]
    holidays: [2026-03-27]
sla_policies:
  - name: office
    calendar: office
    targets:
      first_response: {URGENT: 30m, HIGH: 1h, NORMAL: 2h, LOW: 4h}
      next_response: {URGENT: 1h, default: 3h}
      resolution: {URGENT: 4h, HIGH: 8h, NORMAL: 16h, LOW: 2d}
    warn_at: [0.5, 0.9]
escalation_matrix:
  calendar: office
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead, allowed: 4h}
    - {level: 3, name: head, contact: head}
  executive: {contact: exec}
triggers:
  - name: churn
    when: {tags_added: [churn_risk, at_risk]}
    actions:
      - escalate: {kind: AUTOMATIC, reason: CHURN_RISK, level: 2}
      - bump_priority: {to: URGENT}
  - name: cancel
    when: {tags_added: [cancel]}
    actions:
      - bump_priority: {by: 1}
  - name: pending
    when: {status_for: {status: PENDING, at_least: 1d}}
    actions:
      - remind: {reason: PENDING_TOO_LONG}
"""

DEFAULT = Engine(load_policy())
OFFICE = Engine(parse_policy(BUSINESS, "business.yaml"))
DONE = (Status.SOLVED, Status.CLOSED)

TAGS = [
    "churn_risk",
    "at_risk",
    "system_crash",
    "legal",
    "cancel",
    "account_closure",
    "refund",
    "privacy",
    "supervisor_request",
    "vip_customer",
]
CHANNELS = ["phone", "email", "chat", "social", "web"]
CATEGORIES = ["billing", "payment", "product", "it", "general", "complaint"]
KINDS = [
    EventType.AGENT_REPLIED,
    EventType.AGENT_REPLIED,
    EventType.CUSTOMER_REPLIED,
    EventType.CUSTOMER_REPLIED,
    EventType.STATUS_CHANGED,
    EventType.STATUS_CHANGED,
    EventType.TRANSFERRED,
    EventType.TAGS_CHANGED,
    EventType.PRIORITY_CHANGED,
    EventType.ASSIGNED,
    EventType.RESOLVED,
    EventType.REOPENED,
    EventType.CLOSED,
    EventType.CSAT_RECEIVED,
]

FAST = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----------------------------------------------------------------------------- generation


@st.composite
def ticket_events(draw: Any, ticket_id: str, tiers: Sequence[str]) -> list[TicketEvent]:
    """CREATED, then a plausible mix of lifecycle events at increasing times over days."""
    t = START + draw(st.integers(0, 6 * 24 * 60)) * M
    events = [
        TicketEvent(
            event_id=f"{ticket_id}-0",
            ticket_id=ticket_id,
            type=EventType.CREATED,
            occurred_at=t,
            status=Status.NEW,
            priority=draw(st.sampled_from(Priority)),
            channel=draw(st.sampled_from(CHANNELS)),
            category=draw(st.sampled_from(CATEGORIES)),
            customer_tier=draw(st.sampled_from(tiers)),
            tags_added=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=1))),
        )
    ]
    done = False
    for i in range(1, draw(st.integers(0, 22)) + 1):
        t += draw(st.one_of(st.just(0), st.integers(1, 90), st.integers(1, 60 * 24 * 3))) * M
        kind = draw(st.sampled_from(KINDS))
        if done and kind not in (
            EventType.REOPENED,
            EventType.CSAT_RECEIVED,
            EventType.CLOSED,
            EventType.CUSTOMER_REPLIED,
        ):
            kind = EventType.REOPENED
        fields: dict[str, Any] = {}
        if kind is EventType.STATUS_CHANGED:
            fields["status"] = draw(st.sampled_from([Status.PENDING, Status.ON_HOLD, Status.OPEN]))
        elif kind is EventType.TAGS_CHANGED:
            fields["tags_added"] = (draw(st.sampled_from(TAGS)),)
        elif kind is EventType.PRIORITY_CHANGED:
            fields["priority"] = draw(st.sampled_from(Priority))
        elif kind is EventType.ASSIGNED:
            fields["assignee_id"] = f"agent-{draw(st.integers(1, 3))}"
            fields["support_level"] = draw(st.integers(0, 4))
        elif kind is EventType.TRANSFERRED:
            fields["group"] = draw(st.sampled_from(["frontline", "tier2", "billing-team"]))
        elif kind is EventType.CSAT_RECEIVED:
            fields["csat"] = draw(st.integers(1, 5))
        if kind in (EventType.RESOLVED, EventType.CLOSED):
            done = True
        elif kind is EventType.REOPENED:
            done = False
        events.append(TicketEvent(f"{ticket_id}-{i}", ticket_id, kind, t, **fields))
    return events


def histories(tiers: Sequence[str], max_tickets: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.integers(1, max_tickets).flatmap(
        lambda n: st.tuples(*(ticket_events(f"T{i}", tiers) for i in range(n))).map(list)
    )


ALL_TIERS = ["standard", "premium", "vip", "enterprise"]
ROUND_THE_CLOCK = ["vip", "enterprise"]


def end_of(tickets: Sequence[Sequence[TicketEvent]]) -> int:
    return max(events[-1].occurred_at for events in tickets) + 45 * D


# ----------------------------------------------------------------------------- driving


@dataclass
class Run:
    state: TicketState
    per_event: list[list[Action]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


def run(engine: Engine, events: Sequence[TicketEvent], end: int) -> Run:
    state: TicketState | None = None
    per_event: list[list[Action]] = []
    for event in events:
        state, out = engine.apply(state, event)
        per_event.append(out)
    assert state is not None
    state, tail = engine.advance(state, end, event_time=True)
    return Run(state, per_event, [a for out in per_event for a in out] + tail)


def escalations(actions: Sequence[Action]) -> list[Escalation]:
    return [a for a in actions if isinstance(a, Escalation)]


def timeless(actions: Sequence[Action]) -> list[Action]:
    """Actions without fired_at (the engine's `now`, which depends on when it is asked)."""
    out: list[Action] = []
    for a in actions:
        if isinstance(a, Escalation | PriorityBump | Reminder):
            out.append(dataclasses.replace(a, fired_at=0))
        else:
            out.append(a)
    return out


# ----------------------------------------------------------------------------- oracle


@dataclass
class OClock:
    rule: str
    cycle: int
    started_at: int
    elapsed: int = 0
    since: int | None = None
    breached: bool = False


def implied_status(event: TicketEvent) -> Status | None:
    return {
        EventType.RESOLVED: Status.SOLVED,
        EventType.CLOSED: Status.CLOSED,
        EventType.REOPENED: Status.OPEN,
    }.get(event.type, event.status)


# The metrics the oracle re-derives. The update metrics the default policy sets for VIP and
# enterprise (periodic_update: never paused, a round per agent reply) have hand-computed
# cases in test_update_metrics.py instead.
ORACLE_METRICS = frozenset(("first_response", "next_response", "resolution"))


class Oracle:
    """SLA clocks re-derived from the events, per the engine's documented semantics."""

    def __init__(self, engine: Engine, created: TicketEvent) -> None:
        policy = engine.policy
        self.sla = policy.match(
            created.customer_tier,
            created.priority or Priority.NORMAL,
            created.channel,
            created.category,
            [],
        )
        self.calendar = policy.calendar(self.sla.calendar)
        self.pause = set(self.sla.pause_statuses)
        self.status = created.status or Status.NEW
        self.priority = created.priority or Priority.NORMAL
        self.cycle = 0
        self.next_round = 0
        self.clocks: dict[str, OClock] = {}
        self.breaches: set[tuple[str, int, int]] = set()
        self.status_log: list[tuple[int, Status]] = [(created.occurred_at, self.status)]
        self.start("first_response", "sla:first_response:breach", created.occurred_at)
        self.start("resolution", "sla:resolution:breach", created.occurred_at)

    def start(self, metric: str, rule: str, at: int) -> None:
        since = None if self.status in self.pause else at
        self.clocks[metric] = OClock(rule, self.cycle, at, since=since)

    def start_next_response(self, at: int) -> None:
        self.start("next_response", f"sla:next_response#{self.next_round}:breach", at)
        self.next_round += 1

    def accrue(self, at: int) -> None:
        for clock in self.clocks.values():
            if clock.since is not None:
                clock.elapsed += self.calendar.between(clock.since, at)
                clock.since = at

    def deadline(self, metric: str, clock: OClock) -> int | None:
        target = self.sla.targets.target(metric, self.priority)
        if clock.since is None or clock.breached or target is None:
            return None
        need = target - clock.elapsed
        return clock.since if need <= 0 else self.calendar.add(clock.since, need)

    def fire_until(self, at: int) -> None:
        for metric, clock in self.clocks.items():
            due = self.deadline(metric, clock)
            if due is not None and due <= at:
                self.breaches.add((clock.rule, clock.cycle, due))
                clock.breached = True

    def end(self, *metrics: str) -> None:
        for metric in metrics:
            self.clocks.pop(metric, None)

    def set_status(self, status: Status, at: int) -> None:
        self.accrue(at)
        self.status = status
        self.status_log.append((at, status))
        for clock in self.clocks.values():
            if status in self.pause:
                clock.since = None
            elif clock.since is None:
                clock.since = at

    def event(self, event: TicketEvent, actions: Sequence[Action]) -> None:
        t = event.occurred_at
        self.fire_until(t)
        if event.priority is not None and event.type is not EventType.CREATED:
            self.accrue(t)
            self.priority = event.priority
        status = implied_status(event)
        if event.type is EventType.REOPENED and self.status in DONE:
            self.cycle += 1
            self.status = Status.OPEN
            self.status_log.append((t, Status.OPEN))
            self.start("resolution", "sla:resolution:breach", t)
            self.start_next_response(t)
        elif status is not None and status != self.status:
            if status in DONE:
                self.end("first_response", "next_response", "resolution")
                self.status = status
                self.status_log.append((t, status))
            else:
                self.set_status(status, t)
        if event.type is EventType.AGENT_REPLIED:
            self.end("first_response", "next_response")
        elif (
            event.type is EventType.CUSTOMER_REPLIED
            and self.status not in DONE
            and "first_response" not in self.clocks
            and "next_response" not in self.clocks
        ):
            self.start_next_response(t)
        for action in actions:
            if isinstance(action, PriorityBump):
                self.accrue(t)
                self.priority = Priority(action.new_priority)

    def running_time(self, start: int, end: int) -> int:
        """Time in non-paused statuses within [start, end) (24x7 calendars only)."""
        total = 0
        log = [*self.status_log, (max(end, self.status_log[-1][0]), self.status)]
        for (since, status), (until, _) in zip(log, log[1:], strict=False):
            if status not in self.pause:
                total += max(0, min(until, end) - max(since, start))
        return total


def oracle_for(engine: Engine, events: Sequence[TicketEvent], result: Run, end: int) -> Oracle:
    oracle = Oracle(engine, events[0])
    for action in result.per_event[0]:
        if isinstance(action, PriorityBump):
            oracle.priority = Priority(action.new_priority)
    for event, actions in zip(events[1:], result.per_event[1:], strict=True):
        oracle.event(event, actions)
    oracle.fire_until(end)
    return oracle


# ----------------------------------------------------------------------------- properties


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS))
def test_breaches_fire_exactly_at_the_independent_deadline(
    which: str, tickets: list[list[TicketEvent]]
) -> None:
    engine = DEFAULT if which == "default" else OFFICE
    end = end_of(tickets)
    for events in tickets:
        result = run(engine, events, end)
        oracle = oracle_for(engine, events, result, end)
        fired = {
            (e.rule, e.cycle, e.due_at)
            for e in escalations(result.actions)
            if e.rule.endswith(":breach") and e.sla_metric in ORACLE_METRICS
        }
        assert fired == oracle.breaches
        for e in escalations(result.actions):
            assert e.fired_at >= e.due_at


@FAST
@given(histories(ROUND_THE_CLOCK))
def test_paused_time_never_counts(tickets: list[list[TicketEvent]]) -> None:
    end = end_of(tickets)
    for events in tickets:
        result = run(DEFAULT, events, end)
        oracle = oracle_for(DEFAULT, events, result, end)
        assert oracle.calendar.is_always_open
        for outcome in result.actions:
            if isinstance(outcome, SlaOutcome) and outcome.metric in ORACLE_METRICS:
                expected = oracle.running_time(outcome.started_at, outcome.ended_at)
                assert outcome.business_elapsed == expected, outcome


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS, max_tickets=4))
def test_at_most_one_escalation_per_ticket_rule_level_cycle(
    which: str, tickets: list[list[TicketEvent]]
) -> None:
    engine = DEFAULT if which == "default" else OFFICE
    end = end_of(tickets)
    all_escalations: list[Escalation] = []
    reminders: list[Reminder] = []
    for events in tickets:
        actions = run(engine, events, end).actions
        all_escalations.extend(escalations(actions))
        reminders.extend(a for a in actions if isinstance(a, Reminder))
    ids = [e.escalation_id for e in all_escalations]
    assert len(ids) == len(set(ids))
    keys = [(e.ticket_id, e.rule, e.level, e.cycle) for e in all_escalations]
    assert len(keys) == len(set(keys))
    assert len({r.reminder_id for r in reminders}) == len(reminders)


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS, max_tickets=4), st.data())
def test_interleaving_and_redelivery_do_not_change_escalations(
    which: str, tickets: list[list[TicketEvent]], data: st.DataObject
) -> None:
    engine = DEFAULT if which == "default" else OFFICE
    end = end_of(tickets)
    expected = {
        events[0].ticket_id: timeless(run(engine, events, end).actions) for events in tickets
    }

    # Interleave the tickets (each keeps its own order), then redeliver some events: right
    # away or later, after other events of the same ticket.
    labels = [i for i, events in enumerate(tickets) for _ in events]
    order = data.draw(st.permutations(labels), label="order")
    cursor = [0] * len(tickets)
    delivery: list[TicketEvent] = []
    for i in order:
        delivery.append(tickets[i][cursor[i]])
        cursor[i] += 1
    for _ in range(data.draw(st.integers(0, 6), label="redeliveries")):
        source = data.draw(st.integers(0, len(delivery) - 1))
        target = data.draw(st.integers(source + 1, len(delivery)))
        delivery.insert(target, delivery[source])

    states: dict[str, TicketState] = {}
    got: dict[str, list[Action]] = {tid: [] for tid in expected}
    for event in delivery:
        state, out = engine.apply(states.get(event.ticket_id), event)
        states[event.ticket_id] = state
        got[event.ticket_id].extend(out)
    for tid, state in states.items():
        _, out = engine.advance(state, end, event_time=True)
        got[tid].extend(out)
    assert {tid: timeless(actions) for tid, actions in got.items()} == expected
    ids = {e.escalation_id for actions in got.values() for e in escalations(actions)}
    assert ids == {e.escalation_id for a in expected.values() for e in escalations(a)}


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS, max_tickets=2), st.data())
def test_advancing_at_intermediate_times_changes_nothing(
    which: str, tickets: list[list[TicketEvent]], data: st.DataObject
) -> None:
    engine = DEFAULT if which == "default" else OFFICE
    end = end_of(tickets)
    for events in tickets:
        baseline = run(engine, events, end)
        state: TicketState | None = None
        actions: list[Action] = []
        bounds = [e.occurred_at for e in events] + [end]
        for event, until in zip(events, bounds[1:], strict=True):
            state, out = engine.apply(state, event)
            actions.extend(out)
            ticks = data.draw(
                st.lists(st.integers(event.occurred_at, until), max_size=4).map(sorted)
            )
            for now in ticks:
                state, out = engine.advance(state, now, event_time=True)
                actions.extend(out)
        assert state is not None
        state, out = engine.advance(state, end, event_time=True)
        actions.extend(out)
        assert actions == baseline.actions  # fired_at included: each at its due instant
        assert state.to_dict() == baseline.state.to_dict()


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS, max_tickets=1), st.data())
def test_serializing_state_mid_life_changes_nothing(
    which: str, tickets: list[list[TicketEvent]], data: st.DataObject
) -> None:
    import json

    engine = DEFAULT if which == "default" else OFFICE
    [events] = tickets
    end = end_of(tickets)
    baseline = run(engine, events, end)
    cut = data.draw(st.integers(1, len(events)))
    as_row = data.draw(st.booleans())  # the changelog's row form, or the dict form

    def round_trip(state: TicketState) -> TicketState:
        if as_row:
            return TicketState.from_row(json.loads(json.dumps(state.to_row())))
        return TicketState.from_dict(json.loads(json.dumps(state.to_dict())))

    state: TicketState | None = None
    actions: list[Action] = []
    for index, event in enumerate(events):
        if index == cut and state is not None:
            state = round_trip(state)
        state, out = engine.apply(state, event)
        actions.extend(out)
    assert state is not None
    state = round_trip(state)
    state, out = engine.advance(state, end, event_time=True)
    actions.extend(out)
    assert actions == baseline.actions


# ----------------------------------------------------------------------------- time (issue 17)


def _deadline_raises(actions: Sequence[Action]) -> dict[tuple[str, int], list[int]]:
    """Levels reached by deadlines (breaches and climbs), per ticket and firing instant."""
    raised: dict[tuple[str, int], list[int]] = {}
    for e in escalations(actions):
        if e.level > e.from_level and e.rule.startswith(("sla:", "matrix:")):
            raised.setdefault((e.ticket_id, e.fired_at), []).append(e.level)
    return raised


def _time_based(actions: Sequence[Action]) -> list[Escalation | Reminder]:
    return [
        a
        for a in actions
        if isinstance(a, Escalation | Reminder) and getattr(a, "event_id", None) is None
    ]


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS), st.data())
def test_in_a_backtest_every_deadline_fires_at_its_due_instant(
    which: str, tickets: list[list[TicketEvent]], data: st.DataObject
) -> None:
    from streams.tools.backtest import EventTimeDriver

    engine = DEFAULT if which == "default" else OFFICE
    events = sorted((e for events in tickets for e in events), key=lambda e: e.occurred_at)
    driver = EventTimeDriver(engine)
    actions = [a for event in events for a in driver.feed(event)]
    actions += driver.advance(end_of(tickets))
    timed = _time_based(actions)
    assert all(a.fired_at == a.due_at for a in timed)
    fired = [a.fired_at for a in actions if isinstance(a, Escalation | Reminder)]
    assert fired == sorted(fired), "in the order a perfect clock would have fired them"


@FAST
@given(st.sampled_from(["default", "office"]), histories(ALL_TIERS, max_tickets=2), st.data())
def test_one_late_event_never_fires_two_levels_of_a_ticket_at_one_instant(
    which: str, tickets: list[list[TicketEvent]], data: st.DataObject
) -> None:
    from streams.tools.backtest import EventTimeDriver

    engine = DEFAULT if which == "default" else OFFICE
    events = sorted((e for events in tickets for e in events), key=lambda e: e.occurred_at)
    late = data.draw(st.integers(0, len(events) - 1), label="late event")
    arrival = events[:late] + events[late + 1 :] + [events[late]]
    driver = EventTimeDriver(engine, arrival_order=True)
    actions = [a for event in arrival for a in driver.feed(event)]
    actions += driver.advance(end_of(tickets))
    for (ticket, at), levels in _deadline_raises(actions).items():
        assert len(levels) == 1, f"{ticket} raised to {levels} at {at}"
    # a wall-clock worker back after downtime: ticks at arbitrary instants
    for events_of_one in tickets:
        state: TicketState | None = None
        out: list[Action] = []
        for event in events_of_one:
            state, more = engine.apply(state, event, now=event.occurred_at)
            out += more
        assert state is not None
        for now in sorted(data.draw(st.lists(st.integers(0, 40 * D), max_size=3))):
            state, more = engine.advance(state, events_of_one[-1].occurred_at + now)
            out += more
        for (ticket, at), levels in _deadline_raises(out).items():
            assert len(levels) == 1, f"{ticket} raised to {levels} at {at} by a wall clock"


def test_a_reply_between_two_deadlines_of_one_instant_does_not_let_the_second_raise_again() -> None:
    """Found by the property above: a first-response breach raises to 2, an agent reply at
    the same instant stops the climb, and a bump makes resolution overdue at that instant."""
    t0 = 1_772_431_200_000
    events = [
        TicketEvent(
            "T0-0",
            "T0",
            EventType.CREATED,
            t0,
            status=Status.NEW,
            priority=Priority.LOW,
            channel="phone",
            category="billing",
            customer_tier="standard",
        ),  # fmt: skip
        TicketEvent("T0-1", "T0", EventType.AGENT_REPLIED, t0 + 5 * H),
        TicketEvent("T0-2", "T0", EventType.TAGS_CHANGED, t0 + 5 * H, tags_added=("churn_risk",)),
    ]
    state: TicketState | None = None
    out: list[Action] = []
    for event in events:
        state, more = OFFICE.apply(state, event, now=event.occurred_at)
        out += more
    raised = _deadline_raises(out)
    assert raised and all(len(levels) == 1 for levels in raised.values()), raised
