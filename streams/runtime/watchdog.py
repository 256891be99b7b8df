"""A watchdog for blocking calls that may ignore their own timeout, on one thread.

The worker guards its two transactional calls of every commit (ten commits a second). A
`threading.Timer` per call started a thread each time, about 1.5% of the loop's time on a
busy machine; this keeps one thread, which sleeps until the armed call's deadline and is
woken early only for an earlier one (or when it had none).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Watchdog:
    """`guard(call, seconds, overrun)`: `overrun(call)` runs on the watchdog's thread if the
    guarded block is still running `seconds` after it began; one block at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[str, float, Callable[[str], None]] | None = None
        self._until = float("inf")  # when the thread wakes next: an earlier deadline wakes it
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, call: str, seconds: float, overrun: Callable[[str], None]) -> Iterator[None]:
        with self._cond:
            deadline = time.monotonic() + seconds
            self._armed = (call, deadline, overrun)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
                self._thread.start()
            elif deadline < self._until:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed = None  # the thread finds it gone when it wakes at the deadline

    def _watch(self) -> None:
        cond = self._cond
        while True:
            with cond:
                armed = self._armed
                if armed is None:
                    self._until = float("inf")
                    cond.wait()
                    continue
                call, deadline, overrun = armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._until = deadline
                    cond.wait(left)
                    continue
                self._armed = None
                self._until = float("inf")
            overrun(call)
