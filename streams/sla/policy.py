"""The policy file: calendars, SLA policies, the escalation matrix and triggers.

One YAML file, validated on load. Every error names the file, the line and the
field, because operators edit this file by hand and deploy it to production.
The validated models are also what the engine reads at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

import holidays as public_holidays
import yaml
from dateutil.rrule import MONTHLY, YEARLY, rrulestr
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.sla.actions import Kind, Reason
from streams.sla.calendar import BusinessCalendar
from streams.sla.durations import format_duration, parse_duration
from streams.sla.events import WAITING_STATUSES, EventType, Priority, Status

ALWAYS_OPEN = "24x7"
MetricName = Literal[
    "first_response",
    "next_response",
    "resolution",
    # the longest stretch without an agent reply once the first one came (Zendesk's periodic
    # update; pausable_update stands still in pause statuses), time outside pause statuses
    # until solved (requester wait) and time in NEW/OPEN until solved (agent work)
    "periodic_update",
    "pausable_update",
    "requester_wait",
    "agent_work",
]
METRICS: tuple[str, ...] = get_args(MetricName)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_POLICY = "default_policy.yaml"


def _duration(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration is text such as '30m', '4h', '1h30m' or '2d'")
    return parse_duration(value)


Duration = Annotated[int, BeforeValidator(_duration), PlainSerializer(format_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_days(key: str) -> list[int]:
    key = key.strip().lower()
    if key == "daily":
        return list(range(7))
    if key == "weekdays":
        return list(range(5))
    if "-" in key:
        first, last = (part.strip() for part in key.split("-", 1))
        if first in WEEKDAYS and last in WEEKDAYS:
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last)
            if a <= b:
                return list(range(a, b + 1))
    elif key in WEEKDAYS:
        return [WEEKDAYS.index(key)]
    raise ValueError(f"'{key}' is not a day: use mon..sun, a range like mon-fri, weekdays or daily")


def _parse_minute(text: str) -> int:
    hh, _, mm = text.strip().partition(":")
    if not (hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise ValueError(f"'{text}' is not a time of day HH:MM")
    minute = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minute > 1440:
        raise ValueError(f"'{text}' is not a time of day between 00:00 and 24:00")
    return minute


def _parse_span(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"'{text}' is not an opening span; write e.g. '09:00-17:00'")
    return _parse_minute(start), _parse_minute(end)


_MAX_HOLIDAY_YEARS = 100


def _years(value: Any) -> Any:
    """`2026`, `2026-2030` or a list of years."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        first, sep, last = value.partition("-")
        if sep and first.strip().isdigit() and last.strip().isdigit():
            return list(range(int(first), int(last) + 1))
        raise ValueError(f"'{value}' is not a year range; write e.g. 2026-2030")
    return value


def _holiday_list(value: Any) -> Any:
    """A plain list of dates is the `dates` of a holiday spec."""
    return {"dates": value} if isinstance(value, list) else value


class HolidaySpec(_Model):
    """A calendar's closed days: dates, a country's (and region's) public holidays from the
    `holidays` package, and company holidays every year (`MM-DD`) or by RRULE (the nth weekday
    of a month). Built once when the policy loads, for `years`: the engine sees dates only."""

    dates: list[date] = Field(default_factory=list)
    country: str | None = None
    subdiv: str | None = None
    observed: bool = True  # also the weekday a holiday on a weekend is observed on
    years: Annotated[list[int], BeforeValidator(_years)] | None = None
    every_year: list[str] = Field(default_factory=list)
    rrules: list[str] = Field(default_factory=list)

    @field_validator("years")
    @classmethod
    def _year_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value or not all(1900 <= year <= 2200 for year in value):
                raise ValueError("years must lie between 1900 and 2200, e.g. 2026-2030")
            if max(value) - min(value) >= _MAX_HOLIDAY_YEARS:
                raise ValueError(f"at most {_MAX_HOLIDAY_YEARS} years")
        return value

    def build(self) -> frozenset[date]:
        """Every closed date; raises ValueError for what _holiday_problems reports."""
        days = set(self.dates)
        years = sorted(set(self.years or ()))
        if self.country is not None:
            found = public_holidays.country_holidays(
                self.country.upper(), subdiv=self.subdiv, years=years, observed=self.observed
            )
            days.update(found.keys())
        for text in self.every_year:
            month, day = _month_day(text)
            for year in years:
                if day <= 28 or _valid_date(year, month, day):
                    days.add(date(year, month, day))
        for text in self.rrules:
            days.update(_expand_rrule(text, years))
        return frozenset(days)


