"""An SLA policy compiled once, at the engine's construction, into what the hot path looks up:
thresholds, targets, pause statuses, clock conditions and calendar timelines."""

from __future__ import annotations

from typing import Final

from streams.sla.calendar import BusinessCalendar, Timeline
from streams.sla.events import WAITING_STATUSES, Priority
from streams.sla.policy import METRICS, Policy, SlaPolicy

_UPDATES: Final = ("periodic_update", "pausable_update")  # a round per agent reply
_PER_CYCLE: Final = ("requester_wait", "agent_work")  # from creation (or reopen) to solved
_NOT_WORKING: Final = frozenset(WAITING_STATUSES)  # agent_work stands still


def timeline_of(calendar: BusinessCalendar, duration: int | None = None) -> Timeline | None:
    """The calendar's timeline, for adding positive durations and measuring end > start
    (which every caller checks first), or None where both are plain arithmetic (a 24x7
    calendar, or a `duration` of 0): callers then compute inline, without a call."""
    return None if duration == 0 else calendar.unchecked


def business_time(tl: Timeline | None, start: int, end: int) -> int:
    """Business time in [start, end) for end > start, which every caller checks first; plain
    subtraction without a timeline (a 24x7 calendar)."""
    return end - start if tl is None else tl.between(start, end)


class CompiledSla:
    """An SLA policy compiled for the hot path."""

    __slots__ = (
        "spec", "name", "thresholds", "targets", "steps", "pause", "timeline", "conditions",
        "deferred", "pause_of", "updates", "per_cycle", "extra", "by_group", "holds",
    )  # fmt: skip

    def __init__(
        self, spec: SlaPolicy, policy: Policy, calendar: BusinessCalendar | None = None
    ) -> None:
        team = calendar is not None  # a team's variant (group_calendars): only its calendar differs
        if calendar is None:
            calendar = policy.calendar(spec.calendar)
        self.spec = spec
        self.name = spec.name
        self.thresholds = (*spec.warn_at, 1.0)
        self.targets = {
            metric: {p: spec.targets.target(metric, p) for p in Priority} for metric in METRICS
        }
        # target -> each threshold with the elapsed time that reaches it, for the targets the
        # policy sets (a clock restored under an older policy may carry another one)
        self.steps = {
            target: self.thresholds_of(target)
            for by_priority in self.targets.values()
            for target in by_priority.values()
            if target is not None
        }
        self.pause = frozenset(spec.pause_statuses)
        self.timeline = timeline_of(calendar)
        # the statuses each metric stands still in
        self.pause_of = {metric: self.pause for metric in METRICS}
        self.pause_of["periodic_update"] = frozenset()
        self.pause_of["agent_work"] = _NOT_WORKING
        # the metrics beyond the first three that this policy sets a target for
        tracked = {m for m in METRICS if any(t is not None for t in self.targets[m].values())}
        self.updates = tuple(m for m in _UPDATES if m in tracked)
        self.per_cycle = tuple(m for m in _PER_CYCLE if m in tracked)
        self.extra = bool(self.updates or self.per_cycle)
        self.conditions = tuple(
            (metric, c.start, c.stop, c.cancel, c.reset, c.pause, c.resume)
            for metric, c in ((m, spec.clocks[m]) for m in METRICS if m in spec.clocks)
        )
        # metrics whose clock waits for its `start` condition instead of starting at creation
        self.deferred = frozenset(m for m, start, *_ in self.conditions if start is not None)
        # metrics a `pause` condition can hold: a hold on any other (kept from an older policy,
        # or another SLA policy) ends at the next chance, as the policy no longer keeps it
        self.holds = frozenset(m for m, *_, pause, resume in self.conditions if pause and resume)
        # group -> this policy on the group's own calendar (empty for a team's variant)
        self.by_group: dict[str, CompiledSla] = {}
        if not team:
            for group in policy.spec.group_calendars:
                own = policy.sla_calendar(spec, group)
                if own is not calendar:
                    self.by_group[group] = CompiledSla(spec, policy, own)

    def thresholds_of(self, target: int) -> tuple[tuple[float, int], ...]:
        return tuple((fraction, round(target * fraction)) for fraction in self.thresholds)
