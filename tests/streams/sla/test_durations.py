"""Durations as written in the policy file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.sla.durations import DAY, HOUR, MINUTE, SECOND, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30m", 30 * MINUTE),
        ("4h", 4 * HOUR),
        ("1h30m", 90 * MINUTE),
        ("2d", 2 * DAY),
        ("1d2h30m10s", DAY + 2 * HOUR + 30 * MINUTE + 10 * SECOND),
        ("90m", 90 * MINUTE),
        ("0m", 0),
        ("0s", 0),
        ("45s", 45 * SECOND),
        (" 1h 30m ", 90 * MINUTE),
        ("007m", 7 * MINUTE),
    ],
)
def test_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0m"),
        (SECOND, "1s"),
        (90 * MINUTE, "1h30m"),
        (DAY, "1d"),
        (DAY + SECOND, "1d1s"),
        (25 * HOUR, "1d1h"),
        (48 * HOUR, "2d"),
    ],
)
def test_format(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("30", "is not a duration"),
        ("1x", "is not a duration"),
        ("h", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("-1h", "is not a duration"),
        ("1H", "is not a duration"),
        ("1h30", "is not a duration"),
        ("1h 30 m x", "is not a duration"),
        ("30m1h", "largest first"),
        ("1h1h", "once each"),
        ("1s1d", "largest first"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_duration(text)
    if text.strip():
        assert repr(text) in str(info.value) or f"'{text}'" in str(info.value)


@pytest.mark.parametrize("ms", [1, 999, 1500, DAY + 1])
def test_format_rejects_fractions_of_a_second(ms: int) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        format_duration(ms)


@given(st.integers(min_value=0, max_value=10_000 * DAY // SECOND).map(lambda s: s * SECOND))
def test_format_then_parse_round_trips(ms: int) -> None:
    text = format_duration(ms)
    assert parse_duration(text) == ms
    # Shortest form: every unit at most once, below the next larger unit.
    assert format_duration(parse_duration(text)) == text


@given(
    st.integers(0, 400),
    st.integers(0, 500),
    st.integers(0, 5000),
    st.integers(0, 100_000),
    st.lists(st.booleans(), min_size=4, max_size=4).filter(any),
)
def test_parse_any_well_formed_text(d: int, h: int, m: int, s: int, used: list[bool]) -> None:
    parts = [(d, "d", DAY), (h, "h", HOUR), (m, "m", MINUTE), (s, "s", SECOND)]
    chosen = [p for p, keep in zip(parts, used, strict=True) if keep]
    text = "".join(f"{n}{unit}" for n, unit, _ in chosen)
    assert parse_duration(text) == sum(n * size for n, _, size in chosen)