def _month_day(text: str) -> tuple[int, int]:
    month, sep, day = str(text).strip().partition("-")
    digits = sep and month.isdigit() and day.isdigit() and len(month) == len(day) == 2
    if digits and _valid_date(2024, int(month), int(day)):  # a leap year: 02-29 is a date
        return int(month), int(day)
    raise ValueError(f"'{text}' is not a day of the year MM-DD, e.g. 12-24")


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _expand_rrule(text: str, years: Sequence[int]) -> set[date]:
    """The dates an RRULE (RFC 5545, YEARLY or MONTHLY, e.g. the 4th Thursday of November:
    FREQ=YEARLY;BYMONTH=11;BYDAY=+4TH) gives within `years`."""
    body = str(text).strip().removeprefix("RRULE:")
    if "DTSTART" in body.upper() or "\n" in body:
        raise ValueError(f"'{text}': give one RRULE without DTSTART; `years` bounds it")
    if not years:
        return set()
    first, last = datetime(min(years), 1, 1), datetime(max(years), 12, 31)
    try:
        rule = rrulestr(body, dtstart=first)
    except TypeError:  # rrule() without its freq
        raise ValueError(f"'{text}' is not an RRULE: it needs FREQ=YEARLY or MONTHLY") from None
    except ValueError as exc:
        raise ValueError(f"'{text}' is not an RRULE: {exc}") from None
    freq = getattr(rule, "_freq", None)
    if freq not in (YEARLY, MONTHLY):
        raise ValueError(
            f"'{text}': a holiday rule repeats YEARLY or MONTHLY (e.g. "
            "FREQ=YEARLY;BYMONTH=11;BYDAY=+4TH), not more often"
        )
    wanted = set(years)
    return {
        moment.date() for moment in rule.between(first, last, inc=True) if moment.year in wanted
    }


class CalendarSpec(_Model):
    """Business hours in a time zone; SLA clocks on this calendar only run while it is open."""

    timezone: str = "UTC"
    hours: dict[str, str | list[str]]
    holidays: Annotated[HolidaySpec, BeforeValidator(_holiday_list)] = Field(
        default_factory=HolidaySpec
    )
    _calendar: BusinessCalendar | None = PrivateAttr(default=None)

    def build(self, name: str) -> BusinessCalendar:
        weekly: dict[int, list[tuple[int, int]]] = {}
        for key, spans in self.hours.items():
            for day in _parse_days(key):
                for span in [spans] if isinstance(spans, str) else spans:
                    weekly.setdefault(day, []).append(_parse_span(span))
        return BusinessCalendar(
            name=name,
            timezone=self.timezone,
            hours={day: tuple(sorted(spans)) for day, spans in weekly.items()},
            holidays=self.holidays.build(),
        )


class _TicketConditions(_Model):
    """Conditions on a ticket's attributes, shared by SLA matching and triggers: all given
    keys must hold (AND); each lists accepted values (OR); tags hold if any tag is listed."""

    tier: list[str] | None = None
    priority: list[Priority] | None = None
    channel: list[str] | None = None
    category: list[str] | None = None
    tags: list[str] | None = None
    group: list[str] | None = None  # the agent group the ticket is assigned to

    def accepts(
        self,
        tier: str | None,
        priority: Priority,
        channel: str | None,
        category: str | None,
        tags: Iterable[str],
        group: str | None = None,
    ) -> bool:
        return (
            (self.tier is None or tier in self.tier)
            and (self.priority is None or priority in self.priority)
            and (self.channel is None or channel in self.channel)
            and (self.category is None or category in self.category)
            and (self.tags is None or any(tag in self.tags for tag in tags))
            and (self.group is None or group in self.group)
        )


class Match(_TicketConditions):
    """Which tickets an SLA policy covers. Empty matches all."""

    def is_catch_all(self) -> bool:
        return all(
            value is None
            for value in (
                self.tier, self.priority, self.channel, self.category, self.tags, self.group
            )
        )  # fmt: skip


Target = Duration | dict[Literal["LOW", "NORMAL", "HIGH", "URGENT", "default"], Duration]


class Targets(_Model):
    """One duration per metric, or one per priority (with an optional `default`)."""

    first_response: Target | None = None
    next_response: Target | None = None
    resolution: Target | None = None
    periodic_update: Target | None = None
    pausable_update: Target | None = None
    requester_wait: Target | None = None
    agent_work: Target | None = None

    @field_validator(*METRICS)
    @classmethod
    def _covers_all_priorities(cls, value: Target | None) -> Target | None:
        if isinstance(value, dict) and "default" not in value:
            missing = [p.value for p in Priority if p.value not in value]
            if missing:
                raise ValueError(
                    f"no target for priority {', '.join(missing)}; add it or 'default'"
                )
        return value

    def target(self, metric: str, priority: Priority) -> int | None:
        value: Target | None = getattr(self, metric)
        if value is None or isinstance(value, int):
            return value
        return value.get(priority.value, value.get("default"))


