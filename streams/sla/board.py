"""What the live escalation board shows: each ticket's open escalation, as a pure function.

The Redis sink (connectors/sinks/redis_board.py) and the tests derive the board from this module, so
"the open escalations at the end of a history" has one definition, the same live and offline.

The escalations and priority-bumps topics do not say when a ticket is resolved, so the board
also reads the lifecycle from ticket-events. The three topics arrive in no particular order
relative to each other (and again on a replay), so a ticket's inputs are kept as grow-only
sets and maxima, which merge commutatively and idempotently:

- escalations by escalation_id, priority bumps by escalation_id;
- `closed_at`: the latest event time of a closing event (RESOLVED, CLOSED, or any event whose
  status is SOLVED or CLOSED); `open_at`: the latest event time of an event carrying a work
  status (REOPENED, or a status of NEW, OPEN, PENDING, ON_HOLD); `answered_at`: the latest
  AGENT_REPLIED.

From those inputs (`TicketInputs.entry`):

- the ticket is closed while `closed_at >= open_at`: the latest status in event time wins, as
  in the engine (which applies a status unless it is older than the current one);
- an escalation is open when the ticket is not closed and it was due after the latest close
  (`due_at > closed_at`; one due exactly at the close fired before the close was applied);
- an SLA warning (reason SLA_WARNING) is a heads-up to the ticket's current owner, not a
  raise: it is never an open escalation and never shows at a level. A ticket's open warnings
  (same rule as escalations) give its warning entry (`TicketInputs.warning`), shown apart;
- the board entry is the latest open escalation by (due_at, level, escalation_id), with the
  number of open escalations and the highest priority a bump of an open escalation set;
- `climbs_at` is when the open escalation climbs to the next matrix level if nobody answers:
  the latest open escalation that raised the level (HIERARCHICAL or AUTOMATIC, level above
  from_level), from when it fired, plus its level's allowed time on the level's calendar,
  unless an agent replied at or after it or the level is the top. That is the engine's own
  climb deadline (but for time the ticket then spent in a pause status, which the board
  cannot see: the engine's climb stands still then), so it is the next escalation the board
  can predict, and what "closest to breach" is ordered by.

So the board converges to the same content whatever order the records are read in, and
reading a record twice changes nothing.

The live worker keeps each ticket's inputs in its state (`TicketInputs` in
`TicketState.board`) and calls `follow` with each event and the actions it caused: when what
the board shows of the ticket changed (`BoardView`), or something new goes on its "latest
events" feed (`News`), it publishes a `BoardRecord` on the compacted ticket-board topic, which
the Redis sink projects as it is. The worker sees a ticket's inputs in order, so it can drop
escalations the ticket's latest close already ended for good (`TicketInputs.prune`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from streams.sla.actions import RAISING_KINDS, Action, Escalation, PriorityBump, Reason
from streams.sla.events import (
    DONE_STATUSES,
    IMPLIED_STATUS,
    PRIORITY_RANK,
    EventType,
    Priority,
    TicketEvent,
)
from streams.sla.frozen import fast_constructor, field_values
from streams.sla.policy import Policy


@dataclass(frozen=True, slots=True)
class Fired:
    """The part of an Escalation record the board needs."""

    escalation_id: str
    ticket_id: str
    kind: str
    level: int
    from_level: int
    target: str
    reason: str
    rule: str
    due_at: int
    fired_at: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Fired:
        """From an Avro Escalation dict or `Escalation.to_dict()`."""
        return cls(
            escalation_id=record["escalation_id"],
            ticket_id=record["ticket_id"],
            kind=str(record["kind"]),
            level=int(record["level"]),
            from_level=int(record["from_level"]),
            target=record["target"],
            reason=str(record["reason"]),
            rule=record["rule"],
            due_at=int(record["due_at"]),
            fired_at=int(record["fired_at"]),
        )

    @classmethod
    def from_action(cls, action: Escalation) -> Fired:
        return _new_fired(
            action.escalation_id, action.ticket_id, str(action.kind), action.level,
            action.from_level, action.target, str(action.reason), action.rule, action.due_at,
            action.fired_at,
        )  # fmt: skip

    def news(self) -> News:
        """Its line on the feed."""
        return News(
            "warning" if self.warning else "escalation", self.ticket_id, self.escalation_id,
            self.fired_at, kind=self.kind, level=self.level, from_level=self.from_level,
            target=self.target, reason=self.reason, rule=self.rule, due_at=self.due_at,
            fired_at=self.fired_at,
        )  # fmt: skip

    def order(self) -> tuple[int, int, str]:
        """Which of a ticket's escalations is the latest."""
        return self.due_at, self.level, self.escalation_id

    @property
    def raises(self) -> bool:
        return self.kind in RAISING_KINDS and self.level > self.from_level

    @property
    def warning(self) -> bool:
        """An SLA warning: a heads-up to the current owner, not an escalation."""
        return self.reason == Reason.SLA_WARNING


