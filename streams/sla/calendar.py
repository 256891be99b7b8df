"""Business calendars: when an SLA clock runs.

A calendar maps weekly local opening hours in an IANA time zone, minus holidays, onto
real (UTC) time. Business time is real elapsed milliseconds inside open intervals, so a
09:00-17:00 day is 8 h even on a DST day, while a 00:00-24:00 day is 23 h or 25 h.

Local wall-clock bounds become instants through one monotone rule: a wall time ``t`` on a
local date maps to the first instant at which the local clock reads ``t`` or later. So a
time skipped by spring-forward maps to the instant right after the gap, an ambiguous time
maps to its first occurrence, and every bound of every day maps consistently: intervals
stay ordered and disjoint, and splitting one interval in two (or ending a day at 24:00 and
starting the next at 00:00) never changes a result.

Pure and deterministic: no clock reads, no I/O. Each calendar lazily caches the open UTC
intervals of the local days it has touched, in blocks of days with the open time before
each day summed up, so the hot paths (:meth:`add`, :meth:`between`) cost a few dict
lookups and a bisection however many days they span.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo

__all__ = ["BusinessCalendar", "Timeline"]

_DAY_S: Final = 86_400
_DAY_MS: Final = 86_400_000
_MINUTES_PER_DAY: Final = 1440
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_EPOCH_WEEKDAY: Final = date(1970, 1, 1).weekday()  # Thursday: weekday of local day number 0
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Give up after this many consecutive days without open time: holidays can close a
# calendar for a long stretch, and an unbounded search would hang the engine.
_MAX_CLOSED_DAYS: Final = 5 * 366
# Bound the per-calendar day cache so a long-lived worker cannot grow it without limit.
_CACHE_MAX_DAYS: Final = 100_000

_Span = tuple[int, int]
_BLOCK: Final = 32  # local days per block of prefix sums


def _offset_s(moment: datetime) -> int:
    off = moment.utcoffset()
    return 0 if off is None else int(off.total_seconds())


def _open_before(spans: tuple[_Span, ...], at: int) -> int:
    """Open ms of one day's spans before the instant ``at``."""
    total = 0
    for s, e in spans:
        if s >= at:
            break
        total += (e if e < at else at) - s
    return total


class _Block:
    """_BLOCK consecutive local days from day number ``first``: their bounds, open UTC
    intervals, and the open time before each day (a prefix sum), so that business time
    between two instants is a subtraction and adding it a bisection, however long."""

    __slots__ = ("first", "starts", "spans", "cum")

    def __init__(self, first: int, starts: list[int], spans: list[tuple[_Span, ...]]) -> None:
        self.first = first
        self.starts = starts  # _BLOCK + 1 local midnights (UTC ms), the last one the next block's
        self.spans = spans
        self.cum = [0]  # _BLOCK + 1 sums: cum[i] = open ms in this block before day i
        for day in spans:
            self.cum.append(self.cum[-1] + sum(e - s for s, e in day))