class SlaPolicy(_Model):
    name: str = Field(min_length=1)
    match: Match = Field(default_factory=Match)
    calendar: str = ALWAYS_OPEN
    targets: Targets
    warn_at: list[float] = Field(default_factory=lambda: [0.75])
    pause_statuses: list[Status] = Field(default_factory=lambda: list(WAITING_STATUSES))
    # "matrix": a breach climbs the escalation matrix; "category": it goes to the ticket's
    # functional chain (escalation_matrix.functional) when its category has one.
    breach_route: Literal["matrix", "category"] = "matrix"
    # Per metric, events that cancel its running clock (the ticket left scope: neither met nor
    # missed, no outcome) or reset it (it starts again from zero, its thresholds with new ids),
    # in the triggers' conditions model.
    clocks: dict[MetricName, ClockConditions] = Field(default_factory=dict)

    @field_validator("warn_at")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for fraction in value:
            if not 0 < fraction < 1:
                raise ValueError(f"{fraction} is not a fraction between 0 and 1 (exclusive)")
        if sorted(set(value)) != value:
            raise ValueError("fractions must be ascending and distinct, e.g. [0.5, 0.75, 0.9]")
        return value


class Level(_Model):
    level: int = Field(ge=1)
    name: str
    contact: str
    allowed: Duration | None = None
    calendar: str | None = None


class Executive(_Model):
    contact: str


class FunctionalStep(_Model):
    """One contact of a category's functional chain; `allowed` unanswered before the next."""

    contact: str
    allowed: Duration | None = None


def _functional_chain(value: Any) -> Any:
    """A bare team name is a chain of one step (it never climbs)."""
    return [{"contact": value}] if isinstance(value, str) else value


FunctionalChain = Annotated[list[FunctionalStep], BeforeValidator(_functional_chain)]


StopClimbOn = Literal["acknowledged", "agent_reply", "solved"]
_STOP_CLIMB_ON: tuple[StopClimbOn, ...] = ("acknowledged", "agent_reply", "solved")


class Matrix(_Model):
    """Ordered levels; each may stay unanswered for `allowed` before the next is called.

    `stop_climb_on` says what answers an escalation (stops its climb); `repeat` pages the
    levels again from level 2, up to that many times, after the top level's `allowed`
    (PagerDuty's "repeat this policy")."""

    calendar: str = ALWAYS_OPEN
    levels: list[Level] = Field(min_length=1)
    stop_climb_on: list[StopClimbOn] = Field(default_factory=lambda: list(_STOP_CLIMB_ON))
    repeat: int = Field(default=0, ge=0, le=9)
    functional: dict[str, FunctionalChain] = Field(default_factory=dict)
    # Named chains, and which SLA metric's breaches and which kind of trigger escalation go
    # to one instead of the levels: a first-response breach and a resolution breach can
    # follow different chains. They climb like functional chains (a step's `allowed`).
    chains: dict[str, FunctionalChain] = Field(default_factory=dict)
    by_metric: dict[MetricName, str] = Field(default_factory=dict)
    by_kind: dict[Literal["HIERARCHICAL", "FUNCTIONAL", "AUTOMATIC"], str] = Field(
        default_factory=dict
    )
    # Customer tier: its breaches follow a named chain (before by_metric), and/or its
    # tickets' levels page other contacts (e.g. vip: {3: vip-account-team}).
    by_tier: dict[str, str] = Field(default_factory=dict)
    tier_contacts: dict[str, dict[int, str]] = Field(default_factory=dict)
    executive: Executive
    support_levels: dict[int, str] = Field(
        default_factory=lambda: {
            0: "self-service",
            1: "frontline",
            2: "tier2",
            3: "experts",
            4: "vendor",
        }
    )

    @property
    def top(self) -> int:
        return self.levels[-1].level

    def level(self, number: int) -> Level:
        return self.levels[min(max(number, 1), self.top) - 1]


class StatusFor(_Model):
    status: Status
    at_least: Duration


class When(_TicketConditions):
    """Trigger conditions, all of which must hold."""

    tags_added: list[str] | None = None
    tags_removed: list[str] | None = None
    event: list[EventType] | None = None
    transfers_at_least: int | None = Field(default=None, ge=1)
    reopens_at_least: int | None = Field(default=None, ge=1)
    csat_at_most: int | None = Field(default=None, ge=1, le=5)
    status_for: StatusFor | None = None
    escalation_open_for: Duration | None = None

    @property
    def timed(self) -> bool:
        return self.status_for is not None or self.escalation_open_for is not None

    @model_validator(mode="after")
    def _not_empty(self) -> When:
        if not self.model_fields_set:
            raise ValueError("a trigger needs at least one condition")
        return self