@dataclass(slots=True)
class Lifecycle:
    """The latest closing, reopening and agent-reply instants of a ticket (event time)."""

    closed_at: int | None = None
    open_at: int | None = None
    answered_at: int | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None and (
            self.open_at is None or self.closed_at >= self.open_at
        )

    def observe(self, event: TicketEvent) -> bool:
        """Take what `event` says about the lifecycle; True if anything moved."""
        t = event.occurred_at
        changed = False
        kind = event.type
        status = _IMPLIED(kind) or event.status
        if status is not None:
            if status in DONE_STATUSES:
                if self.closed_at is None or t > self.closed_at:
                    self.closed_at, changed = t, True
            elif self.open_at is None or t > self.open_at:
                self.open_at, changed = t, True
        if kind is _REPLIED and (self.answered_at is None or t > self.answered_at):
            self.answered_at, changed = t, True
        return changed

    def merge(self, other: Lifecycle) -> bool:
        """The maxima of both; True if this one moved."""
        before = (self.closed_at, self.open_at, self.answered_at)
        self.closed_at = _max(self.closed_at, other.closed_at)
        self.open_at = _max(self.open_at, other.open_at)
        self.answered_at = _max(self.answered_at, other.answered_at)
        return before != (self.closed_at, self.open_at, self.answered_at)


_IMPLIED = IMPLIED_STATUS.get  # an event's status: the one its type implies, or its own
_REPLIED = EventType.AGENT_REPLIED


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass(frozen=True, slots=True)
class BoardEntry:
    """A ticket on the board: its latest open escalation and what is known around it."""

    ticket_id: str
    escalation_id: str
    kind: str
    level: int
    target: str
    reason: str
    rule: str
    due_at: int
    fired_at: int
    open_escalations: int
    priority: str | None
    climbs_at: int | None

    def __reduce__(self) -> tuple[type[BoardEntry], tuple[Any, ...]]:
        return BoardEntry, field_values(self)


@dataclass(frozen=True, slots=True)
class WarningEntry:
    """A ticket's latest open SLA warning: who was warned, about which clock, when."""

    ticket_id: str
    escalation_id: str
    target: str  # the current owner the heads-up went to
    rule: str  # e.g. sla:first_response:warn75
    due_at: int
    fired_at: int
    open_warnings: int

    def __reduce__(self) -> tuple[type[WarningEntry], tuple[Any, ...]]:
        return WarningEntry, field_values(self)


Shown = TypeVar("Shown", BoardEntry, WarningEntry)


def clockless(entries: Mapping[str, Shown]) -> dict[str, Shown]:
    """A board without fired_at, the one field a live run and a backtest may differ in: it is
    the clock of whoever fired the escalation (a live worker fires on its partition's clock,
    the backtest on the whole history's)."""
    return {ticket_id: replace(entry, fired_at=0) for ticket_id, entry in entries.items()}


@dataclass(frozen=True, slots=True)
class News:
    """One line of the board's "latest events" feed, at event time `at` (fired_at, or the
    closing event's time): an escalation, an SLA warning, a priority bump, or a ticket that
    left the board resolved. The fields a type does not have are None."""

    type: str  # escalation, warning, priority_bump, resolved
    ticket_id: str
    escalation_id: str
    at: int
    kind: str | None = None
    level: int | None = None
    from_level: int | None = None
    target: str | None = None
    reason: str | None = None
    rule: str | None = None
    due_at: int | None = None
    fired_at: int | None = None
    old_priority: str | None = None
    new_priority: str | None = None


@dataclass(frozen=True, slots=True)
class BoardView:
    """What the board shows of one ticket: its entry (None: not on the board), its SLA
    warning (shown apart), and whether it is resolved."""

    ticket_id: str
    resolved: bool
    entry: BoardEntry | None
    warning: WarningEntry | None


@dataclass(frozen=True, slots=True)
class Bumped:
    """A priority bump as the feed shows it."""

    escalation_id: str
    old_priority: str
    new_priority: str
    reason: str
    fired_at: int


