"""Team calendars, public and company holidays, custom statuses (issue 21, item 5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sla.engine import Engine
from streams.sla.events import EventType, Priority, Status, TicketEvent
from streams.sla.policy import (
    CalendarSpec,
    HolidaySpec,
    PolicyError,
    load_policy,
    parse_policy,
)
from tests.support.clock import created, utc

POLICY = """\
version: 1
calendars:
  business:
    timezone: America/New_York
    hours: {mon-fri: "09:00-17:00"}
  berlin:
    timezone: Europe/Berlin
    hours: {mon-fri: "08:00-17:00"}
    holidays:
      country: DE
      subdiv: BE
      years: 2026-2027
      every_year: ["12-24"]
      rrules: ["FREQ=YEARLY;BYMONTH=6;BYDAY=+1FR"]
group_calendars:
  vendor: berlin
statuses:
  waiting on vendor: ON_HOLD
sla_policies:
  - name: vip
    match: {tier: [vip]}
    targets: {resolution: 4h}
  - name: all
    calendar: business
    targets: {first_response: 4h, resolution: 16h}
    warn_at: [0.5]
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: lead}
  executive: {contact: exec}
"""
HOUR = 3_600_000


def local(zone: str, month: int, day: int, hour: int, minute: int = 0) -> int:
    moment = datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo(zone))
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def engine(make_engine: Any) -> Engine:
    return make_engine(POLICY)


def test_a_teams_clocks_run_on_its_calendar_across_its_dst(engine: Engine, ticket: Any) -> None:
    """Hand-computed. Created Fri 2026-03-27 15:00 UTC (16:00 CET, 11:00 EDT) for the vendor
    group, whose calendar is Berlin 08-17. Resolution 16 business hours: 1 h Friday; Berlin
    moves to CEST on Sunday 03-29; 9 h Monday; 6 h Tuesday: Tue 03-31 14:00 CEST = 12:00 UTC
    (on the policy's New York calendar it would be Tue 11:00 EDT = 15:00 UTC)."""
    tk = ticket(engine)
    created(tk, utc(3, 27, 15), group="vendor")
    tk.send(EventType.AGENT_REPLIED, utc(3, 27, 15, 30))
    tk.advance(utc(4, 2, 0))
    assert tk.one("sla:resolution:breach").due_at == utc(3, 31, 12)
    assert tk.one("sla:resolution:warn50").due_at == local("Europe/Berlin", 3, 30, 15)


def test_a_transfer_moves_the_running_clocks_to_the_teams_calendar(
    engine: Engine, ticket: Any
) -> None:
    """Hand-computed. Created Mon 2026-03-30 09:00 EDT in the front line (New York hours);
    transferred to the vendor at 11:00 EDT = 17:00 CEST, when Berlin has just closed: 2 h used.
    First response (4 h): 2 h more in Berlin, Tue 10:00 CEST = 08:00 UTC. Resolution (16 h):
    9 h Tuesday, 5 h Wednesday: Wed 04-01 13:00 CEST = 11:00 UTC."""
    tk = ticket(engine)
    created(tk, local("America/New_York", 3, 30, 9), group="frontline")
    tk.send(EventType.TRANSFERRED, local("America/New_York", 3, 30, 11), group="vendor")
    assert tk.state.clocks["resolution"].elapsed == 2 * HOUR
    tk.advance(utc(4, 3, 0))
    assert tk.one("sla:first_response:breach").due_at == utc(3, 31, 8)
    assert tk.one("sla:resolution:breach").due_at == utc(4, 1, 11)


def test_public_holidays_of_the_teams_region_close_its_calendar(
    engine: Engine, ticket: Any
) -> None:
    """Hand-computed. Thu 2026-04-02 16:00 CEST, vendor group: 1 h Thursday; Good Friday
    (04-03) and Easter Monday (04-06) are Berlin public holidays; 9 h Tuesday, 6 h Wednesday:
    Wed 04-08 14:00 CEST = 12:00 UTC."""
    tk = ticket(engine)
    created(tk, local("Europe/Berlin", 4, 2, 16), group="vendor")
    tk.send(EventType.AGENT_REPLIED, local("Europe/Berlin", 4, 2, 16, 30))
    tk.advance(utc(4, 10, 0))
    assert tk.one("sla:resolution:breach").due_at == utc(4, 8, 12)


def test_a_24x7_policy_stays_on_calendar_time_for_a_team(engine: Engine, ticket: Any) -> None:
    tk = ticket(engine)
    created(tk, utc(3, 28, 10), group="vendor", customer_tier="vip")  # a Saturday
    tk.advance(utc(3, 29, 0))
    assert tk.one("sla:resolution:breach").due_at == utc(3, 28, 14)


def test_company_holidays_every_year_and_by_rrule() -> None:
    """Hand-computed: Berlin's 2026 public holidays from the package, Christmas Eve every year,
    and the first Friday of June (2026-06-05, 2027-06-04), for the years given."""
    calendar = parse_policy(POLICY, "p.yaml").calendar("berlin")
    days = calendar.holidays
    assert {date(2026, 12, 24), date(2027, 12, 24)} <= days
    assert {date(2026, 6, 5), date(2027, 6, 4)} <= days
    assert {date(2026, 4, 3), date(2026, 4, 6), date(2026, 10, 3), date(2027, 3, 8)} <= days
    assert date(2028, 12, 24) not in days  # beyond `years`
    # Thursday 2026-12-24 is closed; the day before is open 08-17
    assert not calendar.is_open(utc(12, 24, 10))
    assert calendar.between(utc(12, 23, 0), utc(12, 24, 0)) == 9 * HOUR


def test_thanksgiving_as_an_rrule_and_a_leap_day_every_year() -> None:
    spec = HolidaySpec(
        years=[2026, 2027, 2028], rrules=["RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=+4TH"],
        every_year=["02-29"],
    )  # fmt: skip
    assert spec.build() == {
        date(2026, 11, 26), date(2027, 11, 25), date(2028, 11, 23), date(2028, 2, 29),
    }  # fmt: skip


def test_a_plain_list_of_dates_still_reads() -> None:
    spec = CalendarSpec.model_validate(
        {"hours": {"mon-fri": "09:00-17:00"}, "holidays": [date(2026, 4, 3)]}
    )
    assert spec.build("office").holidays == {date(2026, 4, 3)}


@settings(max_examples=40, deadline=None)
@given(
    country=st.sampled_from([("US", "NY"), ("DE", "BE"), ("GB", None), ("FR", None)]),
    first=st.integers(2000, 2040),
    span=st.integers(0, 4),
    month=st.integers(1, 12),
    nth=st.integers(1, 4),
    weekday=st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]),
)
def test_holiday_specs_add_up(
    country: tuple[str, str | None], first: int, span: int, month: int, nth: int, weekday: str
) -> None:
    """A holiday spec is exactly the package's list, plus one nth weekday of the month per
    year from the RRULE, for the years given."""
    years = list(range(first, first + span + 1))
    code, subdiv = country
    rule = f"FREQ=YEARLY;BYMONTH={month};BYDAY=+{nth}{weekday}"
    spec = HolidaySpec(country=code, subdiv=subdiv, years=years, rrules=[rule])
    public = set(holidays.country_holidays(code, subdiv=subdiv, years=years))
    rrule_days = spec.build() - public
    assert public <= spec.build()
    wanted = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"].index(weekday)
    nth_days = {
        d
        for year in years
        for d in (date(year, month, day) for day in range(1, 29))
        if d.weekday() == wanted and (d.day - 1) // 7 + 1 == nth
    }
    assert rrule_days == nth_days - public