class ClockConditions(_Model):
    """When an SLA metric's clock starts (instead of at creation), stops (done: met unless it
    breached), is cancelled (no outcome), reset (from zero), paused (it banks the business time
    it used, as in a pause status) and resumed: trigger conditions on an event."""

    start: When | None = None
    stop: When | None = None
    cancel: When | None = None
    reset: When | None = None
    pause: When | None = None
    resume: When | None = None


class Escalate(_Model):
    kind: Kind
    reason: Reason
    level: int | None = Field(default=None, ge=1)
    team: str | None = None
    route_by_category: bool = False
    support_level_up: bool = False


class BumpPriority(_Model):
    to: Priority | None = None
    by: int | None = Field(default=None, ge=1, le=3)

    @model_validator(mode="after")
    def _one(self) -> BumpPriority:
        if (self.to is None) == (self.by is None):
            raise ValueError("give exactly one of 'to' (a priority) or 'by' (steps)")
        return self


class Remind(_Model):
    target: str = "assignee"
    reason: Reason


class TriggerAction(_Model):
    escalate: Escalate | None = None
    bump_priority: BumpPriority | None = None
    remind: Remind | None = None

    @model_validator(mode="after")
    def _one(self) -> TriggerAction:
        if len(self.model_fields_set) != 1:
            raise ValueError("each action is exactly one of escalate, bump_priority or remind")
        return self


class Trigger(_Model):
    name: str = Field(min_length=1)
    when: When
    actions: list[TriggerAction] = Field(min_length=1)
    calendar: str = ALWAYS_OPEN


class VolumeSurge(_Model):
    """More tickets created in a window than `factor` x the queue's recent mean."""

    factor: float = Field(default=3.0, gt=1)
    baseline_windows: int = Field(default=8, ge=1, le=200)
    min_created: int = Field(default=20, ge=1)


class BacklogGrowth(_Model):
    """Created minus resolved at least `min_growth`, and created >= `ratio` x resolved,
    in `consecutive` windows in a row."""

    min_growth: int = Field(default=15, ge=1)
    ratio: float = Field(default=1.5, ge=1)
    consecutive: int = Field(default=3, ge=1, le=100)


class BreachRateSpike(_Model):
    """SLA breaches per ticket created in the window at least `rate`, and at least
    `min_breaches` breaches."""

    rate: float = Field(default=0.5, gt=0)
    min_breaches: int = Field(default=10, ge=1)


