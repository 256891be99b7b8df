"""The shell every consume-process-commit process runs in: the worker, `escalator
alerts`, `escalator sink webhook` (and `helpdesk` through it) and `escalator sink redis`.

The shell owns what they share: SIGTERM/SIGINT stop the loop, which then finishes cleanly
(`end()`: the last commit) and closes the clients once, whatever ended it; the lines on
stderr (`say()`: "escalator <who>: ..."), the readiness line and its count (/startupz reads
it), the periodic status, and the heartbeat of the loop (/healthz reads it,
streams.runtime.liveness). A process supplies only its steps: `begin()` (subscribe, say it
is ready), `turn()` (one poll and what it does with the records, its commits included),
`end()` and `close()`.

An exception from a step goes out of `run()` as it is, after `abandon(exc)` and `close()`:
the caller decides what it means (the worker's Restart, the command line's one-line error).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from streams.runtime.liveness import Loop
from streams.runtime.metrics import MetricsServer, mark_component
from streams.runtime.settings import ConfigError, ConnectorSettings

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ConsumeLoop:
    """`run()` (or `await run_async()`) until `stop()`; `main()` is a command's whole body."""

    who = ""  # "escalator <who>: " starts every line it says
    ready_text = ""  # the readiness line starts with it (tests and the demo wait for it)

    def __init__(
        self,
        out: TextIO = sys.stderr,
        status_every: float = 30.0,
        heartbeat: Loop | None = None,
    ) -> None:
        self.out = out
        self.status_every = status_every
        self.heartbeat = heartbeat or Loop()
        self.running = True
        self.readies = 0  # readiness lines said: the worker's assignments
        self.status_at = 0.0  # monotonic time of the next status
        self.closed = False

    def say(self, text: str) -> None:
        self.out.write(f"escalator {self.who}: {text}\n")
        self.out.flush()

    def ready(self, detail: str = "") -> None:
        """Say the readiness line (ready_text + detail) and count it."""
        self.readies += 1
        self.say(f"{self.ready_text}{detail}")

    def stop(self) -> None:
        self.running = False

    # ------------------------------------------------------------------ steps

    def begin(self) -> None:
        """Before the first turn: subscribe, rebuild, say ready."""

    def turn(self) -> bool:
        """One poll and what its records bring (commits included); True if it read any."""
        raise NotImplementedError

    def status(self) -> None:
        """Every `status_every` seconds of running."""

    def end(self) -> None:
        """After a stop (not after an exception): commit what is left, say the last line."""

    def abandon(self, exc: BaseException) -> None:
        """A step raised `exc`: called before `close()`, which follows all the same."""

    def close(self) -> None:
        """Release the clients (called once, by `shutdown()`)."""

    def shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            self.close()

    # ------------------------------------------------------------------ loops

    def run(self) -> int:
        with self._lifetime():
            while self.running:
                self._step()
            self.end()
        return 0

    async def run_async(self, idle_s: float = 0.02) -> int:
        """`run()` on an asyncio loop: `turn()` stays synchronous (it polls without waiting),
        the loop yields between turns, `idle_s` after a turn that read nothing; `end()` may be
        a coroutine (the webhook sink waits for its requests in flight)."""
        with self._lifetime():
            while self.running:
                await asyncio.sleep(0 if self._step() else idle_s)
            ended: Any = self.end()
            if asyncio.iscoroutine(ended):
                await ended
        return 0

    @contextmanager
    def _lifetime(self) -> Iterator[None]:
        """begin() before the turns; abandon(exc) if a step raises; close() in any case."""
        try:
            self.begin()
            self.status_at = time.monotonic() + self.status_every
            yield
        except BaseException as exc:
            self.abandon(exc)
            raise
        finally:
            self.shutdown()

    def _step(self) -> bool:
        """One turn, after a heartbeat; the status when it is due. True if it read any."""
        self.heartbeat.beat()
        busy = self.turn()
        now = time.monotonic()
        if now >= self.status_at:
            self.status_at = now + self.status_every
            self.status()
        return busy

    def healthy(self) -> bool:
        """/healthz of main_serving()."""
        return self.running

    def main_serving(self, connectors: ConnectorSettings, component: str) -> int:
        """main() with /metrics and /healthz (healthy()) on ESCALATOR_METRICS_PORT, `component`
        on escalator_build_info; a port it cannot listen on: ConfigError, the clients closed."""
        mark_component(component)
        try:
            server = MetricsServer.on_metrics_port(connectors, self.healthy)
        except ConfigError:
            self.shutdown()
            raise
        return self.main(server)

    def main(self, server: MetricsServer | None = None) -> int:
        """A command's body: `run()` (on an asyncio loop if `run` is a coroutine function)
        until SIGTERM or SIGINT; then the previous signal handlers are back, `server` (the
        process's web port, started) is stopped and the clients are closed."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
        try:
            if asyncio.iscoroutinefunction(self.run):
                return asyncio.run(self.run())  # type: ignore[arg-type]
            return self.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if server is not None:
                server.stop()
            self.shutdown()