def _minutes(n: int) -> int:
    return n * 60_000


@settings(max_examples=40, deadline=None)
@given(moves=st.lists(st.tuples(st.integers(1, 3000), st.booleans()), max_size=8))
def test_elapsed_sums_each_teams_stretch_on_its_own_calendar(
    moves: list[tuple[int, bool]],
) -> None:
    """Moving a ticket between the front line and the vendor: its resolution clock's business
    time is the sum of each stretch measured on the calendar of the group it was in."""
    policy = parse_policy(POLICY, "p.yaml")
    engine = Engine(policy)
    calendars = {False: policy.calendar("business"), True: policy.calendar("berlin")}
    t = utc(3, 23, 12)
    state, _ = engine.apply(None, _event("c", EventType.CREATED, t, group="frontline"))
    vendor, since, total = False, t, 0
    for i, (minutes, to_vendor) in enumerate(moves):
        t += _minutes(minutes)
        group = "vendor" if to_vendor else "frontline"
        state, _ = engine.apply(state, _event(f"m{i}", EventType.TRANSFERRED, t, group=group))
        if to_vendor != vendor:
            total += calendars[vendor].between(since, t)
            vendor, since = to_vendor, t
    clock = state.clocks["resolution"]
    if clock.breached_at is None:
        assert clock.elapsed + calendars[vendor].between(clock.running_since, t) == (
            total + calendars[vendor].between(since, t)
        )


def _event(event_id: str, kind: EventType, at: int, **fields: Any) -> TicketEvent:
    return TicketEvent(
        event_id=event_id, ticket_id="G1", type=kind, occurred_at=at, priority=Priority.NORMAL,
        **fields,
    )  # fmt: skip


def test_the_default_policy_gives_the_vendor_team_its_calendar() -> None:
    policy = load_policy()
    standard = policy.sla("standard")
    assert policy.sla_calendar(standard, "vendor").name == "vendor"
    assert policy.sla_calendar(standard, "frontline").name == "business"
    assert policy.sla_calendar(policy.sla("vip-enterprise"), "vendor").name == "24x7"
    assert date(2026, 12, 24) in policy.calendar("vendor").holidays
    assert policy.statuses["waiting on vendor"] is Status.ON_HOLD


# ------------------------------------------------------------------ policy check


