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
    BREACHES,
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
from streams.sla.events import EventType, TicketEvent, format_ts
from streams.sla.queues import (
    QUEUE_STATS,
    PartitionClock,
    QueueAlert,
    QueueStat,
    QueueWindows,
    StatKind,
    alerts_of,
    queue_name,
    stat_id,
)
from streams.sla.state import TicketState

Outcome = frozenset[tuple[str, int, int]]  # (reason, level, cycle) of each escalation
# An enum's .value is a Python-level property: a dict lookup costs a fraction of it.
_REASON_NAMES: Final = {reason: reason.value for reason in Reason}
_KIND_NAMES: Final = {kind: kind.value for kind in Kind}
# The events that tell the report something beyond the engine's actions.
_TOLD: Final = frozenset(
    (EventType.CREATED, EventType.RESOLVED, EventType.CSAT_RECEIVED, EventType.AGENT_REPLIED,
     EventType.ESCALATION_ACKNOWLEDGED)
)  # fmt: skip


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
    compared: bool = True  # False: no what-if reads outcomes and due, so neither is kept
    board: dict[str, BoardEntry] | None = None  # open escalations at the end (streams.sla.board)
    per_hour: Counter[tuple[int, str]] = field(default_factory=Counter)  # (hour, reason)
    csat: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    # level -> ms from an escalation to the ticket's next agent reply or acknowledgement
    answer_ms: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    unanswered: Counter[int] = field(default_factory=Counter)  # by level, at the end
    ops: QueueWindows | None = None  # the `escalator alerts` windows, fed from the history
    ops_alerts: list[QueueAlert] = field(default_factory=list)
    ops_late: int = 0  # stats that came after their windows closed (dropped, as live)
    # --jobs: a shard's queue stats as (its clock, closes windows, stat), replayed in the
    # parent in clock order, since a queue's windows span the tickets of every shard
    ops_record: list[tuple[int, bool, QueueStat]] | None = None
    # arrival order: the alerts process's clocks, one per partition of queue-stats (which are
    # the worker's); each fed message's stats wait in _held for `ops_message`
    ops_clock: PartitionClock | None = None
    _held: list[QueueStat] = field(default_factory=list)
    # ticket -> its escalations waiting for an answer: (escalation_id, level, fired_at)
    _waiting: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    board_warnings: dict[str, WarningEntry] | None = None  # open SLA warnings, shown apart

    def add(
        self, actions: Iterable[Action], states: Mapping[str, TicketState] | None = None
    ) -> None:
        """Count the engine's actions; `states` (the driver's, by ticket) names the queue of
        each SLA breach for the ops alerts."""
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
                if self.compared:  # bytes per escalation a plain backtest does not need
                    self.outcomes[action.ticket_id].add((reason, action.level, action.cycle))
                    self.due[action.escalation_id] = action.due_at
                self.per_hour[(action.fired_at - action.fired_at % HOUR, reason)] += 1
                if action.reason is not Reason.SLA_WARNING:  # a heads-up awaits no answer
                    waiting = self._waiting.setdefault(action.ticket_id, [])
                    waiting.append((action.escalation_id, action.level, action.fired_at))
                if self.ops is not None and action.reason in BREACHES and states is not None:
                    state = states.get(action.ticket_id)
                    if state is not None:
                        queue = queue_name(state.channel, state.category)
                        ident = stat_id(StatKind.BREACHED, action.escalation_id)
                        stat = QueueStat(queue, StatKind.BREACHED, action.due_at, ident)
                        self._stat(stat, action.fired_at, closes=False)
            elif isinstance(action, PriorityBump):
                self.priority_bumps += 1
            elif isinstance(action, Reminder):
                self.reminders += 1
            elif isinstance(action, Silenced):
                self.silenced[_REASON_NAMES[action.reason]] += 1

    def event(self, event: TicketEvent, state: TicketState) -> None:
        """What an applied event tells beyond the actions: a CSAT score (by the ticket's SLA
        policy and queue), a queue stat for the ops alerts, the answer to escalations."""
        kind = event.type
        if kind not in _TOLD:
            return
        t = event.occurred_at
        if kind is EventType.CSAT_RECEIVED:
            if event.csat is not None:
                queue = queue_name(state.channel, state.category)
                self.csat[(state.policy, queue)].append(event.csat)
        elif kind is EventType.AGENT_REPLIED or kind is EventType.ESCALATION_ACKNOWLEDGED:
            waiting = self._waiting.get(event.ticket_id)
            if waiting:
                named = event.attributes.get("escalation_id")
                if kind is EventType.AGENT_REPLIED:
                    named = None
                left = []
                for escalation_id, level, fired_at in waiting:
                    if fired_at <= t and named in (None, escalation_id):
                        self.answer_ms[level].append(t - fired_at)
                    else:
                        left.append((escalation_id, level, fired_at))
                if left:
                    self._waiting[event.ticket_id] = left
                else:
                    del self._waiting[event.ticket_id]
        elif self.ops is not None:
            stat = QUEUE_STATS[kind]
            queue = queue_name(state.channel, state.category)
            self._stat(QueueStat(queue, stat, t, stat_id(stat, event.event_id)), t, closes=True)

    def _stat(self, stat: QueueStat, clock: int, closes: bool) -> None:
        """Add a queue stat at the driver's `clock`; after an event's stat the windows close
        as the alerts process closes them: allowed_lateness behind. In arrival order the
        stat waits for the end of its message instead (`ops_message`)."""
        if self.ops_clock is not None:
            self._held.append(stat)
        elif self.ops_record is not None:
            self.ops_record.append((clock, closes, stat))
        elif self.ops is not None:
            self.ops.add(stat)
            if closes:
                self._close(clock - self.ops.config.allowed_lateness)

    def ops_message(self, partition: int, wm: int) -> None:
        """The queue stats of one message of `partition`, sent with `wm` (the partition's clock
        before it), taken as `escalator alerts` takes them: each late if older than that
        clock less the allowed lateness; then the windows close to the partitions'
        watermark. Whether a stat is late then depends on its partition's messages alone, not
        on how the file interleaves the partitions."""
        held, ops, clock = self._held, self.ops, self.ops_clock
        if not held or ops is None or clock is None:
            return
        for stat in held:
            if clock.observe(partition, wm, stat.at):
                self._count(stat)
            else:
                ops.late += 1
        held.clear()
        if self.ops_record is None:
            watermark = clock.watermark
            if watermark is not None:
                self._close(watermark)

    def _count(self, stat: QueueStat) -> None:
        """A stat on time for its partition: counted, or in a --jobs shard kept for the
        process that counts its queue. Its lateness depended on its partition alone, and a
        stat on time is never late for the windows, whenever they close: it goes at clock 0,
        and that process adds them all up before it closes a window."""
        if self.ops_record is not None:
            self.ops_record.append((0, False, stat))
        elif self.ops is not None:
            self.ops.add(stat)

    def replay_ops(
        self, records: Iterable[tuple[int, bool, QueueStat | None]], until: int | None
    ) -> None:
        """The ops windows from shards' recorded stats (merged in clock order), closed at
        `until` as one process would have. A record without a stat only moves the clock:
        the stat of another queue, which a replay of some queues (`backtest --jobs`) leaves
        out, since a queue's windows depend on its own stats and on the clock alone."""
        ops = self.ops
        for clock, closes, stat in records:
            if stat is not None:
                self._stat(stat, clock, closes)
            elif closes and ops is not None:
                self._close(clock - ops.config.allowed_lateness)
        self._close_ops(until)

    def _close_ops(self, until: int | None) -> None:
        for stat in self._held:  # the end tick's: due after each partition's clock, on time
            self._count(stat)
        self._held.clear()
        if until is not None and self.ops is not None and self.ops_record is None:
            # as the alerts process at the end of a replay: allowed_lateness behind the clock
            self._close(until - self.ops.config.allowed_lateness, final=True)
            self.ops_late = self.ops.late

    def _close(self, watermark: int, final: bool = False) -> None:
        ops = self.ops
        if ops is not None and (
            ops.closed_until is None or watermark >= ops.closed_until + ops.hop or final
        ):
            self.ops_alerts.extend(alerts_of(ops.close_until(watermark)))

    def finish(self, tickets: int, states: Iterable[TicketState], until: int | None = None) -> None:
        """Count the run's tickets, and the clocks still running when history ends: breached
        ones are misses; close the ops windows that end by `until`; escalations never
        answered, by level. `states` need only hold the tickets with a clock not ended: a
        ticket whose clocks all ended adds nothing here."""
        self._close_ops(until)
        for waiting in self._waiting.values():
            for _, level, _ in waiting:
                self.unanswered[level] += 1
        self._waiting.clear()
        self.tickets += tickets
        for state in states:
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

    def csat_rows(self) -> list[dict[str, object]]:
        """CSAT by SLA policy and queue, then each policy's total (queue "*")."""
        by_policy: dict[str, list[int]] = defaultdict(list)
        rows: list[dict[str, object]] = []
        for (policy, queue), scores in sorted(self.csat.items()):
            by_policy[policy].extend(scores)
            rows.append(_csat_row(policy, queue, scores))
        rows += [_csat_row(policy, "*", scores) for policy, scores in sorted(by_policy.items())]
        return rows

    def answer_rows(self) -> list[dict[str, object]]:
        """Per escalation level: how long the next agent reply or acknowledgement took."""
        rows: list[dict[str, object]] = []
        for level in sorted(set(self.answer_ms) | set(self.unanswered)):
            times = sorted(self.answer_ms.get(level, []))
            rows.append(
                {
                    "level": level,
                    "answered": len(times),
                    "unanswered": self.unanswered.get(level, 0),
                    **{f"p{p}_ms": percentile(times, p) for p in (50, 90)},
                }
            )
        return rows

    def alert_rows(self) -> list[dict[str, object]]:
        ordered = sorted(self.ops_alerts, key=lambda a: (a.window_end, a.queue, a.kind.value))
        return [
            {
                "alert_id": a.alert_id,
                "kind": a.kind.value,
                "queue": a.queue,
                "window_start": format_ts(a.window_start),
                "window_end": format_ts(a.window_end),
                "observed": a.observed,
                "baseline": a.baseline,
                "threshold": a.threshold,
                "message": a.message,
            }
            for a in ordered
        ]

    def to_dict(self) -> dict[str, object]:
        """The whole report as JSON-ready data, in a fixed order (`--format json`)."""
        times = sorted(self.first_response_ms)
        board = None
        if self.board is not None:
            levels = Counter(entry.level for entry in self.board.values())
            board = {
                "open": len(self.board),
                "by_level": {f"L{k}": v for k, v in sorted(levels.items())},
            }
        return {
            "policy": self.policy_source,
            "events": self.events,
            "tickets": self.tickets,
            "bad_lines": self.bad_lines,
            "duplicates": self.duplicates,
            "escalations": sum(self.by_reason.values()),
            "priority_bumps": self.priority_bumps,
            "reminders": self.reminders,
            "by_reason": dict(sorted(self.by_reason.items())),
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_level": {f"L{k}": v for k, v in sorted(self.by_level.items())},
            "silenced": dict(sorted(self.silenced.items())),
            "board": board,
            "per_hour": [
                {"hour": format_ts(hour), "reason": reason, "escalations": n}
                for (hour, reason), n in sorted(self.per_hour.items())
            ],
            "attainment": [
                {
                    "policy": policy,
                    "metric": metric,
                    "met": cell.met,
                    "missed": cell.missed,
                    "open": cell.open,
                    "rate": cell.rate,
                }
                for (policy, metric), cell in sorted(self.attainment.items())
            ],  # fmt: skip
            "first_response_ms": {f"p{p}": percentile(times, p) for p in (50, 75, 90, 95, 99)},
            "csat": self.csat_rows(),
            "answer_times": self.answer_rows(),
            "ops_alerts": self.alert_rows(),
            "ops_late": self.ops_late,
        }

    def _insight_lines(self) -> list[str]:
        lines = ["", "CSAT by SLA policy and queue (1-5; satisfied = 4 or 5):"]
        rows = self.csat_rows()
        if not rows:
            lines.append("  (no CSAT_RECEIVED events)")
        else:
            lines.append(f"  {'policy':<22} {'queue':<26} {'surveys':>8} {'mean':>5} {'sat':>7}")
        for row in rows:
            lines.append(
                f"  {row['policy']!s:<22} {row['queue']!s:<26} {row['surveys']:>8,}"
                f" {row['mean']:>5.2f} {row['satisfied']:>7.1%}"
            )
        lines += ["", "time to answer an escalation (next agent reply or acknowledgement):"]
        answers = self.answer_rows()
        if not answers:
            lines.append("  (no escalations)")
        for row in answers:
            p50, p90 = row["p50_ms"], row["p90_ms"]
            lines.append(
                f"  L{row['level']}: {row['answered']:,} answered (p50={_human(_ms(p50))}"
                f" p90={_human(_ms(p90))}), {row['unanswered']:,} never answered"
            )
        if self.ops is None:
            lines += ["", "queue ops alerts: off (ops_alerts.enabled is false)"]
            return lines
        kinds = Counter(a.kind.value for a in self.ops_alerts)
        lines += [
            "",
            f"queue ops alerts over the history (as `escalator alerts`): {len(self.ops_alerts):,}"
            + "".join(f"  {k}: {v:,}" for k, v in sorted(kinds.items())),
        ]
        for row in self.alert_rows()[:20]:
            lines.append(
                f"  {row['window_end']} {row['kind']:<18} {row['queue']}: {row['message']}"
            )
        if len(self.ops_alerts) > 20:
            lines.append(f"  ... and {len(self.ops_alerts) - 20:,} more (--format json lists all)")
        if self.ops_late:
            lines.append(
                f"  {self.ops_late:,} queue stats came later than allowed_lateness behind their"
                " partition's clock: dropped, as `escalator alerts` drops them"
            )
        return lines

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
            *self._insight_lines(),
        ]
        return "\n".join(lines)


