"""Synthetic contact-center history: realistic enough to exercise every SLA rule.

``generate_history(agents, days, seed)`` simulates the tickets created in a window of ``days``
days and returns their lifecycle events sorted by ``(occurred_at, event_id)``. The output is a
pure function of the arguments (one ``random.Random(seed)``; no clock, no hash ordering), so the
same arguments give the same events and, through :func:`generate_to_file`, the same bytes.

The model, in brief (figures are per ticket unless stated):

* arrivals: Poisson per hour with a daily curve in the business time zone (America/New_York:
  peaks mid-morning and early afternoon, low overnight; weekends ~30%), ~8-12 tickets per agent
  per weekday, and about one outage surge a week (1-2 h at 3-5x, category it/product, many
  tagged ``system_crash``, slower queues while it lasts);
* routing: frontline assignment after a queue wait (phone/chat live 24x7 with a thin night
  crew; email/web/social worked 07:00-21:00 weekdays and 09:00-17:00 weekends, so overnight
  tickets wait for the morning); ~3% start with the self-service bot (level 0);
* first response with a long lognormal tail; customer/agent exchanges; PENDING while waiting on
  the customer (some > 48 h, some never answered and solved after days); ON_HOLD occasionally
  (rarely for weeks); transfers to tier2/experts/vendor/billing-team (a few 3+ times); trigger
  tags (0.3-2% each); priority changes; RESOLVED with a long tail; ~5% REOPENED (some twice);
  CLOSED ~4 days after the final resolution; CSAT from ~30%, worse when the ticket went badly.

Events at or after the end of the window are cut off, so the last tickets are still open.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from streams.sla.events import EventType, Priority, Status, TicketEvent
from streams.tools.history import write_history

__all__ = [
    "BUSINESS_TIMEZONE",
    "CATEGORIES",
    "CHANNELS",
    "DEFAULT_START",
    "GROUP_LEVELS",
    "TIERS",
    "TRIGGER_TAGS",
    "GenerateSummary",
    "generate_history",
    "generate_to_file",
]

DEFAULT_START: Final = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
BUSINESS_TIMEZONE: Final = "America/New_York"

_T = TypeVar("_T")

_MINUTE: Final = 60_000
_HOUR: Final = 3_600_000
_DAY: Final = 86_400_000

# --------------------------------------------------------------------------------------------
# Vocabulary shared with the default policy, with the mix of each.

CHANNELS: Final = ("phone", "email", "chat", "social", "web")
_CHANNEL_W: Final = (0.22, 0.33, 0.22, 0.08, 0.15)
_SURGE_CHANNEL_W: Final = (0.35, 0.10, 0.25, 0.25, 0.05)
_LIVE_CHANNELS: Final = frozenset(("phone", "chat"))

CATEGORIES: Final = (
    "billing",
    "payment",
    "account_access",
    "order_status",
    "product",
    "it",
    "training",
    "complaint",
    "general",
)
_CATEGORY_W: Final = (0.15, 0.08, 0.12, 0.18, 0.15, 0.08, 0.04, 0.07, 0.13)

_PRIORITIES: Final = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)
_PRIORITY_W: Final = (0.20, 0.55, 0.20, 0.05)
_SURGE_PRIORITY_W: Final = (0.02, 0.33, 0.45, 0.20)

TIERS: Final = ("standard", "premium", "vip", "enterprise")
_TIER_W: Final = (0.70, 0.18, 0.08, 0.04)

GROUP_LEVELS: Final[dict[str, int | None]] = {
    "self-service": 0,
    "frontline": 1,
    "tier2": 2,
    "experts": 3,
    "vendor": 4,
    "billing-team": None,  # functional team: the support level does not change
}
_TRANSFER_GROUPS: Final = ("tier2", "experts", "frontline", "vendor", "billing-team")
_TRANSFER_W: Final = (0.45, 0.25, 0.10, 0.08, 0.12)

# trigger tag -> share of tickets that get it; categories in which it is 3x likelier
TRIGGER_TAGS: Final[dict[str, float]] = {
    "churn_risk": 0.015,
    "at_risk": 0.010,
    "system_crash": 0.008,
    "legal": 0.003,
    "cancel": 0.012,
    "account_closure": 0.005,
    "refund": 0.020,
    "privacy": 0.004,
    "supervisor_request": 0.008,
}
_TAG_BOOST: Final[dict[str, frozenset[str]]] = {
    "churn_risk": frozenset(("complaint", "billing")),
    "at_risk": frozenset(("complaint",)),
    "system_crash": frozenset(("it", "product")),
    "legal": frozenset(("complaint",)),
    "cancel": frozenset(("account_access", "complaint", "billing")),
    "account_closure": frozenset(("account_access",)),
    "refund": frozenset(("billing", "payment", "order_status")),
    "privacy": frozenset(("account_access",)),
    "supervisor_request": frozenset(("complaint",)),
}
_TAG_BOOST_FACTOR: Final = 3.0
_PLAIN_TAGS: Final = ("needs_info", "followup", "bug", "feature_request", "duplicate", "mobile_app")
_CREATION_TAGS: Final = ("first_contact", "returning_customer", "web_form", "mobile_app")
_LANGUAGES: Final = ("en", "es", "fr", "de")
_LANGUAGE_W: Final = (0.78, 0.14, 0.05, 0.03)

# Relative ticket arrivals by local hour of day (business time zone).
_HOURLY_CURVE: Final = (
    0.12, 0.08, 0.06, 0.06, 0.08, 0.15, 0.35, 0.70, 1.20, 1.65, 1.80, 1.55,
    1.15, 1.45, 1.65, 1.45, 1.15, 0.85, 0.60, 0.45, 0.35, 0.28, 0.20, 0.15,
)  # fmt: skip
_WEEKEND_FACTOR: Final = 0.30
_TICKETS_PER_AGENT_DAY: Final = 10.0  # weekday average; each day draws 0.85-1.15x of it

# Email/web/social queue staffing (local): weekdays 07-21, weekends 09-17.
_WEEKDAY_SHIFT: Final = (7, 21)
_WEEKEND_SHIFT: Final = (9, 17)

_PRIORITY_SPEED: Final = {
    Priority.LOW: 1.3,
    Priority.NORMAL: 1.0,
    Priority.HIGH: 0.7,
    Priority.URGENT: 0.4,
}
_TIER_SPEED: Final = {"standard": 1.0, "premium": 0.85, "vip": 0.6, "enterprise": 0.6}
# Median reply time (minutes) of a group after a transfer; the vendor works on its own clock.
_GROUP_REPLY_MIN: Final = {
    "frontline": 60.0,
    "tier2": 120.0,
    "experts": 300.0,
    "billing-team": 180.0,
    "vendor": 1800.0,
}


def _cum(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    cum = [w / total for w in accumulate(weights)]
    cum[-1] = 1.0
    return cum


@dataclass(frozen=True, slots=True)
class GenerateSummary:
    tickets: int
    events: int


class _Cut(Exception):
    """A ticket's next event falls after the end of the window."""


