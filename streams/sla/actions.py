"""What the engine decides: escalations, priority bumps and reminders.

These are plain records; the worker turns them into Avro messages and adds the
wall-clock `emitted_at`, the backtest writes them as JSON Lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Final

from streams.sla.frozen import fast_constructor


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
    PERIODIC_UPDATE_BREACH = "PERIODIC_UPDATE_BREACH"
    PAUSABLE_UPDATE_BREACH = "PAUSABLE_UPDATE_BREACH"
    REQUESTER_WAIT_BREACH = "REQUESTER_WAIT_BREACH"
    AGENT_WORK_BREACH = "AGENT_WORK_BREACH"
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
    "periodic_update": Reason.PERIODIC_UPDATE_BREACH,
    "pausable_update": Reason.PAUSABLE_UPDATE_BREACH,
    "requester_wait": Reason.REQUESTER_WAIT_BREACH,
    "agent_work": Reason.AGENT_WORK_BREACH,
}
BREACHES: Final = frozenset(BREACH_REASON.values())
# The kinds that raise the ticket's level (a FUNCTIONAL escalation climbs a side chain instead).
RAISING_KINDS: Final = (Kind.HIERARCHICAL, Kind.AUTOMATIC)


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
        return _as_dict(self)


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
        return _as_dict(self)


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
        return _as_dict(self)


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
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class Silenced:
    """An escalation, bump or reminder that fell before the backfill horizon: recorded and
    counted as missed, never sent (event time alone must not page anybody)."""

    ticket_id: str
    action: str  # "escalation" or "reminder"
    rule: str
    reason: Reason
    level: int
    policy: str
    sla_metric: str | None
    due_at: int
    fired_at: int

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


Action = Escalation | PriorityBump | Reminder | SlaOutcome | Silenced

_FIELDS: Final = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (Escalation, PriorityBump, Reminder, SlaOutcome, Silenced)
}


def _as_dict(action: Action) -> dict[str, Any]:
    """What dataclasses.asdict gives for these flat records (str, int, bool, None and enum
    fields), without its recursive deep copy: that was a third of a backtest's --out time."""
    return {name: getattr(action, name) for name in _FIELDS[type(action)]}


def _build_escalation(
    escalation_id: str,
    ticket_id: str,
    kind: Kind,
    level: int,
    from_level: int,
    target: str,
    reason: Reason,
    policy: str,
    rule: str,
    sla_metric: str | None,
    due_at: int,
    fired_at: int,
    event_id: str | None,
    cycle: int,
) -> Escalation:
    """Escalation's constructor in the compiled build (streams.sla.frozen: `native`)."""
    a = Escalation.__new__(Escalation)
    a.escalation_id = escalation_id  # type: ignore[misc]
    a.ticket_id = ticket_id  # type: ignore[misc]
    a.kind = kind  # type: ignore[misc]
    a.level = level  # type: ignore[misc]
    a.from_level = from_level  # type: ignore[misc]
    a.target = target  # type: ignore[misc]
    a.reason = reason  # type: ignore[misc]
    a.policy = policy  # type: ignore[misc]
    a.rule = rule  # type: ignore[misc]
    a.sla_metric = sla_metric  # type: ignore[misc]
    a.due_at = due_at  # type: ignore[misc]
    a.fired_at = fired_at  # type: ignore[misc]
    a.event_id = event_id  # type: ignore[misc]
    a.cycle = cycle  # type: ignore[misc]
    return a


def _build_outcome(
    ticket_id: str,
    policy: str,
    metric: str,
    cycle: int,
    round: int,
    started_at: int,
    ended_at: int,
    met: bool,
    breached: bool,
    business_elapsed: int,
    target: int | None,
) -> SlaOutcome:
    """SlaOutcome's constructor in the compiled build (streams.sla.frozen: `native`)."""
    a = SlaOutcome.__new__(SlaOutcome)
    a.ticket_id = ticket_id  # type: ignore[misc]
    a.policy = policy  # type: ignore[misc]
    a.metric = metric  # type: ignore[misc]
    a.cycle = cycle  # type: ignore[misc]
    a.round = round  # type: ignore[misc]
    a.started_at = started_at  # type: ignore[misc]
    a.ended_at = ended_at  # type: ignore[misc]
    a.met = met  # type: ignore[misc]
    a.breached = breached  # type: ignore[misc]
    a.business_elapsed = business_elapsed  # type: ignore[misc]
    a.target = target  # type: ignore[misc]
    return a


# Compiled, the frequent ones by the builders above (streams.sla.frozen).
new_escalation = fast_constructor(Escalation, _build_escalation)
new_priority_bump = fast_constructor(PriorityBump)
new_reminder = fast_constructor(Reminder)
new_outcome = fast_constructor(SlaOutcome, _build_outcome)
