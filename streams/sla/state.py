"""Per-ticket SLA state: small, and serializable to JSON so it can live in a Faust table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

from streams.sla.board import TicketInputs
from streams.sla.events import PRIORITY_OF, STATUS_OF, Priority, Status

SEEN_WINDOW: Final = 256  # recent event ids a ticket remembers, to drop redeliveries
MAX_TICKET_TAGS: Final = 256  # tags a ticket keeps; more would grow its state without bound
_NOTHING_FIRED: Final[frozenset[str]] = frozenset()
_E = TypeVar("_E")

# Both records write their own __init__ (init=False), with the signature dataclasses would
# generate: compiled with mypyc (pyproject's compiled-modules) it is native code, where the
# generated one stays interpreted and costs several times the whole compiled constructor.
# tests/streams/sla/test_state.py checks that the two signatures agree.


@dataclass(slots=True, init=False)
class Clock:
    """One SLA metric's clock in one round (next_response has a round per customer reply).

    Business time is accrued into `elapsed` whenever the clock stops running, so
    pauses never count and a policy change can swap the calendar mid-way.
    """

    metric: str
    round: int
    started_at: int
    elapsed: int = 0
    running_since: int | None = None
    target: int | None = None
    last_fraction: float = 0.0
    next_at: int | None = None
    breached_at: int | None = None
    ended_at: int | None = None
    met: bool = False
    resets: int = 0  # times the policy's `reset` condition restarted it (new rule ids)
    held: bool = False  # stopped by the policy's `pause` condition until its `resume` holds

    def __init__(
        self, metric: str, round: int, started_at: int, elapsed: int = 0,
        running_since: int | None = None, target: int | None = None,
        last_fraction: float = 0.0, next_at: int | None = None,
        breached_at: int | None = None, ended_at: int | None = None, met: bool = False,
        resets: int = 0, held: bool = False,
    ) -> None:  # fmt: skip
        self.metric = metric
        self.round = round
        self.started_at = started_at
        self.elapsed = elapsed
        self.running_since = running_since
        self.target = target
        self.last_fraction = last_fraction
        self.next_at = next_at
        self.breached_at = breached_at
        self.ended_at = ended_at
        self.met = met
        self.resets = resets
        self.held = held

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "round": self.round,
            "started_at": self.started_at,
            "elapsed": self.elapsed,
            "running_since": self.running_since,
            "target": self.target,
            "last_fraction": self.last_fraction,
            "next_at": self.next_at,
            "breached_at": self.breached_at,
            "ended_at": self.ended_at,
            "met": self.met,
            "resets": self.resets,
            "held": self.held,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clock:
        return cls(**data)

    def to_row(self) -> list[Any]:
        """The fields in declaration order: to_dict without the keys (see TicketState.to_row)."""
        return [
            self.metric, self.round, self.started_at, self.elapsed, self.running_since,
            self.target, self.last_fraction, self.next_at, self.breached_at, self.ended_at,
            self.met, self.resets, self.held,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any]) -> Clock:
        return cls(*row)  # a row from before `resets` or `held` lacks it: the default


@dataclass(slots=True, init=False)
class TicketState:
    """Everything the engine remembers about one ticket."""

    ticket_id: str
    first_seen_at: int
    clock_at: int
    status: Status = Status.NEW
    status_since: int = 0
    status_seq: int = 0
    priority: Priority = Priority.NORMAL
    priority_at: int = 0
    channel: str | None = None
    category: str | None = None
    customer_id: str | None = None
    tier: str | None = None
    group: str | None = None
    assignee_id: str | None = None
    support_level: int = 1
    tags: frozenset[str] = frozenset()  # shared: most tickets carry one of a few tag sets
    transfers: int = 0
    reopens: int = 0
    cycle: int = 0
    created_at: int | None = None
    policy: str = ""
    clocks: dict[str, Clock] = field(default_factory=dict)
    level: int = 1
    awaiting_since: int | None = None
    escalated_at: int | None = None
    fired: frozenset[str] = frozenset()  # shared, like tags (Matching._mark_fired)
    # the recent event ids, oldest first (a bounded window); a list takes a third of the
    # bytes of a dict, and a ticket has few events, so the scan costs less than the bytes
    seen: list[str] = field(default_factory=list)
    next_due: int | None = None
    closed: bool = False
    f_chain: str | None = None  # the category whose functional chain the ticket climbs
    f_step: int = 0  # that chain's step reached
    f_since: int | None = None  # when that step was paged (its climb timer), None: not climbing
    climb_id: str | None = None  # the escalation whose acknowledgement stops the matrix climb
    f_id: str | None = None  # the escalation whose acknowledgement stops the functional climb
    repeat: int = 0  # the matrix repetition being climbed (escalation_matrix.repeat)
    climb_paused: int = 0  # business ms the matrix climb stood still in pause statuses
    f_paused: int = 0  # the same for the side chain's climb
    raised_at: int | None = None  # when a deadline last raised the level (one raise an instant)
    board: TicketInputs | None = None  # what the live board knows (streams.sla.board.follow)

    def __init__(
        self, ticket_id: str, first_seen_at: int, clock_at: int, status: Status = Status.NEW,
        status_since: int = 0, status_seq: int = 0, priority: Priority = Priority.NORMAL,
        priority_at: int = 0, channel: str | None = None, category: str | None = None,
        customer_id: str | None = None, tier: str | None = None, group: str | None = None,
        assignee_id: str | None = None, support_level: int = 1,
        tags: frozenset[str] = frozenset(), transfers: int = 0, reopens: int = 0,
        cycle: int = 0, created_at: int | None = None, policy: str = "",
        clocks: dict[str, Clock] | None = None, level: int = 1,
        awaiting_since: int | None = None, escalated_at: int | None = None,
        fired: Iterable[str] | None = None, seen: Iterable[str] | None = None,
        next_due: int | None = None, closed: bool = False, f_chain: str | None = None,
        f_step: int = 0, f_since: int | None = None, climb_id: str | None = None,
        f_id: str | None = None, repeat: int = 0, climb_paused: int = 0, f_paused: int = 0,
        raised_at: int | None = None, board: TicketInputs | None = None,
    ) -> None:  # fmt: skip
        self.ticket_id = ticket_id
        self.first_seen_at = first_seen_at
        self.clock_at = clock_at
        self.status = status
        self.status_since = status_since
        self.status_seq = status_seq
        self.priority = priority
        self.priority_at = priority_at
        self.channel = channel
        self.category = category
        self.customer_id = customer_id
        self.tier = tier
        self.group = group
        self.assignee_id = assignee_id
        self.support_level = support_level
        self.tags = tags
        self.transfers = transfers
        self.reopens = reopens
        self.cycle = cycle
        self.created_at = created_at
        self.policy = policy
        self.clocks = {} if clocks is None else clocks
        self.level = level
        self.awaiting_since = awaiting_since
        self.escalated_at = escalated_at
        self.fired = _NOTHING_FIRED if fired is None else frozenset(fired)
        if seen is None:
            self.seen = []
        elif isinstance(seen, list):
            self.seen = seen
        else:
            self.seen = list(dict.fromkeys(seen))
        self.next_due = next_due
        self.closed = closed
        self.f_chain = f_chain
        self.f_step = f_step
        self.f_since = f_since
        self.climb_id = climb_id
        self.f_id = f_id
        self.repeat = repeat
        self.climb_paused = climb_paused
        self.f_paused = f_paused
        self.raised_at = raised_at
        self.board = board

    def remember(self, event_id: str) -> None:
        """Add an event id to the window of recent ones, forgetting the oldest beyond it."""
        seen = self.seen
        if event_id in seen:
            return
        seen.append(event_id)
        if len(seen) > SEEN_WINDOW:
            del seen[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "first_seen_at": self.first_seen_at,
            "clock_at": self.clock_at,
            "status": self.status.value,
            "status_since": self.status_since,
            "status_seq": self.status_seq,
            "priority": self.priority.value,
            "priority_at": self.priority_at,
            "channel": self.channel,
            "category": self.category,
            "customer_id": self.customer_id,
            "tier": self.tier,
            "group": self.group,
            "assignee_id": self.assignee_id,
            "support_level": self.support_level,
            "tags": sorted(self.tags),
            "transfers": self.transfers,
            "reopens": self.reopens,
            "cycle": self.cycle,
            "created_at": self.created_at,
            "policy": self.policy,
            "clocks": {name: clock.to_dict() for name, clock in self.clocks.items()},
            "level": self.level,
            "awaiting_since": self.awaiting_since,
            "escalated_at": self.escalated_at,
            "fired": sorted(self.fired),
            "seen": list(self.seen),
            "next_due": self.next_due,
            "closed": self.closed,
            "f_chain": self.f_chain,
            "f_step": self.f_step,
            "f_since": self.f_since,
            "climb_id": self.climb_id,
            "f_id": self.f_id,
            "repeat": self.repeat,
            "climb_paused": self.climb_paused,
            "f_paused": self.f_paused,
            "raised_at": self.raised_at,
            "board": None if self.board is None else self.board.to_row(),
        }

    def to_row(self) -> list[Any]:
        """The fields in declaration order, as JSON-ready values: half the bytes of to_dict,
        for the changelog record written on every event. Clocks are rows too. (An enum's
        `_value_` is its value: `.value` is a property that runs Python code, on every event.)
        """
        return [
            self.ticket_id, self.first_seen_at, self.clock_at, self.status._value_,
            self.status_since, self.status_seq, self.priority._value_, self.priority_at,
            self.channel, self.category, self.customer_id, self.tier, self.group,
            self.assignee_id, self.support_level, sorted(self.tags), self.transfers,
            self.reopens, self.cycle, self.created_at, self.policy,
            [clock.to_row() for clock in self.clocks.values()], self.level,
            self.awaiting_since, self.escalated_at, sorted(self.fired), list(self.seen),
            self.next_due, self.closed, self.f_chain, self.f_step, self.f_since,
            self.climb_id, self.f_id, self.repeat, self.climb_paused, self.f_paused,
            self.raised_at, None if self.board is None else self.board.to_row(),
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any]) -> TicketState:
        if not _ROW_FIELDS_V1 <= len(row) <= _ROW_FIELDS:
            raise ValueError(f"a ticket state row has {_ROW_FIELDS} fields, got {len(row)}")
        values = list(row)  # an older row lacks the fields added since: they take defaults
        values[3] = _member(STATUS_OF, Status, values[3])
        values[6] = _member(PRIORITY_OF, Priority, values[6])
        values[15] = frozenset(values[15])
        clocks = (Clock.from_row(clock) for clock in values[21])
        values[21] = {clock.metric: clock for clock in clocks}
        values[25] = frozenset(values[25])
        if len(values) == _ROW_FIELDS and values[-1] is not None:
            values[-1] = TicketInputs.from_row(values[0], values[-1])
        return cls(*values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketState:
        values = dict(data)
        values["status"] = Status(values["status"])
        values["priority"] = Priority(values["priority"])
        values["tags"] = frozenset(values["tags"])
        values["fired"] = frozenset(values["fired"])
        values["seen"] = list(values["seen"])
        board = values.get("board")
        if board is not None:
            values["board"] = TicketInputs.from_row(values["ticket_id"], board)
        values["clocks"] = {
            name: Clock.from_dict(clock) for name, clock in values["clocks"].items()
        }
        return cls(**values)


_ROW_FIELDS: Final = len(fields(TicketState))


def _member(members: dict[str, _E], enum: Callable[[Any], _E], value: Any) -> _E:
    """`enum(value)` (whose call runs Python code), looked up when `value` is a member's."""
    member = members.get(value) if type(value) is str else None
    return enum(value) if member is None else member


# A row written by an older release lacks the fields added since (at the end): they take their
# defaults. The oldest such row is the one from before f_chain, f_step and f_since.
_ROW_FIELDS_V1: Final = _ROW_FIELDS - 10