@dataclass(frozen=True, slots=True)
class Left:
    """The entry that left the board when the ticket closed, and the close's event time."""

    escalation_id: str
    at: int


@dataclass(frozen=True, slots=True)
class BoardRecord:
    """A ticket-board record: the ticket's view after a change, and what the change adds to
    the feed: escalations and warnings fired, bumps, the entry that left resolved."""

    view: BoardView
    fired: tuple[Fired, ...] = ()
    bumps: tuple[Bumped, ...] = ()
    left: Left | None = None

    def news(self) -> list[News]:
        """The feed lines of this change, in that order."""
        ticket_id = self.view.ticket_id
        lines = [f.news() for f in self.fired]
        lines += [
            News("priority_bump", ticket_id, b.escalation_id, b.fired_at, reason=b.reason,
                 fired_at=b.fired_at, old_priority=b.old_priority, new_priority=b.new_priority)
            for b in self.bumps
        ]  # fmt: skip
        if self.left is not None:
            lines.append(News("resolved", ticket_id, self.left.escalation_id, self.left.at))
        return lines


@dataclass(slots=True)
class TicketInputs:
    """Everything the board knows about one ticket; merging the same input twice is a no-op."""

    ticket_id: str
    escalations: dict[str, Fired] = field(default_factory=dict)
    bumps: dict[str, str] = field(default_factory=dict)  # escalation_id -> new priority
    life: Lifecycle = field(default_factory=Lifecycle)
    published: bool = False  # the worker has published a ticket-board record of it
    # What the last `follow` found it shows (not stored: recomputed once after a restore)
    shown: BoardView | None = field(default=None, compare=False)
    # to_row's escalation rows, kept while the escalations stay as they are: the state is
    # written on every event, the escalations change on about one in four
    fired_rows: list[list[Any]] | None = field(default=None, compare=False, repr=False)

    def to_row(self) -> list[Any]:
        """JSON-ready, for the worker's ticket state, which it makes larger on every write:
        only the lifecycle until the ticket is on the board, no ticket id (the state's), an
        escalation's kind and reason as their number in _CODED, its fired_at from its due_at
        (the same instant, but for a late tick)."""
        life = self.life
        if not (self.published or self.escalations or self.bumps):
            return [life.closed_at, life.open_at, life.answered_at]
        fired = self.fired_rows
        if fired is None:
            code = _CODE.get
            fired = self.fired_rows = [
                [f.escalation_id, code(f.kind, f.kind), f.level, f.from_level, f.target,
                 code(f.reason, f.reason), f.rule, f.due_at, f.fired_at - f.due_at]
                for f in self.escalations.values()
            ]  # fmt: skip
        return [life.closed_at, life.open_at, life.answered_at, self.published, fired, self.bumps]

    @classmethod
    def from_row(cls, ticket_id: str, row: list[Any]) -> TicketInputs:
        life = Lifecycle(row[0], row[1], row[2])
        if len(row) == 3:
            return cls(ticket_id, life=life)
        escalations = {
            r[0]: _new_fired(
                r[0],
                ticket_id,
                _CODED[r[1]] if type(r[1]) is int else r[1],
                r[2],
                r[3],
                r[4],
                _CODED[r[5]] if type(r[5]) is int else r[5],
                r[6],
                r[7],
                r[7] + r[8],
            )  # fmt: skip
            for r in row[4]
        }
        return cls(ticket_id, escalations, dict(row[5]), life, row[3])

    def prune(self) -> None:
        """Forget the escalations (and their bumps) due at or before the latest close: the
        close ended them for good (`closed_at` only grows), so the board never shows them
        again, and a ticket's inputs stay as small as its current cycle."""
        since = self.life.closed_at
        if since is None:
            return
        ended = [i for i, e in self.escalations.items() if e.due_at <= since]
        if ended:
            self.fired_rows = None
        for escalation_id in ended:
            del self.escalations[escalation_id]
            self.bumps.pop(escalation_id, None)

    def add_escalation(self, fired: Fired) -> bool:
        """True if the escalation is new."""
        if fired.escalation_id in self.escalations:
            return False
        self.escalations[fired.escalation_id] = fired
        self.fired_rows = None
        return True

    def add_bump(self, escalation_id: str, new_priority: str) -> bool:
        """True if the bump is new (one bump per escalation)."""
        if escalation_id in self.bumps:
            return False
        self.bumps[escalation_id] = new_priority
        return True

    def _scan(self, policy: Policy | None) -> tuple[BoardEntry | None, WarningEntry | None]:
        """The entry (None without `policy`) and the warning entry, in one pass over the
        escalations: the open ones are those after the latest close of an open ticket."""
        life = self.life
        if life.closed:
            return None, None
        since = life.closed_at
        bumps = self.bumps
        latest = raised = warned = None
        latest_at = raised_at = warned_at = _NEVER
        escalations = warnings = 0
        rank = -1
        priority = None
        for e in self.escalations.values():
            due = e.due_at
            if since is not None and due <= since:
                continue
            at = (due, e.level, e.escalation_id)  # Fired.order
            if e.reason == _SLA_WARNING:
                warnings += 1
                if at > warned_at:
                    warned, warned_at = e, at
                continue
            escalations += 1
            if at > latest_at:
                latest, latest_at = e, at
            if e.kind in _RAISING and e.level > e.from_level and at > raised_at:
                raised, raised_at = e, at
            if bumps:
                bumped = bumps.get(e.escalation_id)
                if bumped is not None and PRIORITY_RANK[Priority(bumped)] > rank:
                    rank, priority = PRIORITY_RANK[Priority(bumped)], bumped
        entry = None
        if latest is not None and policy is not None:
            climbs_at = None
            if raised is not None and (
                life.answered_at is None or life.answered_at < raised.due_at
            ):
                climbs_at = climb_due(policy, raised.level, raised.fired_at)
            entry = _new_entry(
                self.ticket_id, latest.escalation_id, latest.kind, latest.level, latest.target,
                latest.reason, latest.rule, latest.due_at, latest.fired_at, escalations,
                priority, climbs_at,
            )  # fmt: skip
        warning = None
        if warned is not None:
            warning = _new_warning(
                self.ticket_id, warned.escalation_id, warned.target, warned.rule,
                warned.due_at, warned.fired_at, warnings,
            )  # fmt: skip
        return entry, warning

    def view(self, policy: Policy) -> BoardView:
        entry, warning = self._scan(policy)
        return _new_view(self.ticket_id, self.life.closed, entry, warning)

    def warning(self) -> WarningEntry | None:
        """The ticket's latest open SLA warning, or None."""
        return self._scan(None)[1]

    def entry(self, policy: Policy) -> BoardEntry | None:
        """The ticket's board entry, or None when it has no open escalation (warnings are
        not escalations)."""
        return self._scan(policy)[0]


