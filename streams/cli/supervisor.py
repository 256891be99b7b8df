"""`escalator worker` as a supervisor: the worker runs as its child and is restarted when it
asks to (streams.runtime.worker.Restart), with backoff; signals pass through."""

from __future__ import annotations

import contextlib
import os
import sys
import time

CHILD_ENV = "ESCALATOR_WORKER_CHILD"
SUPERVISOR_ENV = "ESCALATOR_WORKER_SUPERVISOR_PID"  # the supervisor's pid, set for its child
RESTART_BACKOFF_BASE_S = 1.0
RESTART_BACKOFF_CAP_S = 60.0
STABLE_RUN_S = 600  # a worker that ran this long starts a new series of restarts


def restart_delay(restarts: int) -> float:
    """Seconds before the n-th consecutive restart: the first at once, then 1, 2, 4 ... 60 s,
    so a worker failing at start-up (Kafka down, a fenced producer) does not spin."""
    if restarts <= 1:
        return 0.0
    return min(RESTART_BACKOFF_CAP_S, RESTART_BACKOFF_BASE_S * 2.0 ** min(restarts - 2, 30))


def pause(seconds: float) -> bool:
    """Sleep, unless SIGTERM/SIGINT arrives first: then False (the supervisor stops)."""
    import signal

    stopped: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stopped.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        deadline = time.monotonic() + seconds
        while not stopped and time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return not stopped


def supervise_worker() -> int:
    """Run the worker as a child process and restart it when it asks to.

    The worker exits with RESTART_EXIT_CODE when it must resume from committed
    offsets (see streams.runtime.worker.Restart); any other exit ends `escalator
    worker` with the child's code. Consecutive restarts back off exponentially
    (restart_delay). Signals are passed on, and the child is
    killed with its parent (PR_SET_PDEATHSIG), so a SIGKILL of this process
    kills the whole worker as it would a container.
    """
    import signal
    import subprocess

    from streams.runtime.worker import RESTART_EXIT_CODE, RESTARTS_ENV

    restarts = 0
    while True:
        env = {**os.environ, CHILD_ENV: "1", RESTARTS_ENV: str(restarts),
               SUPERVISOR_ENV: str(os.getpid())}  # fmt: skip
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "streams.cli", *sys.argv[1:]], env=env)

        def forward(signum: int, _frame: object, child: subprocess.Popen[bytes] = child) -> None:
            child.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        code = child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if code != RESTART_EXIT_CODE:
            return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
        restarts = restarts + 1 if time.monotonic() - started < STABLE_RUN_S else 1
        delay = restart_delay(restarts)
        sys.stderr.write(
            f"escalator worker: restarting the worker process ({restarts})"
            + (f" in {delay:g}s\n" if delay else "\n")
        )
        if delay and not pause(delay):
            return 0


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG, then exit if the supervisor already died: a supervisor SIGKILLed while
    this child was starting (before the prctl) sends no signal, and the orphan would go on
    consuming with nobody to stop it (found by bench/chaos.py)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if supervisor.isdigit() and os.getppid() != int(supervisor):
        sys.stderr.write(f"escalator worker: its supervisor (pid {supervisor}) is gone; exiting\n")
        sys.stderr.flush()
        os._exit(1)