def _ms(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _csat_row(policy: str, queue: str, scores: list[int]) -> dict[str, object]:
    return {
        "policy": policy,
        "queue": queue,
        "surveys": len(scores),
        "mean": round(sum(scores) / len(scores), 3),
        "satisfied": round(sum(1 for s in scores if s >= 4) / len(scores), 4),
    }


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


@dataclass
class Comparison:
    """The what-if of two policies over the same history: tickets whose escalations differ,
    escalations both send at different times, and the escalation counts by reason."""

    base: str
    other: str
    tickets: int
    differing: list[tuple[str, str, str]]  # (ticket, only under base, only under other)
    only_base: int
    only_other: int
    moved: list[tuple[int, str, int]]  # (shift ms, escalation_id, base due_at), largest first
    by_reason: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, object]:
        shifts = sorted(shift for shift, _, _ in self.moved)
        return {
            "base": self.base,
            "other": self.other,
            "tickets": self.tickets,
            "tickets_differing": len(self.differing),
            "escalated_only_under_base": self.only_base,
            "escalated_only_under_other": self.only_other,
            "differing": [{"ticket_id": t, "removed": a, "added": b} for t, a, b in self.differing],
            "by_reason": {r: {"base": a, "other": b} for r, (a, b) in self.by_reason.items()},
            "moved": len(self.moved),
            "moved_earlier": sum(1 for shift in shifts if shift < 0),
            "median_shift_ms": shifts[(len(shifts) - 1) // 2] if shifts else None,
            "moved_escalations": [
                {
                    "escalation_id": eid,
                    "base_due": format_ts(at),
                    "other_due": format_ts(at + shift),
                    "shift_ms": shift,
                }
                for shift, eid, at in self.moved
            ],  # fmt: skip
        }


def comparison(base: BacktestReport, other: BacktestReport) -> Comparison:
    tickets = sorted(set(base.outcomes) | set(other.outcomes))
    differing = []
    for ticket in tickets:
        a = base.ticket_outcome(ticket)
        b = other.ticket_outcome(ticket)
        if a != b:
            differing.append((ticket, _describe(a - b), _describe(b - a)))
    moved = sorted(
        (other.due[eid] - at, eid, at)
        for eid, at in base.due.items()
        if eid in other.due and other.due[eid] != at
    )
    reasons = sorted(set(base.by_reason) | set(other.by_reason))
    return Comparison(
        base.policy_source,
        other.policy_source,
        base.tickets,
        differing,
        sum(1 for t, _, _ in differing if not other.outcomes.get(t)),
        sum(1 for t, _, _ in differing if not base.outcomes.get(t)),
        sorted(moved, key=lambda m: (-abs(m[0]), m[1])),
        {r: (base.by_reason.get(r, 0), other.by_reason.get(r, 0)) for r in reasons},
    )


def compare(base: BacktestReport, other: BacktestReport, limit: int = 20) -> str:
    """Tickets whose escalations differ between two policies, and escalations that both send
    at different times: the what-if view."""
    return format_comparison(comparison(base, other), limit)


def format_comparison(diff: Comparison, limit: int = 20) -> str:
    lines = [
        f"what-if: {diff.base}  vs  {diff.other}",
        f"tickets with different escalations: {len(diff.differing):,} of {diff.tickets:,}"
        f" (escalated only under the first: {diff.only_base:,}; only under the second:"
        f" {diff.only_other:,})",
    ]
    for ticket, removed, added in diff.differing[:limit]:
        lines.append(f"  {ticket}: -{removed} +{added}")
    if len(diff.differing) > limit:
        lines.append(f"  ... and {len(diff.differing) - limit:,} more")
    lines += _moved_lines(diff.moved, limit)
    return "\n".join(lines)


def _moved_lines(moved: list[tuple[int, str, int]], limit: int) -> list[str]:
    """Escalations with the same id under both policies but another due time."""
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
    for shift, eid, at in moved[:limit]:
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
