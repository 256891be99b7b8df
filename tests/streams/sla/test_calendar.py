"""Business calendar: unit tests, a brute-force DST oracle and Hypothesis properties."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.sla.calendar import BusinessCalendar

H = 3_600_000
M = 60_000
WEEKDAYS_9_17 = {wd: ((9 * 60, 17 * 60),) for wd in range(5)}
ALL_DAY = {wd: ((0, 1440),) for wd in range(7)}


def at(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> int:
    """Epoch ms of a local wall time."""
    return int(datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).timestamp() * 1000)


def berlin(*args: int) -> int:
    return at("Europe/Berlin", *args)


def ny(*args: int) -> int:
    return at("America/New_York", *args)


@pytest.fixture
def office() -> BusinessCalendar:
    return BusinessCalendar("office", "Europe/Berlin", WEEKDAYS_9_17)


# -- weekday hours -----------------------------------------------------------------------


def test_add_rolls_over_weekend(office: BusinessCalendar) -> None:
    # Fri 2026-11-06 16:00 + 2h: 1h on Friday, 1h on Monday.
    assert office.add(berlin(2026, 11, 6, 16), 2 * H) == berlin(2026, 11, 9, 10)


def test_add_from_closed_times(office: BusinessCalendar) -> None:
    assert office.add(berlin(2026, 11, 4, 7), 30 * M) == berlin(2026, 11, 4, 9, 30)
    assert office.add(berlin(2026, 11, 4, 18), 30 * M) == berlin(2026, 11, 5, 9, 30)
    assert office.add(berlin(2026, 11, 7, 12), 8 * H + 1) == berlin(2026, 11, 10, 9) + 1


def test_add_ending_exactly_at_close_returns_close(office: BusinessCalendar) -> None:
    assert office.add(berlin(2026, 11, 4, 9), 8 * H) == berlin(2026, 11, 4, 17)


def test_add_zero_and_negative(office: BusinessCalendar) -> None:
    closed = berlin(2026, 11, 7, 12)  # Saturday
    assert office.add(closed, 0) == closed
    with pytest.raises(ValueError, match="duration"):
        office.add(closed, -1)


def test_holidays_are_skipped(office: BusinessCalendar) -> None:
    xmas = BusinessCalendar(
        "office", "Europe/Berlin", WEEKDAYS_9_17, frozenset({date(2026, 12, 25)})
    )
    start = berlin(2026, 12, 24, 16)  # Thursday; Fri 25th is a holiday
    assert office.add(start, 2 * H) == berlin(2026, 12, 25, 10)
    assert xmas.add(start, 2 * H) == berlin(2026, 12, 28, 10)
    assert xmas.between(start, berlin(2026, 12, 28, 10)) == 2 * H
    assert not xmas.is_open(berlin(2026, 12, 25, 12))


def test_between_across_weekend(office: BusinessCalendar) -> None:
    assert office.between(berlin(2026, 11, 6, 16), berlin(2026, 11, 9, 10)) == 2 * H
    assert office.between(berlin(2026, 11, 7, 0), berlin(2026, 11, 9, 0)) == 0
    week = office.between(berlin(2026, 11, 2), berlin(2026, 11, 9))
    assert week == 5 * 8 * H
    assert office.between(berlin(2026, 11, 9), berlin(2026, 11, 2)) == 0


def test_is_open_and_next_open(office: BusinessCalendar) -> None:
    assert office.is_open(berlin(2026, 11, 4, 9))
    assert office.is_open(berlin(2026, 11, 4, 17) - 1)
    assert not office.is_open(berlin(2026, 11, 4, 17))
    assert not office.is_open(berlin(2026, 11, 7, 12))
    inside = berlin(2026, 11, 4, 12)
    assert office.next_open(inside) == inside
    assert office.next_open(berlin(2026, 11, 6, 17)) == berlin(2026, 11, 9, 9)
    assert office.next_open(berlin(2026, 11, 4, 8)) == berlin(2026, 11, 4, 9)


def test_lunch_break() -> None:
    cal = BusinessCalendar(
        "lunch", "Europe/Berlin", {wd: ((540, 720), (780, 1020)) for wd in range(5)}
    )
    assert cal.between(berlin(2026, 11, 4), berlin(2026, 11, 5)) == 7 * H
    assert not cal.is_open(berlin(2026, 11, 4, 12, 30))
    assert cal.next_open(berlin(2026, 11, 4, 12, 30)) == berlin(2026, 11, 4, 13)
    assert cal.add(berlin(2026, 11, 4, 11), 2 * H) == berlin(2026, 11, 4, 14)


def test_touching_intervals_behave_as_merged() -> None:
    split = BusinessCalendar(
        "split", "America/New_York", {wd: ((0, 600), (600, 1440)) for wd in range(7)}
    )
    assert split.hours == ALL_DAY
    assert split == BusinessCalendar("split", "America/New_York", ALL_DAY)
    # Friday until midnight plus Saturday from midnight is one continuous stretch.
    fri_sat = BusinessCalendar("fs", "Europe/Berlin", {4: ((1200, 1440),), 5: ((0, 120),)})
    start = berlin(2026, 11, 6, 23)
    assert fri_sat.add(start, 2 * H) == berlin(2026, 11, 7, 1)
    assert fri_sat.between(start, berlin(2026, 11, 7, 1)) == 2 * H
    assert fri_sat.is_open(berlin(2026, 11, 7, 0))
    assert fri_sat.add(berlin(2026, 11, 6, 20), 4 * H) == berlin(2026, 11, 7)


# -- DST -----------------------------------------------------------------------------------


def test_dst_all_day_calendar_days_are_23_and_25_hours() -> None:
    cal = BusinessCalendar("ny", "America/New_York", ALL_DAY, frozenset({date(2000, 1, 1)}))
    assert not cal.is_always_open
    assert cal.between(ny(2026, 3, 8), ny(2026, 3, 9)) == 23 * H
    assert cal.between(ny(2026, 11, 1), ny(2026, 11, 2)) == 25 * H
    assert cal.add(ny(2026, 3, 8), 23 * H) == ny(2026, 3, 9)
    assert cal.add(ny(2026, 11, 1), 25 * H) == ny(2026, 11, 2)


def test_dst_interval_spanning_the_transition() -> None:
    cal = BusinessCalendar("night", "America/New_York", {6: ((60, 300),)})
    assert cal.between(ny(2026, 3, 8), ny(2026, 3, 9)) == 3 * H
    assert cal.between(ny(2026, 11, 1), ny(2026, 11, 2)) == 5 * H
    assert cal.between(ny(2026, 3, 15), ny(2026, 3, 16)) == 4 * H
    # The repeated hour 01:00-02:00 counts twice on fall-back.
    assert cal.add(ny(2026, 11, 1, 1), 1 * H) == at("America/New_York", 2026, 11, 1, 1, fold=1)
    assert cal.add(ny(2026, 11, 1, 1), 2 * H) == ny(2026, 11, 1, 2)


def test_dst_business_day_stays_eight_hours() -> None:
    cal = BusinessCalendar("ny", "America/New_York", {wd: ((540, 1020),) for wd in range(7)})
    assert cal.between(ny(2026, 3, 8), ny(2026, 3, 9)) == 8 * H
    assert cal.between(ny(2026, 11, 1), ny(2026, 11, 2)) == 8 * H
    assert cal.add(ny(2026, 3, 7, 16), 2 * H) == ny(2026, 3, 8, 10)


def test_dst_nonexistent_bounds_map_to_end_of_gap() -> None:
    # 02:30 does not exist on 2026-03-08: the interval opens when the gap ends (03:00 EDT).
    cal = BusinessCalendar("gap", "America/New_York", {6: ((150, 240),)})
    assert cal.next_open(ny(2026, 3, 8)) == ny(2026, 3, 8, 3)
    assert cal.between(ny(2026, 3, 8), ny(2026, 3, 9)) == 1 * H
    # Wholly inside the gap: no real time on that day, next Sunday is normal.
    inside = BusinessCalendar("in", "America/New_York", {6: ((135, 165),)})
    assert inside.between(ny(2026, 3, 8), ny(2026, 3, 9)) == 0
    assert inside.next_open(ny(2026, 3, 8)) == ny(2026, 3, 15, 2, 15)


def _oracle_spans(cal: BusinessCalendar, day: date) -> list[tuple[int, int]]:
    """Brute force the documented rule: a wall time maps to the first minute whose local
    clock reads it or later. Scans UTC minutes around the day; slow but obvious."""
    tz = ZoneInfo(cal.timezone)
    first = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    walls = []
    for i in range(3 * 1440):
        u = first + timedelta(minutes=i)
        walls.append((int(u.timestamp() * 1000), u.astimezone(tz).replace(tzinfo=None)))

    def to_utc(minute: int) -> int:
        target = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        return next(ms for ms, wall in walls if wall >= target)

    if day in cal.holidays:
        return []
    spans = [(to_utc(s), to_utc(e)) for s, e in cal.hours.get(day.weekday(), ())]
    return [(s, e) for s, e in spans if e > s]


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("America/New_York", date(2026, 3, 8)),
        ("America/New_York", date(2026, 11, 1)),
        ("Europe/Berlin", date(2026, 3, 29)),
        ("Europe/Berlin", date(2026, 10, 25)),
        ("America/Santiago", date(2026, 4, 5)),  # clocks go back at midnight
        ("America/Santiago", date(2026, 9, 6)),  # 00:00 does not exist
        ("Australia/Lord_Howe", date(2026, 4, 5)),  # 30-minute shift
    ],
)
def test_dst_days_match_brute_force(tz: str, day: date) -> None:
    hours = ((0, 30), (45, 75), (90, 130), (150, 170), (180, 600), (1380, 1440))
    cal = BusinessCalendar("o", tz, {day.weekday(): hours})
    spans = _oracle_spans(cal, day)
    lo, hi = spans[0][0] - 3 * H, spans[-1][1] + 3 * H
    assert cal.between(lo, hi) == sum(e - s for s, e in spans)
    for t in range(lo, hi, 5 * M):
        assert cal.is_open(t) == any(s <= t < e for s, e in spans), t
    for s, _ in spans:
        assert cal.is_open(s)
        assert cal.next_open(s - 1) == (s - 1 if cal.is_open(s - 1) else s)


# -- 24x7 ----------------------------------------------------------------------------------


def test_always_open() -> None:
    cal = BusinessCalendar.always_open()
    assert cal.name == "24x7" and cal.is_always_open
    assert cal.add(123, 456) == 579
    assert cal.between(100, 50) == 0 and cal.between(50, 100) == 50
    assert cal.is_open(0) and cal.next_open(42) == 42
    assert BusinessCalendar("tokyo", "Asia/Tokyo", ALL_DAY).is_always_open
    assert not BusinessCalendar("h", "UTC", ALL_DAY, frozenset({date(2026, 1, 1)})).is_always_open


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "America", "../etc/passwd", ""])
def test_bad_timezone(tz: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar("c", tz, WEEKDAYS_9_17)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({7: ((540, 1020),)}, "weekday 7"),
        ({-1: ((540, 1020),)}, "weekday -1"),
        ({0: ((1020, 540),)}, "start < end"),
        ({0: ((540, 540),)}, "start < end"),
        ({0: ((0, 1441),)}, "start < end"),
        ({0: ((-5, 60),)}, "start < end"),
        ({0: ((540, 720), (700, 1020))}, "non-overlapping"),
        ({0: ((780, 1020), (540, 720))}, "sorted"),
        ({0: ((540,),)}, "pair"),
        ({0: (("9", "17"),)}, "pair"),
        ({0: "9-17"}, "sequence"),
        ({}, "no open hours"),
        ({0: ()}, "no open hours"),
    ],
)
def test_bad_hours(hours: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar("c", "UTC", hours)  # type: ignore[arg-type]


def test_bad_holiday() -> None:
    with pytest.raises(ValueError, match="holiday"):
        BusinessCalendar("c", "UTC", WEEKDAYS_9_17, frozenset({datetime(2026, 1, 1)}))


def test_long_holiday_stretch_raises_instead_of_hanging() -> None:
    first = date(2026, 1, 1)
    closed = frozenset(first + timedelta(days=i) for i in range(6 * 366))
    cal = BusinessCalendar("closed", "UTC", WEEKDAYS_9_17, closed)
    start = at("UTC", 2026, 1, 1)
    with pytest.raises(ValueError, match="5 years"):
        cal.add(start, 1)
    with pytest.raises(ValueError, match="5 years"):
        cal.next_open(start)


def test_value_semantics() -> None:
    a = BusinessCalendar("c", "Europe/Berlin", {0: [(540, 1020)]}, frozenset())  # type: ignore[dict-item]
    b = BusinessCalendar("c", "Europe/Berlin", {0: ((540, 1020),), 1: ()})
    a.add(berlin(2026, 11, 2, 8), H)  # warm a's cache: must not affect eq/hash
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != dataclasses.replace(b, name="other")
    assert dataclasses.replace(a, timezone="UTC").timezone == "UTC"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "x"  # type: ignore[misc]


# -- properties ----------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago"]
# DST transition days in 2026 for the zones above, to aim starts at the interesting days.
TRANSITIONS = [
    date(2026, 3, 8),
    date(2026, 3, 29),
    date(2026, 4, 5),
    date(2026, 9, 6),
    date(2026, 10, 4),
    date(2026, 10, 25),
    date(2026, 11, 1),
]
MINUTE = st.one_of(
    st.integers(0, 1440), st.sampled_from([0, 30, 60, 90, 120, 150, 180, 1380, 1440])
)


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    bounds = sorted(draw(st.sets(MINUTE, max_size=6)))
    if len(bounds) % 2:
        bounds = bounds[:-1]
    return tuple((bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2))


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    hours = {wd: draw(day_hours()) for wd in range(7)}
    assume(any(hours.values()))
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2027, 1, 31)), max_size=12))
    return BusinessCalendar("p", draw(st.sampled_from(ZONES)), hours, holidays)


@st.composite
def instants(draw: st.DrawFn) -> int:
    if draw(st.booleans()):
        base = datetime.combine(draw(st.sampled_from(TRANSITIONS)), datetime.min.time(), UTC)
        return int(base.timestamp() * 1000) + draw(st.integers(-3 * 24 * H, 3 * 24 * H))
    return draw(st.integers(at("UTC", 2026, 1, 1), at("UTC", 2027, 1, 1)))


DURATIONS = st.one_of(st.integers(0, 3 * H), st.integers(0, 14 * 24 * H))
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(calendars(), instants(), DURATIONS)
def test_prop_between_inverts_add(cal: BusinessCalendar, start: int, d: int) -> None:
    end = cal.add(start, d)
    assert end >= start
    assert cal.between(start, end) == d
    if d > 0:
        assert cal.between(start, end - 1) < d  # the earliest such instant
        assert cal.is_open(end - 1)


@PROPS
@given(calendars(), instants(), DURATIONS, DURATIONS)
def test_prop_add_monotonic(cal: BusinessCalendar, start: int, d1: int, d2: int) -> None:
    lo, hi = sorted((d1, d2))
    assert cal.add(start, lo) <= cal.add(start, hi)
    assert cal.add(cal.add(start, lo), hi - lo) == cal.add(start, hi)


@PROPS
@given(calendars(), instants(), DURATIONS, DURATIONS)
def test_prop_between_additive_and_bounded(cal: BusinessCalendar, a: int, d1: int, d2: int) -> None:
    b, c = a + d1, a + d1 + d2
    ab, bc, ac = cal.between(a, b), cal.between(b, c), cal.between(a, c)
    assert ab + bc == ac
    assert 0 <= ab <= b - a and 0 <= ac <= c - a
    assert cal.between(c, a) == 0


@PROPS
@given(calendars(), instants())
def test_prop_open_and_next_open_agree(cal: BusinessCalendar, t: int) -> None:
    nxt = cal.next_open(t)
    assert nxt >= t and cal.is_open(nxt)
    assert cal.between(t, nxt) == 0
    assert (nxt == t) == cal.is_open(t)
    assert cal.add(t, 1) == nxt + 1


@PROPS
@given(instants(), st.integers(0, 10**12), st.integers(-(10**12), 10**12))
def test_prop_always_open_identity(start: int, d: int, delta: int) -> None:
    cal = BusinessCalendar.always_open()
    assert cal.add(start, d) == start + d
    assert cal.between(start, start + delta) == max(0, delta)


@PROPS
@given(calendars(), instants(), DURATIONS)
def test_prop_unchecked_equals_checked_where_the_engine_uses_it(
    cal: BusinessCalendar, start: int, d: int
) -> None:
    unchecked = cal.unchecked
    assume(unchecked is not None)  # a generated week open around the clock may be 24x7
    assert unchecked is not None
    if d > 0:
        assert unchecked.add(start, d) == cal.add(start, d)
        assert unchecked.between(start, start + d) == cal.between(start, start + d)


def test_unchecked_is_none_for_24x7() -> None:
    assert BusinessCalendar.always_open().unchecked is None


# -- closed spans (what `escalator explain` says a due time skipped) ----------------------


def test_closed_spans_over_a_weekend_and_a_holiday() -> None:
    xmas = BusinessCalendar(
        "office", "Europe/Berlin", WEEKDAYS_9_17, frozenset({date(2026, 12, 25)})
    )
    start, end = berlin(2026, 12, 24, 16), berlin(2026, 12, 28, 10)
    assert xmas.closed_spans(start, end) == [(berlin(2026, 12, 24, 17), berlin(2026, 12, 28, 9))]
    # the open time left between the closed spans is the business time
    closed = sum(e - s for s, e in xmas.closed_spans(start, end))
    assert end - start - closed == xmas.between(start, end) == 2 * H


def test_closed_spans_start_closed_and_lunch() -> None:
    lunch = BusinessCalendar("lunch", "Europe/Berlin", {0: ((9 * 60, 12 * 60), (13 * 60, 17 * 60))})
    monday = berlin(2026, 11, 9, 8)
    assert lunch.closed_spans(monday, berlin(2026, 11, 9, 14)) == [
        (monday, berlin(2026, 11, 9, 9)),
        (berlin(2026, 11, 9, 12), berlin(2026, 11, 9, 13)),
    ]
    assert lunch.closed_spans(berlin(2026, 11, 9, 10), berlin(2026, 11, 9, 11)) == []
    assert BusinessCalendar.always_open().closed_spans(0, 10 * H) == []
