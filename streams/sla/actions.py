"""What the engine decides: escalations, priority bumps and reminders.

These are plain records; the worker turns them into Avro messages and adds the
wall-clock `emitted_at`, the backtest writes them as JSON Lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Final, ParamSpec, TypeVar, cast

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Kind(StrEnum):
    HIERARCHICAL = "HIERARCHICAL"
    FUNCTIONAL = "FUNCTIONAL"
    PRIORITY = "PRIORITY"
    AUTOMATIC = "AUTOMATIC"
    EXECUTIVE = "EXECUTIVE"


class Reason(StrEnum):
    SLA_WARNING = "SLA_WARNING"
    FIRST_RESPONSE_BREACH = "FIRST_RESPONSE_BREACH"
    NEXT_RESPONSE_BREACH = "NEXT_RESPONSE_BREACH"
    RESOLUTION_BREACH = "RESOLUTION_BREACH"
    CHURN_RISK = "CHURN_RISK"
    SYSTEM_CRASH = "SYSTEM_CRASH"
    LEGAL_THREAT = "LEGAL_THREAT"
    CANCELLATION_THREAT = "CANCELLATION_THREAT"
    REFUND_REQUEST = "REFUND_REQUEST"
    PRIVACY_CONCERN = "PRIVACY_CONCERN"
    SUPERVISOR_REQUEST = "SUPERVISOR_REQUEST"
    PENDING_TOO_LONG = "PENDING_TOO_LONG"
    TOO_MANY_TRANSFERS = "TOO_MANY_TRANSFERS"
    REOPENED = "REOPENED"
    ESCALATION_OVERDUE = "ESCALATION_OVERDUE"
    LOW_CSAT = "LOW_CSAT"
    SPECIALIST_REQUIRED = "SPECIALIST_REQUIRED"
    PRIORITY_RULE = "PRIORITY_RULE"


BREACH_REASON: Final = {
    "first_response": Reason.FIRST_RESPONSE_BREACH,
    "next_response": Reason.NEXT_RESPONSE_BREACH,
    "resolution": Reason.RESOLUTION_BREACH,
}


def action_id(ticket_id: str, rule: str, level: int, cycle: int) -> str:
    """Deterministic id so consumers can de-duplicate and live equals backtest."""
    key = f"{ticket_id}\x1f{rule}\x1f{level}\x1f{cycle}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Escalation:
    escalation_id: str
    ticket_id: str
    kind: Kind
    level: int
    from_level: int
    target: str
    reason: Reason
    policy: str
    rule: str
    sla_metric: str | None
    due_at: int
    fired_at: int
    event_id: str | None
    cycle: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PriorityBump:
    ticket_id: str
    old_priority: str
    new_priority: str
    reason: Reason
    escalation_id: str
    fired_at: int
    event_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Reminder:
    reminder_id: str
    ticket_id: str
    target: str
    reason: Reason
    rule: str
    due_at: int
    fired_at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SlaOutcome:
    """A finished SLA clock: met, or stopped by resolution. Feeds attainment reports and metrics."""

    ticket_id: str
    policy: str
    metric: str
    cycle: int
    round: int
    started_at: int
    ended_at: int
    met: bool
    breached: bool
    business_elapsed: int
    target: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Action = Escalation | PriorityBump | Reminder | SlaOutcome


def _twin(cls: type) -> Any:
    """A mutable dataclass with the slot layout of the frozen dataclass `cls`, whose instances
    can become `cls` instances by __class__ assignment; None where this module is compiled
    (mypyc, pyproject's compiled-modules), as `cls` is then a native class."""
    if hasattr(cls, "__mypyc_attrs__"):
        return None
    fields = dataclasses.fields(cls)
    twin = dataclasses.make_dataclass(
        f"_{cls.__name__}Builder", [(f.name, f.type) for f in fields], slots=True
    )
    try:
        probe = twin(*(None for _ in fields))
        probe.__class__ = cls
    except TypeError:  # pragma: no cover - another interpreter's object layout
        raise ImportError(
            f"{cls.__name__}: this interpreter cannot switch a record's class"
        ) from None
    return twin


def fast_constructor(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """Build instances of a frozen slotted dataclass at the cost of a mutable one.

    A frozen dataclass's generated __init__ sets every field through object.__setattr__,
    which makes it about four times slower than a plain one: the engine creates an
    action for about every other event. The returned function fills a mutable twin with
    the same slot layout and then makes it an instance of `cls` (immutable from then on).
    Compiled, `cls` itself (a native class, with no __class__ to switch).
    """
    frozen = cast(type, cls)
    twin = _twin(frozen)
    if twin is None:
        return cls

    def build(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        obj: Any = twin(*args, **kwargs)
        obj.__class__ = frozen
        result: _T = obj  # not cast(): a function call per action
        return result

    return build


# The two records the engine makes most, as plain functions rather than fast_constructor's
# wrapper: compiled, a call to them is direct, with its ints unboxed, and they store into
# the native instance's fields directly, past the frozen __setattr__ (which interpreted
# code cannot: there they fill the twin and switch its class).
_ESCALATION_TWIN: Final[Any] = _twin(Escalation)
_OUTCOME_TWIN: Final[Any] = _twin(SlaOutcome)


def new_escalation(
    escalation_id: str, ticket_id: str, kind: Kind, level: int, from_level: int, target: str,
    reason: Reason, policy: str, rule: str, sla_metric: str | None, due_at: int, fired_at: int,
    event_id: str | None, cycle: int,
) -> Escalation:  # fmt: skip
    if _ESCALATION_TWIN is not None:
        built: Any = _ESCALATION_TWIN(
            escalation_id, ticket_id, kind, level, from_level, target, reason, policy, rule,
            sla_metric, due_at, fired_at, event_id, cycle,
        )  # fmt: skip
        built.__class__ = Escalation
        result: Escalation = built
        return result
    obj = Escalation.__new__(Escalation)
    obj.escalation_id = escalation_id  # type: ignore[misc]
    obj.ticket_id = ticket_id  # type: ignore[misc]
    obj.kind = kind  # type: ignore[misc]
    obj.level = level  # type: ignore[misc]
    obj.from_level = from_level  # type: ignore[misc]
    obj.target = target  # type: ignore[misc]
    obj.reason = reason  # type: ignore[misc]
    obj.policy = policy  # type: ignore[misc]
    obj.rule = rule  # type: ignore[misc]
    obj.sla_metric = sla_metric  # type: ignore[misc]
    obj.due_at = due_at  # type: ignore[misc]
    obj.fired_at = fired_at  # type: ignore[misc]
    obj.event_id = event_id  # type: ignore[misc]
    obj.cycle = cycle  # type: ignore[misc]
    return obj


def new_outcome(
    ticket_id: str, policy: str, metric: str, cycle: int, round: int, started_at: int,
    ended_at: int, met: bool, breached: bool, business_elapsed: int, target: int | None,
) -> SlaOutcome:  # fmt: skip
    if _OUTCOME_TWIN is not None:
        built: Any = _OUTCOME_TWIN(
            ticket_id, policy, metric, cycle, round, started_at, ended_at, met, breached,
            business_elapsed, target,
        )  # fmt: skip
        built.__class__ = SlaOutcome
        result: SlaOutcome = built
        return result
    obj = SlaOutcome.__new__(SlaOutcome)
    obj.ticket_id = ticket_id  # type: ignore[misc]
    obj.policy = policy  # type: ignore[misc]
    obj.metric = metric  # type: ignore[misc]
    obj.cycle = cycle  # type: ignore[misc]
    obj.round = round  # type: ignore[misc]
    obj.started_at = started_at  # type: ignore[misc]
    obj.ended_at = ended_at  # type: ignore[misc]
    obj.met = met  # type: ignore[misc]
    obj.breached = breached  # type: ignore[misc]
    obj.business_elapsed = business_elapsed  # type: ignore[misc]
    obj.target = target  # type: ignore[misc]
    return obj


new_priority_bump = fast_constructor(PriorityBump)
new_reminder = fast_constructor(Reminder)
