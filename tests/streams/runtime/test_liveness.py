"""The worker's /healthz comes from its loop's progress and /startupz waits for the first
restore (issue #18, item 6); the worker itself is a stand-in here, no Kafka."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from streams.runtime.liveness import LOOP, Loop
from streams.runtime.settings import load_settings
from streams.runtime.worker import serve
from streams.tools.demo import free_port


def test_the_loop_is_alive_while_it_turns_and_longer_while_it_restores() -> None:
    now = [100.0]
    loop = Loop(lambda: now[0])
    assert loop.alive(False, stall_s=60, restore_s=600)
    now[0] += 61
    assert not loop.alive(False, stall_s=60, restore_s=600)
    assert loop.alive(True, stall_s=60, restore_s=600)  # a restore blocks the loop
    now[0] += 600
    assert not loop.alive(True, stall_s=60, restore_s=600)
    loop.beat()
    assert loop.alive(False, stall_s=60, restore_s=600)


@pytest.fixture
def probe() -> Iterator[tuple[SimpleNamespace, str]]:
    port = free_port()
    settings = load_settings({"ESCALATOR_WEB_HOST": "127.0.0.1", "ESCALATOR_WEB_PORT": str(port),
                              "ESCALATOR_LIVENESS_STALL_S": "30"})  # fmt: skip
    worker = SimpleNamespace(processor=SimpleNamespace(metrics=None), lag=list,
                             rebalancing=False, assignments=0,
                             readiness=lambda: (503, b"{}"))  # fmt: skip
    server = serve(worker, settings)  # type: ignore[arg-type]
    last = LOOP.last
    try:
        yield worker, f"http://127.0.0.1:{port}"
    finally:
        LOOP.last = last
        server.stop()


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_fails_when_the_loop_stalls(probe: tuple[SimpleNamespace, str]) -> None:
    worker, base = probe
    LOOP.beat()
    assert get(f"{base}/healthz")[0] == 200
    LOOP.last = time.monotonic() - 31  # the loop has not turned for 31 s
    assert get(f"{base}/healthz") == (503, {"status": "unhealthy"})
    worker.rebalancing = True  # ... but it is restoring state
    assert get(f"{base}/healthz")[0] == 200
    worker.rebalancing = False
    LOOP.beat()
    assert get(f"{base}/healthz")[0] == 200


def test_startupz_waits_for_the_first_restore(probe: tuple[SimpleNamespace, str]) -> None:
    worker, base = probe
    assert get(f"{base}/startupz") == (503, {"started": False, "assignments": 0})
    worker.assignments = 1
    assert get(f"{base}/startupz") == (200, {"started": True, "assignments": 1})