class _Simulator:
    def __init__(self, agents: int, days: int, seed: int, start: datetime) -> None:
        if agents < 1:
            raise ValueError("agents must be >= 1")
        if days < 1:
            raise ValueError("days must be >= 1")
        if start.tzinfo is None:
            raise ValueError("start needs a time zone (e.g. tzinfo=UTC)")
        self.rng = random.Random(seed)
        self.agents = agents
        self.start = (start - _EPOCH) // timedelta(milliseconds=1)
        self.end = self.start + days * _DAY
        self.days = days
        self.tz = ZoneInfo(BUSINESS_TIMEZONE)
        self.channel_cum = _cum(_CHANNEL_W)
        self.surge_channel_cum = _cum(_SURGE_CHANNEL_W)
        self.category_cum = _cum(_CATEGORY_W)
        self.priority_cum = _cum(_PRIORITY_W)
        self.surge_priority_cum = _cum(_SURGE_PRIORITY_W)
        self.transfer_cum = _cum(_TRANSFER_W)
        self.language_cum = _cum(_LANGUAGE_W)
        self.tier_cum = _cum(_TIER_W)
        self.shift_bounds = self._shift_bounds()
        # Customers: a pool with repeats, each with a fixed tier.
        self.pool = max(20, agents * days * 4)
        self.customer_tiers = [self._pick(TIERS, self.tier_cum) for _ in range(self.pool)]
        self.surges: list[tuple[int, int, float]] = []  # (start, end, multiplier)
        # Per-tag (rate in a boosted category, rate elsewhere), keeping the overall share.
        category_share = dict(
            zip(CATEGORIES, (w / sum(_CATEGORY_W) for w in _CATEGORY_W), strict=True)
        )
        self.tag_rates: dict[str, tuple[float, float]] = {}
        for tag, rate in TRIGGER_TAGS.items():
            boosted_share = sum(category_share[c] for c in _TAG_BOOST[tag])
            plain = rate / (1.0 + (_TAG_BOOST_FACTOR - 1.0) * boosted_share)
            self.tag_rates[tag] = (plain * _TAG_BOOST_FACTOR, plain)

    # -- random helpers --------------------------------------------------------------------

    def _pick(self, values: Sequence[_T], cum: Sequence[float]) -> _T:
        return values[bisect_right(cum, self.rng.random())]

    def _lognorm(self, median_min: float, sigma: float) -> int:
        """A duration in ms: lognormal with the given median (minutes) and shape."""
        return int(median_min * _MINUTE * math.exp(sigma * self.rng.gauss(0.0, 1.0)))

    def _poisson(self, lam: float) -> int:
        rng = self.rng
        if lam <= 0:
            return 0
        if lam < 30:
            limit = math.exp(-lam)
            k = 0
            p = rng.random()
            while p > limit:
                k += 1
                p *= rng.random()
            return k
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))

    # -- calendar ----------------------------------------------------------------------------

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.tz)

    def _shift_bounds(self) -> list[int]:
        """[open, close, open, close, ...] of the email/web/social shifts around the window."""
        bounds: list[int] = []
        first = self._local(self.start).date() - timedelta(days=1)
        for i in range(self.days + 3):
            day = first + timedelta(days=i)
            lo, hi = _WEEKDAY_SHIFT if day.weekday() < 5 else _WEEKEND_SHIFT
            for hour in (lo, hi):
                local = datetime(day.year, day.month, day.day, hour, tzinfo=self.tz)
                bounds.append(int(local.timestamp() * 1000))
        return bounds

    def _staffed(self, t: int) -> int:
        """``t`` if the async queue is staffed then, else the next shift opening plus the time
        the overnight backlog takes to reach this ticket."""
        bounds = self.shift_bounds
        i = bisect_right(bounds, t)
        if i & 1 or i >= len(bounds):
            return t
        return bounds[i] + self._lognorm(45.0, 0.9)

    def _hourly_rates(self) -> list[float]:
        curve_total = sum(_HOURLY_CURVE)
        rates: list[float] = []
        day_factor: dict[Any, float] = {}
        for h in range(self.days * 24):
            local = self._local(self.start + h * _HOUR)
            factor = day_factor.get(local.date())
            if factor is None:
                factor = self.rng.uniform(0.85, 1.15)
                if local.weekday() >= 5:
                    factor *= _WEEKEND_FACTOR
                day_factor[local.date()] = factor
            per_day = self.agents * _TICKETS_PER_AGENT_DAY * factor
            rates.append(per_day * _HOURLY_CURVE[local.hour] / curve_total)
        return rates

    # -- arrivals ----------------------------------------------------------------------------

    def arrivals(self) -> list[tuple[int, bool]]:
        """(created_at, is_surge_ticket) for every ticket of the window, in time order."""
        rng = self.rng
        rates = self._hourly_rates()
        out: list[tuple[int, bool]] = []
        for h, rate in enumerate(rates):
            base = self.start + h * _HOUR
            for _ in range(self._poisson(rate)):
                out.append((base + int(rng.random() * _HOUR), False))
        # About one outage a week, on a weekday when there is one, during business hours.
        day_starts = [self.start + d * _DAY for d in range(self.days)]
        weekdays = [d for d in day_starts if self._local(d + 12 * _HOUR).weekday() < 5]
        for _ in range(max(1, self.days // 7)):
            day = rng.choice(weekdays or day_starts)
            noon = self._local(day + 12 * _HOUR)
            local = noon.replace(hour=rng.randint(9, 15), minute=rng.randrange(60), second=0)
            s = int(local.timestamp() * 1000)
            duration = rng.randint(60, 120) * _MINUTE
            mult = rng.uniform(3.0, 5.0)
            e = min(s + duration, self.end)
            if e <= s:
                continue
            self.surges.append((s, e, mult))
            hour_rate = rates[min(len(rates) - 1, max(0, (s - self.start) // _HOUR))]
            for _ in range(self._poisson(hour_rate * (mult - 1.0) * (e - s) / _HOUR)):
                out.append((s + int(rng.random() * (e - s)), True))
        out.sort()
        return [a for a in out if self.start <= a[0] < self.end]

    def _load(self, t: int) -> float:
        for s, e, mult in self.surges:
            if s <= t < e + 2 * _HOUR:  # queues stay long a while after the outage
                return mult * 0.6
        return 1.0

    # -- one ticket --------------------------------------------------------------------------

    def ticket(self, number: int, t0: int, surge: bool) -> list[TicketEvent]:
        rng = self.rng
        rand = rng.random
        pick = self._pick
        lognorm = self._lognorm
        staffed = self._staffed
        end = self.end
        tid = f"T{number:06d}"
        events: list[TicketEvent] = []
        last = t0 - 1
        seq = 0

        def emit(t: int, etype: EventType, **fields: Any) -> int:
            nonlocal last, seq
            if t <= last:
                t = last + 1000
            if t >= end:
                raise _Cut
            seq += 1
            events.append(TicketEvent(f"{tid}-{seq:03d}", tid, etype, t, **fields))
            last = t
            return t

        def agent() -> str:
            return f"agent-{rng.randrange(self.agents) + 1}"

        # -- what the ticket is
        if surge:
            channel = pick(CHANNELS, self.surge_channel_cum)
            category = "it" if rand() < 0.5 else "product"
            priority = pick(_PRIORITIES, self.surge_priority_cum)
        else:
            channel = pick(CHANNELS, self.channel_cum)
            category = pick(CATEGORIES, self.category_cum)
            priority = pick(_PRIORITIES, self.priority_cum)
        idx = int(self.pool * rand() ** 1.6)  # some customers write much more than others
        tier = self.customer_tiers[idx]
        live = channel in _LIVE_CHANNELS

        created_tags: list[str] = []
        if rand() < 0.3:
            created_tags.append(_CREATION_TAGS[rng.randrange(len(_CREATION_TAGS))])
        later_tags: list[str] = []
        if surge and rand() < 0.4:
            created_tags.append("system_crash")
        for tag, (boosted, plain) in self.tag_rates.items():
            if (
                rand() < (boosted if category in _TAG_BOOST[tag] else plain)
                and tag not in created_tags
            ):
                (created_tags if rand() < 0.35 else later_tags).append(tag)

        # -- plan of the work
        n_transfers = 0
        r = rand()
        if r < 0.15:
            n_transfers = 1 if r < 0.10 else 2 if r < 0.135 else rng.randint(3, 5)
        if category in ("billing", "payment") and rand() < 0.10:
            n_transfers += 1
        rounds = (
            0 if rand() < (0.55 if live else 0.30) else 1 + int(-math.log(rand() + 1e-12) / 1.0)
        )
        rounds = min(rounds, 8)
        if n_transfers and not rounds:
            rounds = 1
        incidents: list[tuple[int, int, str]] = []  # (round, order, kind)
        for tag in later_tags:
            incidents.append((rng.randint(0, rounds), 0, "tag:" + tag))
        if rand() < 0.06:
            incidents.append((rng.randint(0, rounds), 0, "plain_tag"))
        if rand() < 0.06:
            incidents.append((rng.randint(0, rounds), 1, "priority"))
        for _ in range(n_transfers):
            incidents.append((rng.randint(0, rounds), 2, "transfer"))
        r = rand()
        if r < 0.05:
            incidents.append((rng.randint(0, rounds), 3, "hold" if r > 0.004 else "long_hold"))
        incidents.sort()

        load = self._load(t0)
        speed = _PRIORITY_SPEED[priority] * _TIER_SPEED[tier] * load
        group = "frontline"
        transfers = 0
        reopens = 0
        timed_out = False
        first_response_ms = 0

        def reply_after(t: int, median_min: float, sigma: float = 1.2) -> int:
            return emit(
                staffed(t + int(lognorm(median_min, sigma) * speed)), EventType.AGENT_REPLIED
            )

        def transfer(t: int) -> int:
            nonlocal group, transfers
            target = group
            while target == group:
                target = pick(_TRANSFER_GROUPS, self.transfer_cum)
                if category in ("billing", "payment") and rand() < 0.5:
                    target = "billing-team" if group != "billing-team" else "tier2"
            assignee = f"vendor-{rng.randint(1, 3)}" if target == "vendor" else agent()
            t = emit(
                t + lognorm(15.0, 1.0),
                EventType.TRANSFERRED,
                status=Status.OPEN,
                group=target,
                assignee_id=assignee,
                support_level=GROUP_LEVELS[target],
                attributes={"from_group": group},
            )
            group = target
            transfers += 1
            if target == "vendor":
                return emit(
                    t + int(lognorm(_GROUP_REPLY_MIN["vendor"], 0.8)), EventType.AGENT_REPLIED
                )
            return reply_after(t, _GROUP_REPLY_MIN[target], 1.0)

        def incident(t: int, kind: str) -> int:
            nonlocal priority, speed
            if kind.startswith("tag:"):
                return emit(t + lognorm(8.0, 1.0), EventType.TAGS_CHANGED, tags_added=(kind[4:],))
            if kind == "plain_tag":
                added = (_PLAIN_TAGS[rng.randrange(len(_PLAIN_TAGS))],)
                removed = (created_tags[0],) if created_tags and rand() < 0.3 else ()
                if removed and removed[0] in TRIGGER_TAGS:
                    removed = ()
                return emit(
                    t + lognorm(8.0, 1.0),
                    EventType.TAGS_CHANGED,
                    tags_added=added,
                    tags_removed=removed,
                )
            if kind == "priority":
                rank = _PRIORITIES.index(priority)
                rank = rank + 1 if (rank == 0 or rand() < 0.75) and rank < 3 else rank - 1
                priority = _PRIORITIES[rank]
                speed = _PRIORITY_SPEED[priority] * _TIER_SPEED[tier] * load
                return emit(t + lognorm(10.0, 1.0), EventType.PRIORITY_CHANGED, priority=priority)
            if kind == "transfer":
                return transfer(t)
            # on hold: waiting on a third party; rarely for weeks (a stuck ticket)
            t = emit(t + lognorm(10.0, 1.0), EventType.STATUS_CHANGED, status=Status.ON_HOLD)
            held = (
                rng.randint(25, 40) * _DAY + lognorm(300.0, 1.0)
                if kind == "long_hold"
                else lognorm(1200.0, 1.0)
            )
            t = emit(t + held, EventType.STATUS_CHANGED, status=Status.OPEN)
            return reply_after(t, 30.0, 1.0)

        def exchange(t: int) -> tuple[int, bool]:
            """Customer answers the agent, agent answers back. (time, solved-by-timeout)."""
            nonlocal timed_out
            pending = rand() < 0.65
            if pending:
                t = emit(t + lognorm(2.0, 1.0), EventType.STATUS_CHANGED, status=Status.PENDING)
                if rand() < 0.08:  # the customer never answers: solved after a few days
                    t = emit(
                        t + rng.randint(3 * 24 * 60, 7 * 24 * 60) * _MINUTE,
                        EventType.RESOLVED,
                        status=Status.SOLVED,
                        attributes={"reason": "pending_timeout"},
                    )
                    timed_out = True
                    return t, True
            t = emit(
                t + lognorm(180.0, 1.5),
                EventType.CUSTOMER_REPLIED,
                status=Status.OPEN if pending else None,
            )
            return reply_after(t, 50.0, 1.2), False

        def work(t: int, rounds: int, plan: list[tuple[int, int, str]]) -> int:
            """Rounds of incidents and exchanges, then RESOLVED; returns the resolution time."""
            j = 0
            for i in range(rounds + 1):
                while j < len(plan) and plan[j][0] == i:
                    t = incident(t, plan[j][2])
                    j += 1
                if i == rounds:
                    break
                t, solved = exchange(t)
                if solved:
                    return t
            return emit(t + lognorm(3.0, 1.0), EventType.RESOLVED, status=Status.SOLVED)

        try:
            emit(
                t0,
                EventType.CREATED,
                status=Status.NEW,
                priority=priority,
                channel=channel,
                category=category,
                customer_id=f"C{idx + 1:05d}",
                customer_tier=tier,
                tags_added=tuple(created_tags),
                attributes={"language": pick(_LANGUAGES, self.language_cum)},
            )
            # -- routing and first response
            t = t0
            if (
                not surge
                and channel in ("web", "chat")
                and category in ("general", "account_access", "order_status")
                and rand() < 0.15
            ):
                t = emit(
                    t + lognorm(0.5, 0.5),
                    EventType.ASSIGNED,
                    status=Status.OPEN,
                    group="self-service",
                    assignee_id="bot",
                    support_level=0,
                )
                if rand() < 0.6:  # the bot solves it
                    t = emit(t + lognorm(4.0, 0.8), EventType.RESOLVED, status=Status.SOLVED)
                    rounds = -1
                else:
                    t = emit(
                        t + lognorm(3.0, 0.8),
                        EventType.TRANSFERRED,
                        status=Status.OPEN,
                        group="frontline",
                        assignee_id=agent(),
                        support_level=1,
                        attributes={"from_group": "self-service"},
                    )
                    transfers += 1
            else:
                if live:  # answered live, thinner crew at night
                    wait = lognorm(3.0 if channel == "phone" else 5.0, 1.0) * speed
                    if staffed(t) != t:
                        wait *= 3
                    t = t + int(wait)
                else:
                    t = staffed(t + int(lognorm(15.0, 1.0) * speed))
                t = emit(
                    t,
                    EventType.ASSIGNED,
                    status=Status.OPEN,
                    group="frontline",
                    assignee_id=agent(),
                    support_level=1,
                )
            if rounds >= 0:
                if live:
                    t = emit(t + lognorm(1.0, 0.6), EventType.AGENT_REPLIED)
                else:
                    t = reply_after(t, 35.0, 1.25)
                first_response_ms = t - t0
                t = work(t, rounds, incidents)
            resolved = t

            # -- reopen (before the ticket closes), up to twice
            while reopens < 2 and rand() < (0.055 if reopens == 0 else 0.25):
                reopens += 1
                t = emit(
                    t + min(lognorm(1200.0, 1.0), 3 * _DAY), EventType.REOPENED, status=Status.OPEN
                )
                t = emit(t + rng.randint(1, 30) * 1000, EventType.CUSTOMER_REPLIED)
                t = reply_after(t, 60.0, 1.1)
                resolved = t = work(t, rng.randint(0, 2), [])

            # -- close and satisfaction
            tail: list[tuple[int, EventType, dict[str, Any]]] = [
                (
                    resolved + rng.randint(84, 108) * _HOUR,
                    EventType.CLOSED,
                    {"status": Status.CLOSED},
                )
            ]
            if rand() < 0.30:
                score = pick((5, 4, 3, 2, 1), (0.50, 0.75, 0.85, 0.91, 1.0))
                penalty = (
                    (first_response_ms > 4 * _HOUR)
                    + (resolved - t0 > 3 * _DAY)
                    + (reopens > 0)
                    + (transfers >= 2)
                    + timed_out
                )
                if penalty and rand() < 0.75:
                    score = max(1, score - penalty - (rand() < 0.3))
                tail.append(
                    (resolved + lognorm(300.0, 1.2), EventType.CSAT_RECEIVED, {"csat": score})
                )
            tail.sort(key=lambda x: x[0])
            for when, etype, fields in tail:
                emit(when, etype, **fields)
        except _Cut:
            pass
        return events


def generate_history(
    agents: int, days: int, seed: int, start: datetime | None = None
) -> list[TicketEvent]:
    """Events of every ticket created in ``[start, start + days)``, sorted by
    ``(occurred_at, event_id)``. Same arguments, same events."""
    sim = _Simulator(agents, days, seed, start or DEFAULT_START)
    events: list[TicketEvent] = []
    for number, (t0, surge) in enumerate(sim.arrivals(), 1):
        events.extend(sim.ticket(number, t0, surge))
    events.sort(key=attrgetter("occurred_at", "event_id"))
    return events


def generate_to_file(
    path: str | Path,
    agents: int,
    days: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    *,
    start: datetime | None = None,
) -> GenerateSummary:
    """Generate a history and write it as JSON Lines (gzip when ``path`` ends in ``.gz``).

    ``progress`` (if given) is called with the number of events written since its previous call
    (an increment, like ``Progress.update``): every 10,000 events and once for the rest.
    """
    events = generate_history(agents, days, seed, start)
    tickets = sum(1 for e in events if e.type is EventType.CREATED)

    step = 10_000

    def counted() -> Iterator[TicketEvent]:
        for i, event in enumerate(events, 1):
            yield event
            if progress is not None and i % step == 0:
                progress(step)

    written = write_history(path, counted())
    if progress is not None and written % step:
        progress(written % step)
    return GenerateSummary(tickets=tickets, events=written)
