"""The Faust runtime started the Faust way (`faust -A streams.faust_app worker`), on the real
broker; the runtime-parametrized pipeline tests are in test_pipeline.py."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.demo import free_port
from streams.replay import replay
from tests.integration.conftest import REPO, Pipeline, WorkerProcess
from tests.integration.test_pipeline import history

pytestmark = pytest.mark.integration


def start_faust_cli(line: Pipeline, name: str, app: str = "streams.faust_app") -> WorkerProcess:
    """`faust -A APP worker` with the pipeline's settings, ESCALATOR_TOPIC_PREFIX and
    ESCALATOR_EVENT_TIME in place of the escalator command's flags."""
    data = line.root / name
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **line.env(),
        "ESCALATOR_PROCESSING_GUARANTEE": "at_least_once",
        "ESCALATOR_TOPIC_PREFIX": line.prefix,
        "ESCALATOR_EVENT_TIME": "on",
        "ESCALATOR_DATA_DIR": str(data),
        "ESCALATOR_WEB_PORT": str(port),
    }
    log = line.root / f"{name}.log"
    cmd = [sys.executable, "-m", "faust", "-A", app, "worker", "-l", "info"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = WorkerProcess(name, proc, log, port)
    line.workers.append(worker)
    return worker


def test_faust_cli_worker_equals_backtest(pipeline: Pipeline, tmp_path: Path) -> None:
    path, expected = history(tmp_path, agents=6, days=2, seed=31)
    worker = start_faust_cli(pipeline, "faust-cli")
    worker.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert bad == 0 and sent > 500
    records = pipeline.read("escalations", "Escalation", expect=len(expected), timeout=120)
    seen = Counter(r["escalation_id"] for r in records)
    assert set(seen) == expected
    assert worker.partitions() == [0, 1, 2]