_SLA_WARNING = str(Reason.SLA_WARNING)
# Escalation kinds and reasons by their number in a stored row (TicketInputs.to_row): only
# ever appended to, a number is in changelogs; a kind or reason not here is stored as is.
_CODED: Final = (
    "HIERARCHICAL", "FUNCTIONAL", "PRIORITY", "AUTOMATIC", "EXECUTIVE", "SLA_WARNING",
    "FIRST_RESPONSE_BREACH", "NEXT_RESPONSE_BREACH", "RESOLUTION_BREACH",
    "PERIODIC_UPDATE_BREACH", "PAUSABLE_UPDATE_BREACH", "REQUESTER_WAIT_BREACH",
    "AGENT_WORK_BREACH", "CHURN_RISK", "SYSTEM_CRASH", "LEGAL_THREAT", "CANCELLATION_THREAT",
    "REFUND_REQUEST", "PRIVACY_CONCERN", "SUPERVISOR_REQUEST", "PENDING_TOO_LONG",
    "TOO_MANY_TRANSFERS", "REOPENED", "ESCALATION_OVERDUE", "LOW_CSAT", "SPECIALIST_REQUIRED",
    "PRIORITY_RULE",
)  # fmt: skip
_CODE: Final = {name: number for number, name in enumerate(_CODED)}
_RAISING = frozenset(str(k) for k in RAISING_KINDS)  # Fired.raises
_NEVER: tuple[int, int, str] = (-(2**63) - 1, 0, "")  # before any Fired.order


def _build_fired(
    escalation_id: str,
    ticket_id: str,
    kind: str,
    level: int,
    from_level: int,
    target: str,
    reason: str,
    rule: str,
    due_at: int,
    fired_at: int,
) -> Fired:
    """Fired's constructor in the compiled build (streams.sla.frozen: `native`)."""
    r = Fired.__new__(Fired)
    r.escalation_id = escalation_id  # type: ignore[misc]
    r.ticket_id = ticket_id  # type: ignore[misc]
    r.kind = kind  # type: ignore[misc]
    r.level = level  # type: ignore[misc]
    r.from_level = from_level  # type: ignore[misc]
    r.target = target  # type: ignore[misc]
    r.reason = reason  # type: ignore[misc]
    r.rule = rule  # type: ignore[misc]
    r.due_at = due_at  # type: ignore[misc]
    r.fired_at = fired_at  # type: ignore[misc]
    return r


