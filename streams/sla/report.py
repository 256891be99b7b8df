"""What a backtest tells an operator: escalation volume, SLA attainment, response times.

Pure: fed the engine's actions and final states, it formats text. The what-if
comparison of two policies works on per-ticket outcomes, since escalation ids of
two policies need not match even when the outcome for the ticket is the same.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from streams.sla.actions import (
    Action,
    Escalation,
    Kind,
    PriorityBump,
    Reason,
    Reminder,
    Silenced,
    SlaOutcome,
)
from streams.sla.board import BoardEntry, WarningEntry
from streams.sla.durations import HOUR, MINUTE
from streams.sla.events import format_ts
from streams.sla.state import TicketState

Outcome = frozenset[tuple[str, int, int]]  # (reason, level, cycle) of each escalation
# An enum's .value is a Python-level property: a dict lookup costs a fraction of it.
_REASON_NAMES: Final = {reason: reason.value for reason in Reason}
_KIND_NAMES: Final = {kind: kind.value for kind in Kind}


def percentile(sorted_values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def _human(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < HOUR:
        return f"{ms / MINUTE:.1f}m"
    return f"{ms / HOUR:.1f}h"


@dataclass
class Attainment:
    met: int = 0
    missed: int = 0
    open: int = 0

    @property
    def rate(self) -> float | None:
        done = self.met + self.missed
        return self.met / done if done else None


@dataclass
class BacktestReport:
    """Accumulates one backtest run."""

    policy_source: str
    events: int = 0
    bad_lines: int = 0
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)  # the first ones, by line number
    rejected_lines: list[int] = field(default_factory=list)  # events refused (far ahead)
    tickets: int = 0
    silenced: Counter[str] = field(default_factory=Counter)  # by reason: before the horizon
    by_reason: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    by_level: Counter[int] = field(default_factory=Counter)
    priority_bumps: int = 0
    reminders: int = 0
    attainment: dict[tuple[str, str], Attainment] = field(
        default_factory=lambda: defaultdict(Attainment)
    )
    first_response_ms: list[int] = field(default_factory=list)
    outcomes: dict[str, set[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(set))
    due: dict[str, int] = field(default_factory=dict)  # escalation_id -> due_at, for compare
    board: dict[str, BoardEntry] | None = None  # open escalations at the end (streams.sla.board)
    board_warnings: dict[str, WarningEntry] | None = None  # open SLA warnings, shown apart

    def add(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, SlaOutcome):  # the most common action first
                if action.target is None:
                    continue  # a metric with no target is neither met nor missed
                cell = self.attainment[(action.policy, action.metric)]
                if action.breached:
                    cell.missed += 1
                else:
                    cell.met += 1
                if action.metric == "first_response" and action.met:
                    self.first_response_ms.append(action.ended_at - action.started_at)
            elif isinstance(action, Escalation):
                reason = _REASON_NAMES[action.reason]
                self.by_reason[reason] += 1
                self.by_kind[_KIND_NAMES[action.kind]] += 1
                self.by_level[action.level] += 1
                self.outcomes[action.ticket_id].add((reason, action.level, action.cycle))
                self.due[action.escalation_id] = action.due_at
            elif isinstance(action, PriorityBump):
                self.priority_bumps += 1
            elif isinstance(action, Reminder):
                self.reminders += 1
            elif isinstance(action, Silenced):
                self.silenced[_REASON_NAMES[action.reason]] += 1

    def finish(self, states: Iterable[TicketState]) -> None:
        """Count clocks still running when history ends: breached ones are misses."""
        for state in states:
            self.tickets += 1
            for clock in state.clocks.values():
                if clock.active and clock.target is not None:
                    cell = self.attainment[(state.policy, clock.metric)]
                    if clock.breached_at is not None:
                        cell.missed += 1
                    else:
                        cell.open += 1

    def _board_lines(self) -> list[str]:
        if self.board is None:
            return []
        levels = Counter(entry.level for entry in self.board.values())
        return [
            f"open on the escalation board at the end: {len(self.board):,} tickets",
            *_table({f"L{k}": v for k, v in sorted(levels.items())}, len(self.board)),
            f"open SLA warnings (heads-ups to the owner, not escalations): "
            f"{len(self.board_warnings or {}):,} tickets",
        ]

    def _silenced_lines(self) -> list[str]:
        if not self.silenced:
            return []
        total = sum(self.silenced.values())
        return [
            f"missed, not sent (due before the backfill horizon): {total:,}",
            *_table(self.silenced, total),
        ]

    def ticket_outcome(self, ticket_id: str) -> Outcome:
        return frozenset(self.outcomes.get(ticket_id, ()))

    def format(self) -> str:
        total = sum(self.by_reason.values())
        lines = [
            f"policy: {self.policy_source}",
            f"events: {self.events:,}  tickets: {self.tickets:,}  bad lines: {self.bad_lines:,}"
            f"  duplicates ignored: {self.duplicates:,}",
            *_line_numbers("duplicate event ids at lines", self.duplicate_lines, self.duplicates),
            *_line_numbers("refused (far ahead of the history) at lines", self.rejected_lines),
            f"escalations: {total:,}  priority bumps: {self.priority_bumps:,}"
            f"  reminders: {self.reminders:,}",
            "",
            "escalations by reason:",
            *_table(self.by_reason, total),
            "escalations by kind:",
            *_table(self.by_kind, total),
            "escalations by level:",
            *_table({f"L{k}": v for k, v in sorted(self.by_level.items())}, total),
            *self._board_lines(),
            *self._silenced_lines(),
            "",
            "SLA attainment (met / decided; open = still running at the end of history):",
            f"  {'policy':<22} {'metric':<15} {'met':>8} {'missed':>8} {'open':>7} {'rate':>7}",
        ]
        for (policy, metric), cell in sorted(self.attainment.items()):
            rate = "-" if cell.rate is None else f"{cell.rate:.1%}"
            lines.append(
                f"  {policy:<22} {metric:<15} {cell.met:>8,} {cell.missed:>8,}"
                f" {cell.open:>7,} {rate:>7}"
            )
        times = sorted(self.first_response_ms)
        lines += [
            "",
            f"time to first response (calendar time, {len(times):,} replies): "
            + "  ".join(f"p{p}={_human(percentile(times, p))}" for p in (50, 75, 90, 95, 99)),
        ]
        return "\n".join(lines)


def _line_numbers(what: str, lines: list[int], total: int | None = None) -> list[str]:
    if not lines:
        return []
    total = len(lines) if total is None else total
    shown = ", ".join(str(n) for n in lines[:10])
    return [f"  {what}: {shown}" + (f" (+{total - 10:,} more)" if total > 10 else "")]


def _table(counts: Mapping[str, int], total: int) -> list[str]:
    if not counts:
        return ["  (none)"]
    width = max(len(key) for key in counts)
    return [
        f"  {key:<{width}} {value:>9,}  {value / total:6.1%}" if total else f"  {key} {value}"
        for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def compare(base: BacktestReport, other: BacktestReport, limit: int = 20) -> str:
    """Tickets whose escalations differ between two policies, and escalations that both send
    at different times: the what-if view."""
    tickets = sorted(set(base.outcomes) | set(other.outcomes))
    differing = [t for t in tickets if base.ticket_outcome(t) != other.ticket_outcome(t)]
    only_base = sum(1 for t in differing if not other.outcomes.get(t))
    only_other = sum(1 for t in differing if not base.outcomes.get(t))
    lines = [
        f"what-if: {base.policy_source}  vs  {other.policy_source}",
        f"tickets with different escalations: {len(differing):,} of {base.tickets:,}"
        f" (escalated only under the first: {only_base:,}; only under the second: {only_other:,})",
    ]
    for ticket in differing[:limit]:
        a = base.ticket_outcome(ticket)
        b = other.ticket_outcome(ticket)
        lines.append(f"  {ticket}: -{_describe(a - b)} +{_describe(b - a)}")
    if len(differing) > limit:
        lines.append(f"  ... and {len(differing) - limit:,} more")
    lines += _moved_lines(base, other, limit)
    return "\n".join(lines)


def _moved_lines(base: BacktestReport, other: BacktestReport, limit: int) -> list[str]:
    """Escalations with the same id under both policies but another due time."""
    moved = sorted(
        (other.due[eid] - at, eid, at)
        for eid, at in base.due.items()
        if eid in other.due and other.due[eid] != at
    )
    if not moved:
        return ["escalations sent by both at different times: 0"]
    shifts = sorted(shift for shift, _, _ in moved)
    earlier = sum(1 for shift in shifts if shift < 0)
    median = shifts[(len(shifts) - 1) // 2]
    lines = [
        f"escalations sent by both at different times: {len(moved):,}"
        f" ({earlier:,} earlier, {len(moved) - earlier:,} later; median shift"
        f" {'-' if median < 0 else '+'}{_human(abs(median))})"
    ]
    by_size = sorted(moved, key=lambda m: (-abs(m[0]), m[1]))
    for shift, eid, at in by_size[:limit]:
        lines.append(
            f"  {eid}: {format_ts(at)} -> {format_ts(at + shift)}"
            f" ({'-' if shift < 0 else '+'}{_human(abs(shift))})"
        )
    if len(moved) > limit:
        lines.append(f"  ... and {len(moved) - limit:,} more")
    return lines


def _describe(items: Outcome) -> str:
    if not items:
        return "[]"
    parts = [
        f"{reason}@L{level}" + (f"/c{cycle}" if cycle else "") for reason, level, cycle in items
    ]
    return "[" + ", ".join(sorted(parts)) + "]"
