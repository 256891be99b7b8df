"""streams.runtime.watchdog: one thread guards each blocking call in turn."""

from __future__ import annotations

import threading

from streams.runtime.watchdog import Watchdog


def test_an_overrun_is_reported_once_and_a_call_back_in_time_is_not() -> None:
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()

    def overrun(call: str) -> None:
        fired.append(call)
        done.set()

    for _ in range(50):  # returned in time: never reported
        with dog.guard("quick", 0.2, overrun):
            pass
    with dog.guard("slow", 0.05, overrun):
        assert done.wait(5)
    done.clear()
    with dog.guard("quick", 0.2, overrun):
        pass
    assert not done.wait(0.4)
    assert fired == ["slow"]


def test_a_deadline_earlier_than_the_one_awaited_wakes_the_thread() -> None:
    """The thread sleeps until the armed deadline; a later guard with a shorter limit must
    not wait for the earlier, longer one."""
    dog = Watchdog()
    fired = threading.Event()
    with dog.guard("long", 60, lambda call: None):
        pass  # the thread now sleeps until 60 s from now
    with dog.guard("short", 0.05, lambda call: fired.set()):
        assert fired.wait(5)
