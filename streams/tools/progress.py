"""A dependency-free progress line for long CLI work (replay, backtest, generate, benchmarks)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work and redraws one stderr line at most 5 times a second.

    On a terminal it redraws in place; elsewhere (CI logs) it prints a line every
    `log_every` seconds so a long run still shows it is alive.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "events",
        stream: TextIO | None = None,
        log_every: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.count = 0
        self.started = time.monotonic()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last_draw >= (0.2 if self.tty else self.log_every):
            self._last_draw = now
            self._draw(now)

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.label}: {self.count:,} {self.unit} ({rate:,.0f}/s, {elapsed:.1f}s)"
        if self.total:
            share = min(self.count / self.total, 1.0)
            filled = int(share * 24)
            left = (self.total - self.count) / rate if rate > 0 else 0.0
            text = (
                f"{self.label}: [{'#' * filled}{'.' * (24 - filled)}] {share:6.1%} "
                f"{self.count:,}/{self.total:,} {self.unit} ({rate:,.0f}/s, ETA {left:.0f}s)"
            )
        return text

    def _draw(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r" + self._line(now) + "\x1b[K")
        else:
            self.stream.write(self._line(now) + "\n")
        self.stream.flush()

    def close(self) -> float:
        """Print the final line; returns the elapsed seconds."""
        now = time.monotonic()
        self._draw(now)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
        return now - self.started
