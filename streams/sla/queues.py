"""Queue-level ops alerts: event-time hopping windows per queue, and the alert rules.

Pure and deterministic like the rest of `streams.sla`: no Kafka, Faust or clock. The
`escalator alerts` process (streams/runtime/alerts.py) feeds it the worker's `queue-stats`
messages; tests and offline tools feed it stats derived from a backtest. Both get the
same closed windows and the same alert ids.

- A queue is ``channel/category`` of a ticket (``unknown`` for a missing part).
- A stat is one counted thing: a ticket CREATED, RESOLVED, or an SLA breach, at an
  event-time instant, with an id that makes a redelivered stat a no-op.
- Windows hop: window ``[k*hop, k*hop + window)`` for every whole k (aligned to the epoch),
  so each instant belongs to ``window / hop`` windows. Counts are kept per hop-sized
  bucket and summed when a window closes.
- ``close_until(watermark)`` closes every window whose end is at or before the watermark,
  for every queue seen so far, in order, including windows in which a queue saw nothing
  (a quiet window is a zero in the baseline). A stat older than the watermark of the
  last close is late: it is dropped and counted, because its windows may already be out.
- Alerts are edge-triggered: a rule fires on the window where its condition starts to
  hold for the queue, not again on the following (overlapping) windows while it keeps
  holding. With the same stats in any order, duplicates included, and no late stats, the
  closed windows and alerts are the same however often ``close_until`` is called.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from streams.sla.durations import format_duration
from streams.sla.events import EventType
from streams.sla.frozen import field_values
from streams.sla.policy import OpsAlerts

UNKNOWN = "unknown"


def queue_name(channel: str | None, category: str | None) -> str:
    """The queue of a ticket: ``channel/category``, e.g. ``email/billing``."""
    return f"{channel or UNKNOWN}/{category or UNKNOWN}"


class StatKind(StrEnum):
    CREATED = "created"
    RESOLVED = "resolved"
    BREACHED = "breached"


# The events that count as a queue stat of their own (a breach is counted from the actions).
QUEUE_STATS: Final = {EventType.CREATED: StatKind.CREATED, EventType.RESOLVED: StatKind.RESOLVED}


class AlertKind(StrEnum):
    VOLUME_SURGE = "VOLUME_SURGE"
    BREACH_RATE_SPIKE = "BREACH_RATE_SPIKE"
    BACKLOG_GROWTH = "BACKLOG_GROWTH"


def alert_id(kind: str, queue: str, window_start: int, window_end: int) -> str:
    """Deterministic alert id; the same function as ``schemas.records.ops_alert_id``."""
    key = f"{kind}\x1f{queue}\x1f{window_start}\x1f{window_end}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()


def stat_id(kind: StatKind, ref: str) -> str:
    """De-duplication id of a stat: ``c:<event_id>``, ``r:<event_id>``, ``b:<escalation_id>``."""
    return f"{kind.value[0]}:{ref}"


@dataclass(frozen=True, slots=True)
class QueueStat:
    """One counted thing. ``id`` de-duplicates: the same id counts once."""

    queue: str
    kind: StatKind
    at: int
    id: str

    def __reduce__(self) -> tuple[type[QueueStat], tuple[Any, ...]]:
        return QueueStat, field_values(self)


@dataclass(frozen=True, slots=True)
class QueueAlert:
    alert_id: str
    kind: AlertKind
    queue: str
    window_start: int
    window_end: int
    observed: float
    baseline: float
    threshold: float
    message: str

    def __reduce__(self) -> tuple[type[QueueAlert], tuple[Any, ...]]:
        return QueueAlert, field_values(self)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A closed window of one queue, with the alerts it raised."""

    queue: str
    window_start: int
    window_end: int
    created: int
    resolved: int
    breached: int
    alerts: tuple[QueueAlert, ...] = ()

    def __reduce__(self) -> tuple[type[ClosedWindow], tuple[Any, ...]]:
        return ClosedWindow, field_values(self)

    def key(self) -> tuple[int, str]:
        return self.window_end, self.queue


# --------------------------------------------------------------------------- rules


def _surge(config: OpsAlerts, history: Sequence[ClosedWindow], i: int) -> tuple[bool, float]:
    """Whether window i of the history surges, and its baseline (mean created of the
    `baseline_windows` non-overlapping windows just before it; needs all of them)."""
    rule = config.volume_surge
    step = config.window // config.hop
    if i - step * rule.baseline_windows < 0:
        return False, 0.0
    counts = [history[i - step * (j + 1)].created for j in range(rule.baseline_windows)]
    baseline = sum(counts) / len(counts)
    created = history[i].created
    return created >= rule.min_created and created >= rule.factor * baseline, baseline


