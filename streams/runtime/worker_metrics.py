"""The worker's Prometheus metrics: counted in plain ints and dicts, exported at scrape time.

The processor runs once per event, so it never touches prometheus_client there (a labelled
metric costs a lock and a label lookup per call): it counts into `WorkerStats`, and
`WorkerCollector` turns those counts into metric families when /metrics is scraped. Every
label is bounded: event type, DLQ reason, escalation kind/reason/level, SLA policy name,
SLA metric, topic and partition; never a ticket or customer id.

Open, at-risk and breached tickets and the table size are kept per partition and moved
on each state change, so a scrape reads a few dict entries and never scans the table.

Wall-clock figures are observed only on a live (wall-clock) worker: in event-time mode
(replays, the demo) due_at and tick instants are historical event time while emitted_at
is now, so "emitted_at - due_at" would measure the age of the replayed data, not detection.
Event lag (now - occurred_at) is observed in both modes: on a replay it is the true age.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from schemas.codec import ErrorKind
from streams.runtime.metrics import generate_latest, mark_component
from streams.sla.actions import (
    BREACH_REASON,
    BREACHES,
    Action,
    Escalation,
    Kind,
    PriorityBump,
    Reason,
    Reminder,
    SlaOutcome,
)
from streams.sla.events import DONE_STATUSES, EventType
from streams.sla.state import Clock, TicketState

if TYPE_CHECKING:
    from streams.runtime.processor import TicketProcessor

log = logging.getLogger("escalator.metrics")

SLA_METRICS = tuple(BREACH_REASON)  # first_response, next_response, resolution
WARNING = Reason.SLA_WARNING
OK, AT_RISK, BREACHED = 0, 1, 2  # a ticket's risk: its worst active SLA clock

DETECTION_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EVENT_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
TICK_LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Category = tuple[str, int] | None  # (policy, risk) of an open ticket; None when not open
View = tuple[Category, dict[str, Clock]]  # category and SLA clocks before a change
NEW_TICKET: View = (None, {})


class Buckets:
    """A histogram of millisecond values: one bisect and two additions per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds_s: Iterable[float]) -> None:
        self.bounds = [b * 1000.0 for b in bounds_s]
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0

    def observe(self, ms: int) -> None:
        self.counts[bisect_left(self.bounds, ms)] += 1
        self.sum += ms

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        """The Prometheus histogram, in seconds, with cumulative buckets."""
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else repr(bound / 1000.0)
            buckets.append((le, total))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum / 1000.0)


def category(state: TicketState) -> Category:
    """(policy, risk) of an open ticket: breached if an active clock breached, at risk if one
    passed a warning threshold; None once solved or closed."""
    if state.closed or state.status in DONE_STATUSES:
        return None
    risk = OK
    for clock in state.clocks.values():
        if clock.ended_at is None:
            if clock.breached_at is not None:
                return state.policy, BREACHED
            if clock.last_fraction > 0:
                risk = AT_RISK
    return state.policy, risk


