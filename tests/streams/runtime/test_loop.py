"""The shell of the consume-process-commit processes (streams.runtime.loop): signals stop it
cleanly, an exception of a step leaves it as it is after the clients are closed, the
readiness line is said once."""

from __future__ import annotations

import io
import os
import signal
from typing import Any

import pytest

from streams.runtime.liveness import Loop
from streams.runtime.loop import ConsumeLoop


class Recorder(ConsumeLoop):
    """A process whose steps record themselves; `turn()` calls `act(n)` on turn n."""

    who = "test"
    ready_text = "test ready"

    def __init__(self, act: Any, status_every: float = 3600.0) -> None:
        self.ticks = 0.0
        super().__init__(io.StringIO(), status_every, Loop(clock=self.clock))
        self.act = act
        self.steps: list[str] = []
        self.turns = 0

    def clock(self) -> float:
        self.ticks += 1
        return self.ticks

    def begin(self) -> None:
        self.steps.append("begin")
        self.ready(": 2 partitions")

    def turn(self) -> bool:
        self.turns += 1
        self.act(self.turns)
        return False

    def status(self) -> None:
        self.say(f"{self.turns} turns")

    def end(self) -> None:
        self.steps.append("end")

    def abandon(self, exc: BaseException) -> None:
        self.steps.append(f"abandon {type(exc).__name__}")

    def close(self) -> None:
        self.steps.append("close")


class AsyncRecorder(Recorder):
    async def run(self) -> int:  # type: ignore[override]
        return await self.run_async(idle_s=0)

    async def end(self) -> None:  # type: ignore[override]
        self.steps.append("end")


class Server:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def signal_on(turn: int, sig: signal.Signals) -> Any:
    def act(n: int) -> None:
        if n == turn:
            os.kill(os.getpid(), sig)

    return act


@pytest.fixture
def own_handlers() -> Any:
    """Handlers that fail the test if a signal reaches them, restored after it."""

    def reached(signum: int, frame: Any) -> None:
        raise AssertionError(f"signal {signum} reached the previous handler")

    previous = {sig: signal.signal(sig, reached) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield reached
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("kind", [Recorder, AsyncRecorder])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_loop_cleanly(kind: type[Recorder], sig: signal.Signals,
                                         own_handlers: Any) -> None:  # fmt: skip
    process = kind(signal_on(3, sig))
    server = Server()
    assert process.main(server) == 0  # type: ignore[arg-type]
    assert process.turns == 3
    assert process.steps == ["begin", "end", "close"]
    assert server.stopped
    assert signal.getsignal(signal.SIGTERM) is own_handlers
    assert signal.getsignal(signal.SIGINT) is own_handlers


class Boom(Exception):
    pass


@pytest.mark.parametrize("kind", [Recorder, AsyncRecorder])
def test_an_exception_of_a_step_leaves_after_closing(kind: type[Recorder],
                                                    own_handlers: Any) -> None:  # fmt: skip
    raised = Boom("record 7 broke")

    def act(n: int) -> None:
        if n == 2:
            raise raised

    process = kind(act)
    server = Server()
    with pytest.raises(Boom) as caught:
        process.main(server)  # type: ignore[arg-type]
    assert caught.value is raised
    assert process.steps == ["begin", "abandon Boom", "close"]  # no end(): nothing committed
    assert server.stopped
    assert signal.getsignal(signal.SIGTERM) is own_handlers


def test_run_closes_once_also_when_main_closes_after() -> None:
    process = Recorder(lambda n: process.stop())
    assert process.run() == 0
    process.shutdown()
    assert process.steps == ["begin", "end", "close"]


def test_readiness_is_said_once_and_status_on_its_period() -> None:
    process = Recorder(lambda n: n == 5 and process.stop(), status_every=0.0)
    process.run()
    lines = process.out.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0] == "escalator test: test ready: 2 partitions"
    assert [line for line in lines if "ready" in line] == [lines[0]]
    assert process.readies == 1
    assert lines[1:] == [f"escalator test: {n} turns" for n in range(1, 6)]


def test_every_turn_beats_the_heartbeat() -> None:
    beats: list[float] = []
    process = Recorder(lambda n: beats.append(process.heartbeat.last) or n == 3 and process.stop())
    process.run()
    assert len(beats) == 3 and beats == sorted(set(beats))  # a new beat before each turn