def _errors(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return info.value.lines()


def _line(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


_PAUSED = POLICY.replace(
    "    warn_at: [0.5]\n", "    warn_at: [0.5]\n    clocks:\n      resolution:\n@@", 1
)


def PAUSED(conditions: str) -> str:  # noqa: N802
    return _PAUSED.replace("@@", conditions)


@pytest.mark.parametrize(
    ("text", "field", "fragment", "message"),
    [
        (
            PAUSED("        pause: {tags_added: [x]}\n"),
            "sla_policies[1].clocks.resolution.pause",
            "pause:",
            "'pause' needs 'resume'",
        ),
        (
            PAUSED("        resume: {tags_removed: [x]}\n"),
            "sla_policies[1].clocks.resolution.resume",
            "resume:",
            "'resume' needs 'pause'",
        ),
        (
            PAUSED(
                "        pause: {status_for: {status: PENDING, at_least: 1h}}\n"
                "        resume: {tags_removed: [x]}\n"
            ),
            "sla_policies[1].clocks.resolution.pause",
            "pause:",
            "status_for and escalation_open_for belong to triggers",
        ),
        (
            PAUSED("        pause: {tags_added: [x]}\n        resume: {tags: 1}\n"),
            "sla_policies[1].clocks.resolution.resume.tags",
            "resume:",
            "Input should be a valid list",
        ),
        (
            POLICY.replace("  vendor: berlin", "  vendor: berlni"),
            "group_calendars.vendor",
            "vendor: berlni",
            "unknown calendar 'berlni'",
        ),
        (
            POLICY.replace("  vendor: berlin", "  vendor: 24x7"),
            "group_calendars.vendor",
            "vendor: 24x7",
            "24x7 is calendar time",
        ),
        (
            POLICY.replace("country: DE", "country: XX"),
            "calendars.berlin.holidays.country",
            "country: XX",
            "'XX' is not a country the holidays package knows",
        ),
        (
            POLICY.replace("subdiv: BE", "subdiv: ZZ"),
            "calendars.berlin.holidays.subdiv",
            "subdiv: ZZ",
            "'ZZ' is not a subdivision of DE",
        ),
        (
            POLICY.replace("      years: 2026-2027\n", ""),
            "calendars.berlin.holidays.country",
            "country: DE",
            "needs `years`",
        ),
        (
            POLICY.replace("years: 2026-2027", "years: 2027-2026x"),
            "calendars.berlin.holidays.years",
            "years: 2027",
            "is not a year range",
        ),
        (
            POLICY.replace('every_year: ["12-24"]', 'every_year: ["12-24", "24.12."]'),
            "calendars.berlin.holidays.every_year[1]",
            "every_year:",
            "'24.12.' is not a day of the year MM-DD",
        ),
        (
            POLICY.replace("FREQ=YEARLY;BYMONTH=6;BYDAY=+1FR", "FREQ=DAILY"),
            "calendars.berlin.holidays.rrules[0]",
            "rrules:",
            "repeats YEARLY or MONTHLY",
        ),
        (
            POLICY.replace("FREQ=YEARLY;BYMONTH=6;BYDAY=+1FR", "FREQ=YEARLY;BYDAY=+4XX"),
            "calendars.berlin.holidays.rrules[0]",
            "rrules:",
            "is not an RRULE: invalid 'BYDAY'",
        ),
        (
            POLICY.replace("FREQ=YEARLY;BYMONTH=6;BYDAY=+1FR", "BYMONTH=11;BYDAY=+4TH"),
            "calendars.berlin.holidays.rrules[0]",
            "rrules:",
            "it needs FREQ=YEARLY or MONTHLY",
        ),
        (
            POLICY.replace("FREQ=YEARLY;BYMONTH=6;BYDAY=+1FR", "FREQ=YEARLY;BYMONTH=13"),
            "calendars.berlin.holidays.rrules[0]",
            "rrules:",
            "gives no date in 2026-2027",
        ),
        (
            POLICY.replace("  waiting on vendor: ON_HOLD", "  waiting on vendor: WAITING"),
            "statuses.waiting on vendor",
            "waiting on vendor:",
            "Input should be 'NEW'",
        ),
        (
            POLICY.replace("  waiting on vendor: ON_HOLD", "  Pending: ON_HOLD"),
            "statuses.Pending",
            "Pending: ON_HOLD",
            "is the canonical status PENDING",
        ),
        (
            POLICY.replace(
                "  waiting on vendor: ON_HOLD",
                "  waiting on vendor: ON_HOLD\n  Waiting On Vendor: PENDING",
            ),
            "statuses.Waiting On Vendor",
            "Waiting On Vendor:",
            "listed twice",
        ),
    ],
)
def test_policy_check_rejects_each_misuse_by_line(
    text: str, field: str, fragment: str, message: str
) -> None:
    [line] = _errors(text)
    assert line.startswith(f"p.yaml:{_line(text, fragment)}: {field}: "), line
    assert message in line