def _add(counts: dict[Any, int], key: Any, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


class WorkerStats:
    """What the processor counts for /metrics, in plain ints and dicts (see module doc)."""

    def __init__(self, policies: Iterable[str], live: bool) -> None:
        self.live = live  # wall-clock worker: detection latency and tick figures are meaningful
        self.policies = list(policies)
        self.events = dict.fromkeys(EventType, 0)
        self.escalations: dict[tuple[Kind, Reason, int], int] = {}
        self.bumps: dict[Reason, int] = {}
        self.reminders: dict[Reason, int] = {}
        pairs = [(p, m) for p in self.policies for m in SLA_METRICS]
        self.breaches = dict.fromkeys(pairs, 0)
        self.warnings = dict.fromkeys(pairs, 0)
        self.clocks = dict.fromkeys(pairs, 0)  # SLA clocks started
        self.ended: dict[tuple[str, str, str], int] = {}  # (policy, metric, outcome)
        self.detection = Buckets(DETECTION_BUCKETS_S)
        self.event_lag = Buckets(EVENT_LAG_BUCKETS_S)
        self.tick_lag = Buckets(TICK_LAG_BUCKETS_S)
        self.last_tick_ms: int | None = None
        self.tickets: dict[int, dict[tuple[str, int], int]] = {}  # partition -> category counts
        self.keys: dict[int, int] = {}  # partition -> keys in the tickets table

    # ------------------------------------------------------------ per event / tick

    def tick(self, tick_ms: int, now_ms: int) -> None:
        """A wall-clock tick applied at `now_ms` (not called for event-time ticks)."""
        self.last_tick_ms = now_ms
        self.tick_lag.observe(now_ms - tick_ms)

    def view(self, state: TicketState | None) -> View:
        """What applied() compares against; taken before the engine mutates the state."""
        if state is None:
            return NEW_TICKET
        return category(state), state.clocks.copy()

    def applied(
        self, partition: int, before: View, state: TicketState, new_key: bool,
        event_type: EventType, lag_ms: int,
    ) -> None:  # fmt: skip
        """A ticket after an event: count the event and its lag, move the ticket's category,
        count the SLA clocks the event started."""
        self.events[event_type] += 1
        self.event_lag.observe(lag_ms)
        old, clocks = before
        new = category(state)
        if old != new:
            self.moved(partition, old, new)
        for metric, clock in state.clocks.items():
            prior = clocks.get(metric)  # a restarted clock is a new Clock with the next round
            if prior is None or prior.round != clock.round:
                _add(self.clocks, (state.policy, metric))
        if new_key:
            _add(self.keys, partition)

    def moved(self, partition: int, old: Category, new: Category) -> None:
        if old == new:
            return
        counts = self.tickets.setdefault(partition, {})
        if old is not None:
            _add(counts, old, -1)
        if new is not None:
            _add(counts, new)

    def removed(self, partition: int, state: TicketState) -> None:
        """A ticket deleted from the table (closed, retention over)."""
        self.moved(partition, category(state), None)
        _add(self.keys, partition, -1)

    def actions(self, actions: list[Action], now_ms: int) -> None:
        """Count a ticket's actions (enum members as keys: `.value` is a slow property)."""
        for action in actions:
            if isinstance(action, Escalation):
                reason = action.reason
                _add(self.escalations, (action.kind, reason, action.level))
                if action.sla_metric is not None:
                    if reason in BREACHES:
                        _add(self.breaches, (action.policy, action.sla_metric))
                    elif reason is WARNING:
                        _add(self.warnings, (action.policy, action.sla_metric))
                if self.live and action.event_id is None:  # fired by time, not by an event
                    self.detection.observe(now_ms - action.due_at)
            elif isinstance(action, PriorityBump):
                _add(self.bumps, action.reason)
            elif isinstance(action, Reminder):
                _add(self.reminders, action.reason)
            elif isinstance(action, SlaOutcome):
                outcome = "breached" if action.breached else "met" if action.met else "stopped"
                _add(self.ended, (action.policy, action.metric, outcome))

    # ------------------------------------------------------------ rebalance

    def reset(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.tickets[p] = {}
            self.keys[p] = 0

    def add(self, partition: int, state: TicketState) -> None:
        """One ticket found while rebuilding a partition's index (after reset)."""
        self.moved(partition, None, category(state))
        _add(self.keys, partition)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.tickets.pop(p, None)
            self.keys.pop(p, None)

    def by_policy(self, risk: int | None) -> dict[str, int]:
        """Open tickets per policy (risk None), or those of one risk."""
        out = dict.fromkeys(self.policies, 0)
        for counts in self.tickets.values():
            for (policy, r), n in counts.items():
                if risk is None or r == risk:
                    out[policy] = out.get(policy, 0) + n
        return out


PRODUCTION, SHADOW = 1, 2  # ShadowDiff's sides, as bits: 3 is both
SIDES = {PRODUCTION: "production", SHADOW: "shadow"}


class ShadowDiff:
    """Tickets escalated by only one of production and the shadow policy.

    Per ticket: a ticket is "escalated by" a side once that side sent at least one
    Escalation record for it (SLA warnings included), and "escalated by only one" while one
    side has and the other has not yet. Counted over the tickets whose escalations this
    worker saw since it took their partition (a rebalance or restart starts the count
    afresh, as a gauge does), until production removes the ticket from its store. Kept as
    one small int per escalated ticket; the gauge reads two counters.
    """

    def __init__(self) -> None:
        self.sides: dict[int, dict[bytes, int]] = {}  # partition -> ticket key -> side bits
        self.only = {PRODUCTION: 0, SHADOW: 0}

    def escalated(self, partition: int, key: bytes, side: int) -> None:
        sides = self.sides.setdefault(partition, {})
        old = sides.get(key, 0)
        new = old | side
        if new == old:
            return
        sides[key] = new
        if old:
            self.only[old] -= 1
        if new in self.only:
            self.only[new] += 1

    def left(self, partition: int, key: bytes) -> None:
        """The ticket left production's store (closed, retention over)."""
        side = self.sides.get(partition, {}).pop(key, 0)
        if side in self.only:
            self.only[side] -= 1

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            for side in self.sides.pop(p, {}).values():
                if side in self.only:
                    self.only[side] -= 1


LagSource = Callable[[], Iterable[tuple[str, int, int]]]  # (topic, partition, messages behind)


class WorkerCollector(Collector):
    """Turns the processor's counts into metric families at scrape time."""

    def __init__(self, processor: TicketProcessor, lag: LagSource) -> None:
        self.processor = processor
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        processor = self.processor
        stats = processor.metrics
        assert stats is not None, "WorkerCollector needs a processor with WorkerStats"
        counters = processor.counters
        yield _family(
            CounterMetricFamily, "escalator_events_processed_total",
            "Valid ticket events applied to the SLA engine, by event type", ["type"],
            stats.events.items(),
        )  # fmt: skip
        yield CounterMetricFamily(
            "escalator_duplicate_events_total",
            "Redelivered ticket events (known event_id) that changed nothing",
            value=counters.duplicates,
        )
        yield CounterMetricFamily(
            "escalator_transactions_aborted_total",
            "Transactions refused at commit (a generation that moved on in a rebalance),"
            " aborted and read again from the committed offsets without a restart",
            value=counters.aborted,
        )
        yield _family(
            CounterMetricFamily, "escalator_silenced_total",
            "Escalations and reminders due before the backfill horizon: recorded as missed,"
            " never sent, by reason", ["reason"], counters.silenced.items(),
        )  # fmt: skip
        yield _family(
            CounterMetricFamily, "escalator_dlq_events_total",
            "Input messages sent to the dead-letter topic, by reason (DeadLetter.error_kind)",
            ["reason"], ((k.value, counters.rejected.get(k.value, 0)) for k in ErrorKind),
        )  # fmt: skip
        yield _family(
            CounterMetricFamily, "escalator_escalations_total",
            "Escalations emitted, by kind, reason and target level", ["kind", "reason", "level"],
            (((k.value, r.value, str(level)), n) for (k, r, level), n in stats.escalations.items()),
        )  # fmt: skip
        for name, doc, by_reason in (
            ("escalator_priority_bumps_total", "Priority bumps emitted", stats.bumps),
            ("escalator_reminders_total", "Reminders emitted", stats.reminders),
        ):
            yield _family(CounterMetricFamily, name, f"{doc}, by reason", ["reason"],
                          by_reason.items())  # fmt: skip
        for name, doc, by_sla in (
            ("escalator_sla_breaches_total", "SLA targets breached", stats.breaches),
            ("escalator_sla_warnings_total", "SLA warning thresholds crossed", stats.warnings),
            ("escalator_sla_clocks_total", "SLA clocks started", stats.clocks),
        ):
            yield _family(CounterMetricFamily, name, f"{doc}, by SLA policy and SLA metric",
                          ["policy", "sla_metric"], by_sla.items())  # fmt: skip
        yield _family(
            CounterMetricFamily, "escalator_sla_clocks_ended_total",
            "SLA clocks finished, by policy, SLA metric and outcome (met, breached, stopped)",
            ["policy", "sla_metric", "outcome"], stats.ended.items(),
        )  # fmt: skip
        yield stats.event_lag.family(
            "escalator_event_lag_seconds", "Processing wall time minus the event's occurred_at"
        )
        if stats.live:
            yield CounterMetricFamily(
                "escalator_clock_jumps_total",
                "Jumps of the system clock the wall-clock tick caught up gradually",
                value=processor.clock.jumps,
            )
            yield stats.detection.family(
                "escalator_detection_latency_seconds",
                "emitted_at - due_at of escalations fired by time (wall-clock workers only)",
            )
            yield stats.tick_lag.family(
                "escalator_clock_tick_lag_seconds",
                "Wall time a clock tick is applied minus the tick's timestamp",
            )
            if stats.last_tick_ms is not None and processor.due:
                # Only while this worker owns partitions: one that lost them gets no ticks.
                yield GaugeMetricFamily(
                    "escalator_clock_last_tick_timestamp_seconds",
                    "Wall time at which the last clock tick was applied",
                    value=stats.last_tick_ms / 1000.0,
                )
        for name, doc, risk in (
            ("escalator_tickets_open", "Open tickets (not solved or closed)", None),
            ("escalator_tickets_at_risk", "Open tickets past an SLA warning, none breached",
             AT_RISK),
            ("escalator_tickets_breached", "Open tickets with an active SLA clock breached",
             BREACHED),
        ):  # fmt: skip
            yield _family(GaugeMetricFamily, name, f"{doc}, on this worker's partitions",
                          ["policy"], stats.by_policy(risk).items())  # fmt: skip
        yield _family(
            GaugeMetricFamily, "escalator_table_keys",
            "Keys in the worker's tables (its partitions)", ["table"],
            [("tickets", sum(stats.keys.values()))],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "escalator_due_index_entries",
            "Entries in the in-memory due-time index (heaps, incl. superseded ones, which are "
            "dropped once they outnumber the live ones)",
            value=sum(len(heap) for heap in processor.due.values()),
        )
        yield from self._shadow()
        yield _family(
            GaugeMetricFamily, "escalator_consumer_lag",
            "Messages between the log end (last stable offset) and the committed offset",
            ["topic", "partition"], (((t, str(p)), lag) for t, p, lag in self.lag()),
        )  # fmt: skip

    def _shadow(self) -> Iterator[Metric]:
        """The shadow policy's figures (`escalator worker --shadow-policy`), if it runs."""
        shadow, diff = self.processor.shadow, self.processor.diff
        if shadow is None or diff is None or shadow.metrics is None:
            return
        stats = shadow.metrics
        yield _family(
            CounterMetricFamily, "escalator_shadow_escalations_total",
            "Escalations the shadow policy sent to shadow-escalations, by kind, reason and "
            "target level (production's: escalator_escalations_total)",
            ["kind", "reason", "level"],
            (((k.value, r.value, str(level)), n) for (k, r, level), n in stats.escalations.items()),
        )  # fmt: skip
        for name, doc, by_reason in (
            ("escalator_shadow_priority_bumps_total", "Shadow priority bumps", stats.bumps),
            ("escalator_shadow_reminders_total", "Shadow reminders", stats.reminders),
        ):
            yield _family(CounterMetricFamily, name, f"{doc}, by reason", ["reason"],
                          ((r.value, n) for r, n in by_reason.items()))  # fmt: skip
        yield _family(
            GaugeMetricFamily, "escalator_shadow_only_tickets",
            "Tickets escalated by only one of production and the shadow policy, by the side "
            "that did (since this worker took their partition; see ShadowDiff)", ["side"],
            ((SIDES[side], n) for side, n in diff.only.items()),
        )  # fmt: skip


def _family(
    cls: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    labels: list[str],
    samples: Iterable[tuple[str | Sequence[str], float]],
) -> Metric:
    """A metric family from (label value or values, sample value) pairs."""
    family = cls(name, doc, labels=labels)
    for key, value in samples:
        family.add_metric([str(key)] if isinstance(key, str) else list(key), value)
    return family


def metrics_exposition(processor: TicketProcessor, lag: LagSource) -> Callable[[], bytes]:
    """What the worker's /metrics answers: build_info (and the client's process metrics),
    plus the worker's metrics unless they are off (ESCALATOR_METRICS=off: no WorkerStats)."""
    mark_component("worker")
    registry: CollectorRegistry | None = None
    if processor.metrics is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerCollector(processor, lag))

    def render() -> bytes:
        body = generate_latest(REGISTRY)
        return body if registry is None else body + generate_latest(registry)

    return render