def _build_entry(
    ticket_id: str,
    escalation_id: str,
    kind: str,
    level: int,
    target: str,
    reason: str,
    rule: str,
    due_at: int,
    fired_at: int,
    open_escalations: int,
    priority: str | None,
    climbs_at: int | None,
) -> BoardEntry:
    """BoardEntry's constructor in the compiled build (streams.sla.frozen: `native`)."""
    r = BoardEntry.__new__(BoardEntry)
    r.ticket_id = ticket_id  # type: ignore[misc]
    r.escalation_id = escalation_id  # type: ignore[misc]
    r.kind = kind  # type: ignore[misc]
    r.level = level  # type: ignore[misc]
    r.target = target  # type: ignore[misc]
    r.reason = reason  # type: ignore[misc]
    r.rule = rule  # type: ignore[misc]
    r.due_at = due_at  # type: ignore[misc]
    r.fired_at = fired_at  # type: ignore[misc]
    r.open_escalations = open_escalations  # type: ignore[misc]
    r.priority = priority  # type: ignore[misc]
    r.climbs_at = climbs_at  # type: ignore[misc]
    return r


def _build_warning(
    ticket_id: str,
    escalation_id: str,
    target: str,
    rule: str,
    due_at: int,
    fired_at: int,
    open_warnings: int,
) -> WarningEntry:
    """WarningEntry's constructor in the compiled build (streams.sla.frozen: `native`)."""
    r = WarningEntry.__new__(WarningEntry)
    r.ticket_id = ticket_id  # type: ignore[misc]
    r.escalation_id = escalation_id  # type: ignore[misc]
    r.target = target  # type: ignore[misc]
    r.rule = rule  # type: ignore[misc]
    r.due_at = due_at  # type: ignore[misc]
    r.fired_at = fired_at  # type: ignore[misc]
    r.open_warnings = open_warnings  # type: ignore[misc]
    return r


def _build_view(
    ticket_id: str,
    resolved: bool,
    entry: BoardEntry | None,
    warning: WarningEntry | None,
) -> BoardView:
    """BoardView's constructor in the compiled build (streams.sla.frozen: `native`)."""
    r = BoardView.__new__(BoardView)
    r.ticket_id = ticket_id  # type: ignore[misc]
    r.resolved = resolved  # type: ignore[misc]
    r.entry = entry  # type: ignore[misc]
    r.warning = warning  # type: ignore[misc]
    return r


def _build_record(
    view: BoardView,
    fired: tuple[Fired, ...] = (),
    bumps: tuple[Bumped, ...] = (),
    left: Left | None = None,
) -> BoardRecord:
    """BoardRecord's constructor in the compiled build (streams.sla.frozen: `native`)."""
    r = BoardRecord.__new__(BoardRecord)
    r.view = view  # type: ignore[misc]
    r.fired = fired  # type: ignore[misc]
    r.bumps = bumps  # type: ignore[misc]
    r.left = left  # type: ignore[misc]
    return r


# The worker builds these for about every third event: at the cost of mutable records
# (streams.sla.frozen), not of frozen dataclasses' __init__; compiled, by the builders above
# (Bumped and Left are rare).
_new_fired = fast_constructor(Fired, _build_fired)
_new_entry = fast_constructor(BoardEntry, _build_entry)
_new_warning = fast_constructor(WarningEntry, _build_warning)
_new_view = fast_constructor(BoardView, _build_view)
_new_bumped = fast_constructor(Bumped)
_new_left = fast_constructor(Left)
_new_record = fast_constructor(BoardRecord, _build_record)


