"""The worker's probes from its loop's progress: /healthz fails when the loop stalls, /startupz
passes once the first assignment's state is restored.

The consume loop calls :meth:`Loop.beat` on every turn. A loop that has not turned for
`stall_s` is stuck (a hung broker call, a deadlock, a livelock in a callback), and restarting
the pod is the cure, so /healthz answers 503 and the liveness probe restarts it. A restore runs
inside the consumer's assignment callback, so the loop does not turn meanwhile: while the
worker is rebalancing, the loop may be still for `restore_s` instead. The startup probe asks
/startupz, which passes only after the first assignment was restored, so a long first restore
is never taken for a stall.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Protocol

from streams.runtime.metrics import Page
from streams.runtime.settings import Settings


class Watched(Protocol):
    """What the probes read from the worker (streams.runtime.worker.Worker has both)."""

    rebalancing: bool
    assignments: int


class Loop:
    """When the loop last turned (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last = clock()  # the process start counts as progress: startup is /startupz's job

    def beat(self) -> None:
        self.last = self.clock()

    def still_for(self) -> float:
        return self.clock() - self.last

    def alive(self, restoring: bool, stall_s: float, restore_s: float) -> bool:
        return self.still_for() < (restore_s if restoring else stall_s)


LOOP = Loop()  # the worker process's one consume loop


def probes(
    worker: Watched, settings: Settings, loop: Loop = LOOP
) -> tuple[Callable[[], bool], dict[str, Page]]:
    """(/healthz's check, {"/startupz": page}) for streams.runtime.metrics.MetricsServer."""
    stall_s = settings.liveness_stall_s
    restore_s = settings.liveness_restore_s

    def healthy() -> bool:
        return loop.alive(worker.rebalancing, stall_s, restore_s)

    def startup() -> tuple[int, bytes]:
        started = worker.assignments > 0
        body = {"started": started, "assignments": worker.assignments}
        return (200 if started else 503), json.dumps(body).encode()

    return healthy, {"/startupz": startup}
