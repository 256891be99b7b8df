"""Durations as operators write them in the policy file ("90m", "1h30m", "2d")."""

from __future__ import annotations

import re

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_UNITS = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}
_PATTERN = re.compile(r"(\d+)([dhms])")


def parse_duration(text: str) -> int:
    """Parse "1d2h30m10s"-style text into milliseconds; units in descending order, each once."""
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration; write e.g. '30m', '4h' or '2d'")
    pos = 0
    total = 0
    seen: list[str] = []
    for match in _PATTERN.finditer(compact):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit in seen or (seen and "dhms".index(unit) < "dhms".index(seen[-1])):
            raise ValueError(f"'{text}': units must appear once each, largest first (d, h, m, s)")
        seen.append(unit)
        total += int(number) * _UNITS[unit]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"'{text}' is not a duration; write e.g. '30m', '4h', '1h30m' or '2d'")
    return total


def format_duration(ms: int) -> str:
    """The shortest text that parse_duration reads back to the same milliseconds."""
    if ms == 0:
        return "0m"
    parts = []
    rest = ms
    for unit in "dhms":
        size = _UNITS[unit]
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        raise ValueError(f"{ms} ms is not a whole number of seconds")
    return "".join(parts)
