"""Waiting for a condition in tests, with a clear failure: what was awaited and, when a process
was watched, that it exited and its log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.pipeline import WorkerProcess


def wait_for(
    check: Callable[[], Any],
    what: str,
    timeout: float = 120.0,
    process: WorkerProcess | None = None,
) -> Any:
    """Call `check` every 0.3 s until it returns something true, and return that;
    fail after `timeout` seconds, or as soon as `process` (when given) exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.proc.poll() is not None:
            raise AssertionError(f"{process.name} exited while waiting for {what}:\n"
                                 f"{process.log_text()[-4000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            log = process.log_text()[-4000:] if process is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")
        time.sleep(0.3)