def _backlog(config: OpsAlerts, w: ClosedWindow) -> bool:
    rule = config.backlog_growth
    return w.created - w.resolved >= rule.min_growth and w.created >= rule.ratio * w.resolved


def _breach_rate(w: ClosedWindow) -> float:
    return w.breached / max(w.created, 1)


def _breaches(config: OpsAlerts, w: ClosedWindow) -> bool:
    rule = config.breach_rate_spike
    return w.breached >= rule.min_breaches and _breach_rate(w) >= rule.rate


def history_needed(config: OpsAlerts) -> int:
    """How many closed windows per queue the rules look back at (current included)."""
    step = config.window // config.hop
    surge = step * config.volume_surge.baseline_windows + 2
    return max(surge, config.backlog_growth.consecutive + 2)


def evaluate(config: OpsAlerts, history: Sequence[ClosedWindow]) -> list[QueueAlert]:
    """The alerts of the last window of ``history`` (consecutive windows of one queue)."""
    if not history:
        return []
    i = len(history) - 1
    w = history[i]
    span = f"{format_duration(config.window)} window"
    out: list[QueueAlert] = []

    def alert(kind: AlertKind, observed: float, baseline: float, limit: float, msg: str) -> None:
        out.append(
            QueueAlert(
                alert_id(kind, w.queue, w.window_start, w.window_end), kind, w.queue,
                w.window_start, w.window_end, observed, baseline, limit, msg,
            )
        )  # fmt: skip

    surging, baseline = _surge(config, history, i)
    if surging and not (i > 0 and _surge(config, history, i - 1)[0]):
        rule = config.volume_surge
        alert(
            AlertKind.VOLUME_SURGE, w.created, baseline,
            max(rule.factor * baseline, float(rule.min_created)),
            f"{w.queue}: {w.created} tickets created in a {span}, "
            f"{rule.factor:g}x the usual {baseline:.1f}",
        )  # fmt: skip
    run = config.backlog_growth.consecutive
    if (
        i + 1 >= run
        and all(_backlog(config, history[j]) for j in range(i - run + 1, i + 1))
        and not (i - run >= 0 and _backlog(config, history[i - run]))
    ):
        alert(
            AlertKind.BACKLOG_GROWTH, w.created - w.resolved, w.resolved,
            float(config.backlog_growth.min_growth),
            f"{w.queue}: backlog grew by {w.created - w.resolved} in a {span} "
            f"({w.created} created, {w.resolved} resolved), {run} windows in a row",
        )  # fmt: skip
    if _breaches(config, w) and not (i > 0 and _breaches(config, history[i - 1])):
        alert(
            AlertKind.BREACH_RATE_SPIKE, _breach_rate(w), w.created,
            config.breach_rate_spike.rate,
            f"{w.queue}: {w.breached} SLA breaches for {w.created} tickets created in a {span}",
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------- windows


@dataclass(slots=True)
class _Bucket:
    created: int = 0
    resolved: int = 0
    breached: int = 0
    ids: set[str] = field(default_factory=set)

    def __reduce__(self) -> tuple[type[_Bucket], tuple[Any, ...]]:
        return _Bucket, field_values(self)


@dataclass(slots=True)
class _Queue:
    next_start: int  # start of the next window to close
    buckets: dict[int, _Bucket] = field(default_factory=dict)  # bucket index -> counts
    history: deque[ClosedWindow] = field(default_factory=deque)
    closed_any: bool = False

    def __reduce__(self) -> tuple[type[_Queue], tuple[Any, ...]]:
        return _Queue, field_values(self)


class QueueWindows:
    """Hopping event-time windows per queue; see the module docstring."""

    def __init__(self, config: OpsAlerts) -> None:
        self.config = config
        self.size = config.window
        self.hop = config.hop
        self.queues: dict[str, _Queue] = {}
        self.closed_until: int | None = None
        self.added = 0
        self.duplicates = 0
        self.late = 0
        self._keep = history_needed(config)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its fields (`backtest --jobs` sends it between processes): compiled by
        mypyc, a class is rebuilt through its __init__, which needs the config."""
        counts = (self.closed_until, self.added, self.duplicates, self.late)
        return QueueWindows, (self.config,), (self.queues, counts)

    def __setstate__(self, state: tuple[dict[str, _Queue], tuple[Any, ...]]) -> None:
        self.queues, (self.closed_until, self.added, self.duplicates, self.late) = state

    def first_window(self, at: int) -> int:
        """Start of the earliest window that contains ``at``."""
        return (at // self.hop) * self.hop - self.size + self.hop

    def add(self, stat: QueueStat) -> bool:
        """Count a stat; False if it is a duplicate or late (then it is only counted as such)."""
        if self.closed_until is not None and stat.at < self.closed_until:
            self.late += 1
            return False
        queue = self.queues.get(stat.queue)
        first = self.first_window(stat.at)
        if queue is None:
            queue = self.queues[stat.queue] = _Queue(next_start=first)
        elif not queue.closed_any and first < queue.next_start:
            queue.next_start = first
        index = stat.at // self.hop
        bucket = queue.buckets.get(index)
        if bucket is None:
            bucket = queue.buckets[index] = _Bucket()
        if stat.id in bucket.ids:
            self.duplicates += 1
            return False
        bucket.ids.add(stat.id)
        if stat.kind is StatKind.CREATED:
            bucket.created += 1
        elif stat.kind is StatKind.RESOLVED:
            bucket.resolved += 1
        else:
            bucket.breached += 1
        self.added += 1
        return True

    def close_until(self, watermark: int) -> list[ClosedWindow]:
        """Close every window ending at or before ``watermark``; ordered by (end, queue)."""
        if self.closed_until is not None and watermark <= self.closed_until:
            return []
        self.closed_until = watermark
        out: list[ClosedWindow] = []
        steps = self.size // self.hop
        for name, queue in self.queues.items():
            while queue.next_start + self.size <= watermark:
                start = queue.next_start
                first = start // self.hop
                created = resolved = breached = 0
                for index in range(first, first + steps):
                    bucket = queue.buckets.get(index)
                    if bucket is not None:
                        created += bucket.created
                        resolved += bucket.resolved
                        breached += bucket.breached
                window = ClosedWindow(name, start, start + self.size, created, resolved, breached)
                queue.history.append(window)
                if len(queue.history) > self._keep:
                    queue.history.popleft()
                # every rule needs a ticket created or breached in the window (their minimums
                # are at least 1), and most windows of a quiet queue have neither
                alerts = evaluate(self.config, queue.history) if created or breached else []
                if alerts:
                    window = ClosedWindow(
                        name, start, start + self.size, created, resolved, breached, tuple(alerts)
                    )
                    queue.history[-1] = window
                out.append(window)
                queue.buckets.pop(first, None)  # no later window starts in this bucket
                queue.next_start = start + self.hop
                queue.closed_any = True
        out.sort(key=ClosedWindow.key)
        return out

    def history(self, queue: str) -> list[ClosedWindow]:
        """The recent closed windows of a queue, oldest first."""
        found = self.queues.get(queue)
        return [] if found is None else list(found.history)


def alerts_of(windows: Iterable[ClosedWindow]) -> list[QueueAlert]:
    return [alert for window in windows for alert in window.alerts]


class PartitionClock:
    """The evaluator's event-time watermark over the partitions of ``queue-stats``.

    Every message carries its partition's clock (``wm``: the worker's event-time watermark,
    or its wall clock). The watermark is the smallest clock over all partitions minus the
    allowed lateness, so one partition far ahead never closes windows another partition
    still fills; it is None until every partition has said something (the worker sends a
    heartbeat on each clock tick). A stat older than its own partition's clock, as its
    message carries it, minus the lateness is late: every stat of one ticket event is judged
    against the same clock, the one before that event. That decision depends only on the
    partition's own message order, so re-reading the topic after a restart makes the same
    decisions.
    """

    def __init__(self, partitions: Iterable[int], lateness: int) -> None:
        self.clocks: dict[int, int | None] = {p: None for p in partitions}
        self.lateness = lateness

    def __reduce__(self) -> tuple[Any, ...]:
        return PartitionClock, ((), self.lateness), self.clocks

    def __setstate__(self, clocks: dict[int, int | None]) -> None:
        self.clocks = clocks

    def observe(self, partition: int, wm: int, at: int | None = None) -> bool:
        """Advance a partition's clock to ``wm``; False if ``at`` is late for that partition."""
        before = self.clocks.get(partition)
        clock = wm if before is None or wm > before else before
        self.clocks[partition] = clock
        return at is None or at >= clock - self.lateness

    @property
    def watermark(self) -> int | None:
        values = list(self.clocks.values())
        if not values or any(v is None for v in values):
            return None
        return min(v for v in values if v is not None) - self.lateness