class Timeline:
    """Open intervals in UTC per local day number (days since 1970-01-01, local)."""

    __slots__ = ("_tz", "_hours", "_holidays", "_blocks", "_guess_ms")

    def __init__(
        self, tz: ZoneInfo, hours: Mapping[int, tuple[_Span, ...]], holidays: frozenset[date]
    ) -> None:
        self._tz = tz
        self._hours = tuple(hours.get(wd, ()) for wd in range(7))
        self._holidays = holidays
        self._blocks: dict[int, _Block] = {}
        # Only a first guess for locating an instant's local day; _locate corrects it.
        self._guess_ms = _offset_s(datetime(2020, 1, 1, tzinfo=tz)) * 1000

    # -- local wall time -> UTC -------------------------------------------------------

    def _offset_at(self, utc_s: int) -> int:
        return _offset_s((_EPOCH_UTC + timedelta(seconds=utc_s)).astimezone(self._tz))

    def _to_utc_ms(self, local_s: int) -> int:
        """First instant (ms) at which the local clock reads ``local_s`` or later."""
        wall = _EPOCH_NAIVE + timedelta(seconds=local_s)
        off0 = _offset_s(wall.replace(tzinfo=self._tz))
        off1 = _offset_s(wall.replace(tzinfo=self._tz, fold=1))
        if off0 >= off1:  # unique, or ambiguous (fold=0 is the earlier occurrence)
            return (local_s - off0) * 1000
        # In a gap: fold=0 uses the offset before it, fold=1 the one after. The gap's
        # end lies in (lo, hi]; transitions fall on whole seconds, so bisect seconds.
        lo, hi = local_s - off1, local_s - off0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if mid + self._offset_at(mid) >= local_s:
                hi = mid
            else:
                lo = mid
        return hi * 1000

    def _day_spans(self, k: int, start: int, end: int) -> tuple[_Span, ...]:
        spans: list[_Span] = []
        local_hours = self._hours[(k + _EPOCH_WEEKDAY) % 7]
        if local_hours and date.fromordinal(k + _EPOCH_ORDINAL) not in self._holidays:
            base = k * _DAY_S
            for s_min, e_min in local_hours:
                s = start if s_min == 0 else self._to_utc_ms(base + s_min * 60)
                e = end if e_min == _MINUTES_PER_DAY else self._to_utc_ms(base + e_min * 60)
                if e > s:  # an interval wholly inside a DST gap has no real time
                    spans.append((s, e))
        return tuple(spans)

    def _block(self, b: int) -> _Block:
        block = self._blocks.get(b)
        if block is None:
            if len(self._blocks) * _BLOCK >= _CACHE_MAX_DAYS:
                self._blocks.clear()
            first = b * _BLOCK
            starts = [self._to_utc_ms((first + i) * _DAY_S) for i in range(_BLOCK + 1)]
            spans = [self._day_spans(first + i, starts[i], starts[i + 1]) for i in range(_BLOCK)]
            block = self._blocks[b] = _Block(first, starts, spans)
        return block

    def _locate(self, at: int) -> tuple[_Block, int]:
        """The block and index of the local day holding ``at``."""
        k = (at + self._guess_ms) // _DAY_MS
        b = k // _BLOCK
        block = self._blocks.get(b) or self._block(b)
        i = k - block.first
        starts = block.starts
        if starts[i] <= at < starts[i + 1]:
            return block, i
        while at < block.starts[0]:
            b -= 1
            block = self._block(b)
        while at >= block.starts[_BLOCK]:
            b += 1
            block = self._block(b)
        return block, bisect_right(block.starts, at) - 1

    # -- queries ------------------------------------------------------------------------

    def is_open(self, at: int) -> bool:
        block, i = self._locate(at)
        for s, e in block.spans[i]:
            if at < e:
                return s <= at
        return False

    def add(self, start: int, duration: int) -> int:
        k = (start + self._guess_ms) // _DAY_MS  # _locate's fast path, inline (hot)
        block = self._blocks.get(k // _BLOCK) or self._block(k // _BLOCK)
        i = k - block.first
        if not block.starts[i] <= start < block.starts[i + 1]:
            block, i = self._locate(start)
        remaining = duration
        for s, e in block.spans[i]:  # most durations end on the day they start
            if e <= start:
                continue
            if s < start:
                s = start
            if remaining <= e - s:
                return s + remaining
            remaining -= e - s
        # Position on the block's open-time axis where `duration` is used up.
        target = block.cum[i + 1] + remaining
        closed = 0
        while target > block.cum[_BLOCK]:
            total = block.cum[_BLOCK]
            target -= total
            closed = 0 if total else closed + _BLOCK
            if closed > _MAX_CLOSED_DAYS:
                raise ValueError("calendar has no open time within ~5 years")
            block = self._block(block.first // _BLOCK + 1)
        # The day whose open time reaches the target: cum[j] < target <= cum[j + 1].
        j = bisect_left(block.cum, target) - 1
        remaining = target - block.cum[j]
        for s, e in block.spans[j]:
            if remaining <= e - s:
                return s + remaining
            remaining -= e - s
        raise AssertionError("unreachable: the prefix sums put the target in this day")

    def between(self, start: int, end: int) -> int:
        k = (start + self._guess_ms) // _DAY_MS  # _locate's fast path, inline (hot)
        first = self._blocks.get(k // _BLOCK) or self._block(k // _BLOCK)
        i = k - first.first
        if not first.starts[i] <= start < first.starts[i + 1]:
            first, i = self._locate(start)
        if end <= first.starts[i + 1]:  # most spans are within a day
            total = 0
            for s, e in first.spans[i]:
                if s >= end:
                    break
                if e > start:
                    total += (e if e < end else end) - (s if s > start else start)
            return total
        last, j = self._locate(end)
        total = last.cum[j] + _open_before(last.spans[j], end)
        total -= first.cum[i] + _open_before(first.spans[i], start)
        for b in range(first.first // _BLOCK, last.first // _BLOCK):
            total += self._block(b).cum[_BLOCK]
        return total

    def open_spans(self, start: int, end: int) -> list[_Span]:
        """The open intervals inside ``[start, end)``, clipped to it, in order."""
        out: list[_Span] = []
        block, i = self._locate(start)
        while block.starts[i] < end:
            for s, e in block.spans[i]:
                s, e = max(s, start), min(e, end)
                if e > s:
                    out.append((s, e))
            i += 1
            if i == _BLOCK:
                block = self._block(block.first // _BLOCK + 1)
                i = 0
        return out

    def next_open(self, at: int) -> int:
        block, i = self._locate(at)
        for _ in range(_MAX_CLOSED_DAYS + 1):
            for s, e in block.spans[i]:
                if at < e:
                    return s if s > at else at
            i += 1
            if i == _BLOCK:
                block = self._block(block.first // _BLOCK + 1)
                i = 0
        raise ValueError("calendar has no open time within ~5 years")


def _load_zone(name: str, timezone: str) -> ZoneInfo:
    if not isinstance(timezone, str) or not timezone:
        raise ValueError(f"calendar {name!r}: time zone must be an IANA name, got {timezone!r}")
    try:
        return ZoneInfo(timezone)
    except (KeyError, ValueError, OSError):
        raise ValueError(f"calendar {name!r}: unknown time zone {timezone!r}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _normalise_hours(name: str, hours: Any) -> dict[int, tuple[_Span, ...]]:
    """Validate weekly hours; merge touching intervals and drop empty weekdays so that
    equal schedules compare equal however they were written."""
    if not isinstance(hours, Mapping):
        raise ValueError(f"calendar {name!r}: hours must map weekday 0-6 to intervals")
    out: dict[int, tuple[_Span, ...]] = {}
    for wd, spans in hours.items():
        if not _is_int(wd) or not 0 <= wd <= 6:
            raise ValueError(f"calendar {name!r}: weekday {wd!r} is not 0 (Mon) .. 6 (Sun)")
        if isinstance(spans, str | bytes) or not isinstance(spans, Iterable):
            raise ValueError(f"calendar {name!r}: weekday {wd}: intervals must be a sequence")
        merged: list[_Span] = []
        for span in spans:
            if (
                isinstance(span, str | bytes)
                or not isinstance(span, Iterable)
                or len(pair := tuple(span)) != 2
                or not all(_is_int(v) for v in pair)
            ):
                raise ValueError(
                    f"calendar {name!r}: weekday {wd}: interval {span!r} is not a "
                    "(start_minute, end_minute) pair of ints"
                )
            s, e = pair
            if not 0 <= s < e <= _MINUTES_PER_DAY:
                raise ValueError(
                    f"calendar {name!r}: weekday {wd}: interval ({s}, {e}) needs "
                    f"0 <= start < end <= {_MINUTES_PER_DAY}"
                )
            if merged and s < merged[-1][1]:
                raise ValueError(
                    f"calendar {name!r}: weekday {wd}: interval ({s}, {e}) overlaps or is "
                    f"before {merged[-1]}; intervals must be sorted and non-overlapping"
                )
            if merged and s == merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        if merged:
            out[wd] = tuple(merged)
    return dict(sorted(out.items()))


def _normalise_holidays(name: str, holidays: Any) -> frozenset[date]:
    if isinstance(holidays, str | bytes) or not isinstance(holidays, Iterable):
        raise ValueError(f"calendar {name!r}: holidays must be a set of dates")
    result = frozenset(holidays)
    for day in result:
        if not isinstance(day, date) or isinstance(day, datetime):
            raise ValueError(f"calendar {name!r}: holiday {day!r} is not a date")
    return result


@dataclass(frozen=True)
class BusinessCalendar:
    """Weekly opening hours in a time zone, minus holidays.

    ``hours`` maps weekday (0=Mon .. 6=Sun) to sorted, non-overlapping local
    ``(start_minute, end_minute)`` intervals with ``0 <= start < end <= 1440``; a missing
    weekday is closed. ``holidays`` are local dates closed all day. All instants are epoch
    milliseconds UTC and all durations milliseconds of business time.
    """

    name: str
    timezone: str
    hours: Mapping[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[date] = frozenset()
    _timeline: Timeline | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        tz = _load_zone(self.name, self.timezone)
        hours = _normalise_hours(self.name, self.hours)
        holidays = _normalise_holidays(self.name, self.holidays)
        if not hours:
            raise ValueError(
                f"calendar {self.name!r}: no open hours in the week; an SLA clock on a "
                "calendar that never opens would never run"
            )
        full_day = ((0, _MINUTES_PER_DAY),)
        always = not holidays and all(hours.get(wd) == full_day for wd in range(7))
        object.__setattr__(self, "hours", MappingProxyType(hours))
        object.__setattr__(self, "holidays", holidays)
        # None marks the 24x7 fast path: with every local day fully open and no holidays
        # the whole timeline is open whatever the zone, so no zoneinfo work is needed.
        object.__setattr__(self, "_timeline", None if always else Timeline(tz, hours, holidays))

    def __hash__(self) -> int:
        return hash((self.name, self.timezone, tuple(self.hours.items()), self.holidays))

    @classmethod
    def always_open(cls, name: str = "24x7") -> BusinessCalendar:
        """A calendar that is always open: business time equals elapsed time."""
        return cls(name, "UTC", {wd: ((0, _MINUTES_PER_DAY),) for wd in range(7)})

    @property
    def is_always_open(self) -> bool:
        """True when business time equals elapsed time (the 24x7 fast path)."""
        return self._timeline is None

    def is_open(self, at: int) -> bool:
        """Whether the instant ``at`` (ms) lies inside an open interval."""
        tl = self._timeline
        return True if tl is None else tl.is_open(at)

    @property
    def unchecked(self) -> Timeline | None:
        """The timeline behind :meth:`add` and :meth:`between`, whose own ``add`` and
        ``between`` skip the argument checks, for a caller that only ever adds a positive
        duration and measures ``end > start`` (the engine's hot path: a call less per use,
        and compiled, a direct one); None for a 24x7 calendar, where both are plain
        arithmetic."""
        return self._timeline

    def add(self, start: int, duration: int) -> int:
        """The instant at which ``duration`` business ms have elapsed after ``start``.

        ``duration == 0`` returns ``start`` even when closed: nothing has to elapse. A
        positive duration that ends exactly at the close of an interval returns that
        close, not the next opening. Raises ValueError for a negative duration or when
        the calendar has no open time for ~5 years (holidays covering everything).
        """
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        tl = self._timeline
        if tl is None or duration == 0:
            return start + duration
        return tl.add(start, duration)

    def between(self, start: int, end: int) -> int:
        """Business ms inside ``[start, end)``; 0 when ``end <= start``."""
        if end <= start:
            return 0
        tl = self._timeline
        return end - start if tl is None else tl.between(start, end)

    def closed_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """The closed stretches inside ``[start, end)`` (nights, weekends, holidays), in
        order: what business-time arithmetic skipped, for explaining a due time."""
        tl = self._timeline
        if tl is None or end <= start:
            return []
        out: list[tuple[int, int]] = []
        at = start
        for s, e in tl.open_spans(start, end):
            if s > at:
                out.append((at, s))
            at = e
        if at < end:
            out.append((at, end))
        return out

    def next_open(self, at: int) -> int:
        """``at`` if open, else the start of the next open interval (ValueError if none
        within ~5 years)."""
        tl = self._timeline
        return at if tl is None else tl.next_open(at)