def follow(
    inputs: TicketInputs | None,
    ticket_id: str,
    event: TicketEvent | None,
    actions: Sequence[Action],
    policy: Policy,
) -> tuple[TicketInputs, BoardRecord | None]:
    """A ticket's board inputs after `event` (None: a clock tick) and the actions the engine
    took on it, and the ticket-board record to publish: None unless what the board shows
    changed or the feed gets a line. A ticket gets no record before its first escalation,
    warning or bump; `inputs` is updated in place."""
    if inputs is None:
        inputs = TicketInputs(ticket_id)
    life = inputs.life
    closed_at, open_at, answered_at = life.closed_at, life.open_at, life.answered_at
    moved = event is not None and life.observe(event)
    published = inputs.published
    if not actions and not (moved and published):
        return inputs, None  # most calls: nothing the board could show moved
    fired: list[Fired] = []
    bumps: list[Bumped] = []
    for action in actions:
        if isinstance(action, Escalation):
            if action.escalation_id not in inputs.escalations:
                fired.append(Fired.from_action(action))
        elif isinstance(action, PriorityBump) and action.escalation_id not in inputs.bumps:
            bump = _new_bumped(action.escalation_id, action.old_priority, action.new_priority,
                               str(action.reason), action.fired_at)  # fmt: skip
            bumps.append(bump)
    before = inputs.shown
    if not fired and not bumps:
        if not (moved and published):
            return inputs, None
        if before is not None and not _shows(closed_at, open_at, answered_at, life, before):
            return inputs, None
    if before is None and published:
        inputs.life = Lifecycle(closed_at, open_at, answered_at)
        before = inputs.view(policy)
        inputs.life = life
    if fired:
        escalations = inputs.escalations
        for f in fired:
            escalations[f.escalation_id] = f
        inputs.fired_rows = None
    for bump in bumps:
        inputs.bumps[bump.escalation_id] = bump.new_priority
    after = inputs.shown = inputs.view(policy)
    left = None
    if before is not None and before.entry is not None and after.entry is None:
        # left the board: closed (the only way out once on it)
        left = _new_left(before.entry.escalation_id, life.closed_at or 0)
    if life.closed_at is not None:
        inputs.prune()
    if not fired and not bumps and after == before:
        return inputs, None
    inputs.published = True
    return inputs, _new_record(after, tuple(fired), tuple(bumps), left)


def _shows(
    closed_at: int | None,
    open_at: int | None,
    answered_at: int | None,
    after: Lifecycle,
    shown: BoardView,
) -> bool:
    """Whether a lifecycle move (from the instants before it to `after`) can change what the
    board shows: whether the ticket is closed, its latest close (which escalations it
    ended), or an agent reply to a ticket that would climb (a reply only stops climbs). A
    later reopening of an open ticket, the most common move, changes nothing."""
    closed = closed_at is not None and (open_at is None or closed_at >= open_at)
    if closed != after.closed or closed_at != after.closed_at:
        return True
    entry = shown.entry
    return answered_at != after.answered_at and entry is not None and entry.climbs_at is not None


def climb_due(policy: Policy, level: int, since: int) -> int | None:
    """When an escalation at `level`, unanswered since `since`, climbs to the next level."""
    climb = policy.climb(level)
    return None if climb is None else climb[1].add(since, climb[0])


@dataclass
class BoardBuilder:
    """Builds the board from actions and events in memory: the offline twin of the sink."""

    tickets: dict[str, TicketInputs] = field(default_factory=dict)

    def inputs(self, ticket_id: str) -> TicketInputs:
        found = self.tickets.get(ticket_id)
        if found is None:
            found = self.tickets[ticket_id] = TicketInputs(ticket_id)
        return found

    def escalation(self, fired: Fired) -> bool:
        return self.inputs(fired.ticket_id).add_escalation(fired)

    def action(self, action: Action) -> None:
        """An engine action: escalations and priority bumps count, the rest does not."""
        if isinstance(action, Escalation):
            self.escalation(Fired.from_record(action.to_dict()))
        elif isinstance(action, PriorityBump):
            self.bump(action.ticket_id, action.escalation_id, action.new_priority)

    def bump(self, ticket_id: str, escalation_id: str, new_priority: str) -> bool:
        return self.inputs(ticket_id).add_bump(escalation_id, new_priority)

    def event(self, event: TicketEvent) -> bool:
        return self.inputs(event.ticket_id).life.observe(event)

    def entries(self, policy: Policy) -> dict[str, BoardEntry]:
        out: dict[str, BoardEntry] = {}
        for ticket_id, inputs in self.tickets.items():
            entry = inputs.entry(policy)
            if entry is not None:
                out[ticket_id] = entry
        return out

    def warnings(self) -> dict[str, WarningEntry]:
        """The tickets with an open SLA warning, shown apart from the escalations."""
        out: dict[str, WarningEntry] = {}
        for ticket_id, inputs in self.tickets.items():
            warning = inputs.warning()
            if warning is not None:
                out[ticket_id] = warning
        return out