class OpsAlerts(_Model):
    """Queue-level alerts (queue = channel/category) over event-time hopping windows."""

    enabled: bool = True
    window: Duration = 15 * 60_000
    hop: Duration = 5 * 60_000
    allowed_lateness: Duration = 5 * 60_000
    volume_surge: VolumeSurge = Field(default_factory=VolumeSurge)
    backlog_growth: BacklogGrowth = Field(default_factory=BacklogGrowth)
    breach_rate_spike: BreachRateSpike = Field(default_factory=BreachRateSpike)

    @field_validator("window", "hop")
    @classmethod
    def _at_least_a_second(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("must be at least 1s")
        return value


class Tracking(_Model):
    """How long tickets are tracked, and how far back event time may still page anybody."""

    # Deadlines and triggers older than this behind the driver's clock (the worker's wall
    # clock, or the event-time watermark) update state and outcomes but page nobody.
    backfill_horizon: Duration = 24 * 3_600_000
    closed_retention: Duration = 7 * 86_400_000  # a CLOSED ticket's state, for late duplicates
    solved_retention: Duration = 30 * 86_400_000  # a SOLVED ticket that never gets CLOSED


SlaPolicy.model_rebuild()


class PolicyFile(_Model):
    version: Literal[1] = 1
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    # A team's own business hours: the SLA clocks of a ticket assigned to the group run on this
    # calendar instead of its SLA policy's (a policy on 24x7, calendar time, stays on 24x7).
    group_calendars: dict[str, str] = Field(default_factory=dict)
    # Help-desk status names (case-insensitive) -> canonical statuses, e.g. "waiting on third
    # party": ON_HOLD, applied where webhooks are decoded (connectors/sources/zendesk.py,
    # freshdesk.py).
    statuses: dict[str, Status] = Field(default_factory=dict)
    sla_policies: list[SlaPolicy] = Field(min_length=1)
    escalation_matrix: Matrix
    triggers: list[Trigger] = Field(default_factory=list)
    ops_alerts: OpsAlerts = Field(default_factory=OpsAlerts)
    tracking: Tracking = Field(default_factory=Tracking)


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str
    line: int | None = None


class YamlFileError(ValueError):
    """All problems of one hand-edited YAML file, each with its line and field."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for problem in self.problems:
            where = f"{self.source}:{problem.line}" if problem.line else self.source
            field_name = _dotted(problem.path)
            out.append(
                f"{where}: {field_name}: {problem.message}"
                if field_name
                else f"{where}: {problem.message}"
            )
        return out


class PolicyError(YamlFileError):
    """All problems of one policy file, each with its line and field."""


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_map(
    node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":int"):
                key = int(key)
            lines.setdefault(path + (key,), key_node.start_mark.line + 1)
            _line_map(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines)


def _locate(
    loc: Sequence[str | int], lines: Mapping[tuple[str | int, ...], int]
) -> tuple[tuple[str | int, ...], int | None]:
    """Keep the parts of a pydantic location that exist in the file, and find their line."""
    path: tuple[str | int, ...] = ()
    for part in loc:
        known = path + (part,) in lines
        if known or (isinstance(part, str) and part in (*METRICS, "hours", "to", "by")):
            path = path + (part,)
    line = None
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            line = lines[path[:cut]]
            break
    return path, line


# --------------------------------------------------------------------------- compiled


@dataclass(frozen=True)
class Policy:
    """A validated policy file with its calendars built, ready for the engine."""

    spec: PolicyFile
    source: str
    calendars: Mapping[str, BusinessCalendar]
    event_triggers: tuple[Trigger, ...] = field(default=())
    timed_triggers: tuple[Trigger, ...] = field(default=())

    @property
    def sla_policies(self) -> list[SlaPolicy]:
        return self.spec.sla_policies

    @property
    def matrix(self) -> Matrix:
        return self.spec.escalation_matrix

    @property
    def ops_alerts(self) -> OpsAlerts:
        return self.spec.ops_alerts

    @property
    def tracking(self) -> Tracking:
        return self.spec.tracking

    def calendar(self, name: str | None) -> BusinessCalendar:
        return self.calendars[name or ALWAYS_OPEN]

    def sla_calendar(self, sla: SlaPolicy, group: str | None) -> BusinessCalendar:
        """The calendar an SLA policy's clocks run on for a ticket of `group`: the team's own
        (group_calendars) unless the policy counts calendar time (24x7)."""
        team = self.spec.group_calendars.get(group or "") if group is not None else None
        if team is None or sla.calendar == ALWAYS_OPEN:
            return self.calendar(sla.calendar)
        return self.calendar(team)

    @property
    def statuses(self) -> Mapping[str, Status]:
        """Custom help-desk status names, lower-cased, -> canonical statuses."""
        return {name.strip().lower(): status for name, status in self.spec.statuses.items()}

    def climb(self, level: int) -> tuple[int, BusinessCalendar] | None:
        """How long an unanswered escalation may stay at `level` before it climbs, and on
        which calendar; None for a level with no limit, and at the top of the matrix unless
        the matrix repeats."""
        matrix = self.matrix
        if level > matrix.top or (level == matrix.top and not matrix.repeat):
            return None
        spec = matrix.level(level)
        if spec.allowed is None:
            return None
        return spec.allowed, self.calendar(spec.calendar or matrix.calendar)

    def match(
        self,
        tier: str | None,
        priority: Priority,
        channel: str | None,
        category: str | None,
        tags: Iterable[str],
        group: str | None = None,
    ) -> SlaPolicy:
        tag_list = list(tags)
        for sla in self.spec.sla_policies:
            if sla.match.accepts(tier, priority, channel, category, tag_list, group):
                return sla
        return self.spec.sla_policies[-1]

    def sla(self, name: str) -> SlaPolicy:
        for sla in self.spec.sla_policies:
            if sla.name == name:
                return sla
        raise KeyError(name)

    def normalized(self) -> str:
        """The policy as the engine sees it, for `escalator policy check`."""
        data = self.spec.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


_ROUNDS = ("next_response", "periodic_update", "pausable_update")  # a round per reply


def _semantic_problems(spec: PolicyFile) -> list[Problem]:
    problems: list[Problem] = []
    known = {ALWAYS_OPEN, *spec.calendars}

    def need_calendar(name: str | None, path: tuple[str | int, ...]) -> None:
        if name is not None and name not in known:
            problems.append(
                Problem(path, f"unknown calendar '{name}'; known: {', '.join(sorted(known))}")
            )

    names: set[str] = set()
    for i, sla in enumerate(spec.sla_policies):
        need_calendar(sla.calendar, ("sla_policies", i, "calendar"))
        for metric, conditions in sla.clocks.items():
            if metric in _ROUNDS and conditions.start is not None:
                problems.append(
                    Problem(
                        ("sla_policies", i, "clocks", metric, "start"),
                        f"{metric} starts at each reply; 'start' is for first_response, "
                        "resolution, requester_wait and agent_work",
                    )
                )
            where = ("sla_policies", i, "clocks", metric)
            if (conditions.pause is None) != (conditions.resume is None):
                given, missing = (
                    ("pause", "resume") if conditions.resume is None else ("resume", "pause")
                )
                problems.append(
                    Problem(
                        (*where, given),
                        f"'{given}' needs '{missing}': a clock paused by a condition runs again "
                        "only when its resume condition holds",
                    )
                )
            for what in ("start", "stop", "cancel", "reset", "pause", "resume"):
                when = getattr(conditions, what)
                if when is not None and when.timed:
                    problems.append(
                        Problem(
                            ("sla_policies", i, "clocks", metric, what),
                            "a clock's conditions are checked on each event: status_for and "
                            "escalation_open_for belong to triggers",
                        )
                    )
        if sla.name in names:
            problems.append(Problem(("sla_policies", i, "name"), f"duplicate name '{sla.name}'"))
        names.add(sla.name)
    last = len(spec.sla_policies) - 1
    if not spec.sla_policies[last].match.is_catch_all():
        problems.append(
            Problem(
                ("sla_policies", last, "match"),
                "the last SLA policy must match every ticket (no match keys), "
                "so no ticket runs without an SLA",
            )
        )
    for group, calendar in spec.group_calendars.items():
        need_calendar(calendar, ("group_calendars", group))
        if calendar == ALWAYS_OPEN:
            problems.append(
                Problem(
                    ("group_calendars", group),
                    "a team calendar gives a team its own business hours; 24x7 is calendar "
                    "time, which an SLA policy chooses with `calendar: 24x7`",
                )
            )
    canonical = {status.value.lower(): status for status in Status}
    canonical.update({"hold": Status.ON_HOLD, "on-hold": Status.ON_HOLD})
    custom: dict[str, str] = {}
    for name, status in spec.statuses.items():
        key = name.strip().lower()
        status_path: tuple[str | int, ...] = ("statuses", name)
        if not key:
            problems.append(Problem(status_path, "a help-desk status name cannot be blank"))
        elif key in canonical and canonical[key] != status:
            problems.append(
                Problem(
                    status_path,
                    f"'{name}' is the canonical status {canonical[key].value}; "
                    "map only custom help-desk statuses",
                )
            )
        elif key in custom:
            problems.append(
                Problem(
                    status_path,
                    f"'{name}' is listed twice (names are case-insensitive): "
                    f"also as '{custom[key]}'",
                )
            )
        custom.setdefault(key, name)
    matrix = spec.escalation_matrix
    need_calendar(matrix.calendar, ("escalation_matrix", "calendar"))
    for i, level in enumerate(matrix.levels):
        path: tuple[str | int, ...] = ("escalation_matrix", "levels", i)
        if level.level != i + 1:
            problems.append(
                Problem((*path, "level"), f"levels are numbered 1, 2, 3...; expected {i + 1}")
            )
        need_calendar(level.calendar, (*path, "calendar"))
        if i == 0 and level.allowed is not None and len(matrix.levels) > 1:
            problems.append(
                Problem(
                    (*path, "allowed"),
                    "level 1 is where every ticket starts and nothing climbs from it (a climb"
                    " follows an escalation that raised the ticket); remove its 'allowed'",
                )
            )
        elif level.allowed is None and 0 < i != len(matrix.levels) - 1:
            problems.append(
                Problem((*path, "allowed"), "only the last level may stay until resolved")
            )
    if matrix.repeat:
        if len(matrix.levels) < 2:
            problems.append(
                Problem(
                    ("escalation_matrix", "repeat"),
                    "a repeat pages levels 2 and up again; the matrix has only level 1",
                )
            )
        elif matrix.levels[-1].allowed is None:
            problems.append(
                Problem(
                    ("escalation_matrix", "levels", len(matrix.levels) - 1, "allowed"),
                    f"with repeat: {matrix.repeat} the last level needs 'allowed': how long it"
                    " may stay unanswered before the chain starts again at level 2",
                )
            )
    for tier, contacts in matrix.tier_contacts.items():
        for number in contacts:
            if not 1 <= number <= matrix.top:
                problems.append(
                    Problem(
                        ("escalation_matrix", "tier_contacts", tier, number),
                        f"the matrix has levels 1..{matrix.top}",
                    )
                )
    for group in ("by_metric", "by_kind", "by_tier"):
        for key, chain in getattr(matrix, group).items():
            if chain not in matrix.chains:
                chains = ", ".join(sorted(matrix.chains)) or "none (add escalation_matrix.chains)"
                problems.append(
                    Problem(
                        ("escalation_matrix", group, key),
                        f"unknown chain '{chain}'; known: {chains}",
                    )
                )
    for name, chain in matrix.chains.items():
        if not chain:
            problems.append(
                Problem(("escalation_matrix", "chains", name), "a chain needs at least one step")
            )
    stops = matrix.stop_climb_on
    for i, stop in enumerate(stops):
        if stop in stops[:i]:
            problems.append(
                Problem(("escalation_matrix", "stop_climb_on", i), f"'{stop}' is listed twice")
            )
    if "solved" not in stops:
        problems.append(
            Problem(
                ("escalation_matrix", "stop_climb_on"),
                "a solved ticket never climbs: list 'solved' (and any of 'acknowledged',"
                " 'agent_reply')",
            )
        )
    names = set()
    for i, trigger in enumerate(spec.triggers):
        path = ("triggers", i)
        need_calendar(trigger.calendar, (*path, "calendar"))
        if trigger.name in names:
            problems.append(Problem((*path, "name"), f"duplicate name '{trigger.name}'"))
        names.add(trigger.name)
        when = trigger.when
        if when.timed:
            for event_only in ("tags_added", "tags_removed", "event", "csat_at_most"):
                if getattr(when, event_only) is not None:
                    problems.append(
                        Problem(
                            (*path, "when", event_only),
                            "a timed condition (status_for, escalation_open_for) cannot be "
                            "combined with a condition on the triggering event",
                        )
                    )
            if when.status_for is not None and when.escalation_open_for is not None:
                problems.append(Problem((*path, "when"), "use one timed condition per trigger"))
        for j, action in enumerate(trigger.actions):
            escalate = action.escalate
            if escalate and escalate.level is not None and escalate.level > matrix.top:
                problems.append(
                    Problem(
                        (*path, "actions", j, "escalate", "level"),
                        f"the matrix has levels 1..{matrix.top}",
                    )
                )
    ops = spec.ops_alerts
    if ops.hop > ops.window or ops.window % ops.hop:
        problems.append(
            Problem(
                ("ops_alerts", "hop"),
                f"hop ({format_duration(ops.hop)}) must divide window "
                f"({format_duration(ops.window)}) evenly, e.g. window 15m, hop 5m",
            )
        )
    return problems


SpecT = TypeVar("SpecT", bound=BaseModel)


def validate_yaml(
    text: str,
    source: str,
    model: type[SpecT],
    what: str = "the policy file",
    error_class: type[YamlFileError] = PolicyError,
) -> tuple[SpecT, dict[tuple[str | int, ...], int]]:
    """Parse YAML text into `model` and map each path to its line; raise `error_class` naming
    file, line and field. Shared by every hand-edited YAML file (policy, webhook targets)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_class(source, [Problem((), f"not valid YAML: {problem}", line)]) from None
    except ValueError:
        # A scalar YAML resolves but cannot build, e.g. the date 2026-13-01: find and name it.
        raise error_class(source, _unbuildable_scalars(root)) from None
    lines: dict[tuple[str | int, ...], int] = {}
    if root is not None:
        _line_map(root, (), lines)
    if not isinstance(data, dict):
        raise error_class(source, [Problem((), f"{what} must be a YAML mapping", 1)])
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path, line = _locate(error["loc"], lines)
            if error["type"] == "missing" and error["loc"][-1:] != path[-1:]:
                path = (*path, error["loc"][-1])  # a missing field is not in the file: name it
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field (check the spelling)"
            problems.append(Problem(path, message, line))
        raise error_class(source, _dedupe(problems)) from None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; raise PolicyError naming file, line and field."""
    spec, lines = validate_yaml(text, source, PolicyFile)
    problems = _semantic_problems(spec)
    calendars: dict[str, BusinessCalendar] = {ALWAYS_OPEN: BusinessCalendar.always_open()}
    for name, cal in spec.calendars.items():
        located = _calendar_problems(name, cal)
        if located:
            problems.extend(located)
            continue
        try:
            calendars[name] = cal.build(name)
        except ValueError as exc:
            problems.append(Problem(("calendars", name), str(exc)))
    if problems:
        located = [Problem(p.path, p.message, _locate(p.path, lines)[1]) for p in problems]
        raise PolicyError(source, located)
    return Policy(
        spec=spec,
        source=source,
        calendars=calendars,
        event_triggers=tuple(t for t in spec.triggers if not t.when.timed),
        timed_triggers=tuple(t for t in spec.triggers if t.when.timed),
    )


def _calendar_problems(name: str, cal: CalendarSpec) -> list[Problem]:
    """Check a calendar's time zone and spans one by one, so each error names its own line."""
    path: tuple[str | int, ...] = ("calendars", name)
    problems: list[Problem] = []
    try:
        ZoneInfo(cal.timezone)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        problems.append(
            Problem(
                (*path, "timezone"),
                f"unknown time zone '{cal.timezone}'; use an IANA name such as 'Europe/Berlin'",
            )
        )
    problems.extend(_holiday_problems((*path, "holidays"), cal.holidays))
    for key, spans in cal.hours.items():
        where = (*path, "hours", key)
        try:
            _parse_days(key)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
        for i, span in enumerate([spans] if isinstance(spans, str) else spans):
            span_path = where if isinstance(spans, str) else (*where, i)
            try:
                start, end = _parse_span(span)
            except ValueError as exc:
                problems.append(Problem(span_path, str(exc)))
                continue
            if start >= end:
                problems.append(
                    Problem(span_path, f"'{span}' does not end after it starts, e.g. '09:00-17:00'")
                )
    return problems


def _holiday_problems(path: tuple[str | int, ...], spec: HolidaySpec) -> list[Problem]:
    """Check a holiday spec's parts one by one, so each error names its own line."""
    problems: list[Problem] = []
    needs_years = [key for key in ("country", "every_year", "rrules") if getattr(spec, key)]
    if needs_years and spec.years is None:
        problems.append(
            Problem(
                (*path, needs_years[0]),
                "needs `years` (e.g. years: 2026-2030): holidays are listed once, when the "
                "policy loads, for the years it names",
            )
        )
    if spec.subdiv is not None and spec.country is None:
        problems.append(Problem((*path, "subdiv"), "a subdivision needs its `country`"))
    if spec.country is not None:
        supported = public_holidays.list_supported_countries()
        country = spec.country.upper()
        if country not in supported:
            problems.append(
                Problem(
                    (*path, "country"),
                    f"'{spec.country}' is not a country the holidays package knows; use an "
                    "ISO 3166-1 alpha-2 code such as US, DE or GB",
                )
            )
        elif spec.subdiv is not None and spec.subdiv not in supported[country]:
            known = ", ".join(supported[country][:12]) or "none"
            problems.append(
                Problem(
                    (*path, "subdiv"),
                    f"'{spec.subdiv}' is not a subdivision of {country}; known: {known}"
                    + (", ..." if len(supported[country]) > 12 else ""),
                )
            )
    for i, text in enumerate(spec.every_year):
        try:
            _month_day(text)
        except ValueError as exc:
            problems.append(Problem((*path, "every_year", i), str(exc)))
    for i, text in enumerate(spec.rrules):
        try:
            found = _expand_rrule(text, spec.years or [2000])
        except ValueError as exc:
            problems.append(Problem((*path, "rrules", i), str(exc)))
            continue
        if spec.years and not found:
            problems.append(
                Problem(
                    (*path, "rrules", i),
                    f"'{text}' gives no date in {min(spec.years)}-{max(spec.years)}",
                )
            )
    return problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Union types make pydantic report one mistake per alternative; keep one per field, and
    drop an alternative's complaint about a field when another one names a part inside it
    (a per-priority target with a bad duration is not "not a duration" as a whole)."""
    seen: dict[tuple[str | int, ...], Problem] = {}
    for problem in problems:
        seen.setdefault(problem.path, problem)
    return [
        problem
        for path, problem in seen.items()
        if not any(len(other) > len(path) and other[: len(path)] == path for other in seen)
    ]


def _unbuildable_scalars(root: yaml.Node | None) -> list[Problem]:
    problems: list[Problem] = []

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                walk(key_node, path)
                walk(value_node, (*path, str(key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))
        else:
            try:
                yaml.SafeLoader("").construct_object(node)
            except ValueError as exc:
                problems.append(
                    Problem(
                        path,
                        f"'{node.value}' is not a valid value: {exc}",
                        node.start_mark.line + 1,
                    )
                )

    if root is not None:
        walk(root, ())
    return problems or [Problem((), "the file has a value YAML cannot read")]


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the default policy shipped with the package when path is None."""
    if path is None:
        text = resources.files("streams.sla").joinpath(DEFAULT_POLICY).read_text("utf-8")
        return parse_policy(text, f"(built-in) {DEFAULT_POLICY}")
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [Problem((), f"cannot read: {exc.strerror}")]) from None
    return parse_policy(text, str(path))
