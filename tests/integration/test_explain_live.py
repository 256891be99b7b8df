"""`escalator explain --live`: a ticket's state read back from a real worker's changelog is
explained exactly as the offline explanation of the same events ends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from streams.runtime.worker import changelog_topic
from streams.sla.events import event_from_dict
from streams.sla.policy import parse_policy
from streams.tools.explain import explain_events
from streams.tools.explain_live import read_live_state
from streams.tools.replay import replay
from tests.support.office_hours import HISTORY, POLICY
from tests.support.pipeline import REPO, Pipeline

pytestmark = pytest.mark.integration


def test_live_state_is_explained_as_the_history_ends(pipeline: Pipeline, tmp_path: Path) -> None:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(POLICY)
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(e) + "\n" for e in HISTORY))
    worker = pipeline.start_worker("w1", policy=policy_path)
    worker.wait_ready()
    sent, bad = replay(pipeline.settings, history, pipeline.topics, end_tick=True)
    assert (sent, bad) == (len(HISTORY), 0)

    settings = replace(pipeline.settings, app_id=pipeline.prefix + pipeline.settings.app_id)
    last = event_from_dict(HISTORY[-1]).occurred_at
    deadline = time.monotonic() + 60
    while True:  # the worker commits the last event's state in its transaction
        state, where = read_live_state(settings, "T1", timeout=20)
        if state is not None and "e4" in state.seen and state.clock_at >= last:
            break
        assert time.monotonic() < deadline, f"no state of T1 after e4 in {where}"
        time.sleep(0.5)

    cmd = [sys.executable, "-m", "streams.cli", "explain", "T1", "--live", "--json",
           "--policy", str(policy_path), "--topic-prefix", pipeline.prefix]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=pipeline.env(), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    live = json.loads(done.stdout)
    assert live["source"].startswith(f"{changelog_topic(settings)} partition ")

    policy = parse_policy(POLICY, "test.yaml")
    offline = explain_events(policy, [event_from_dict(e) for e in HISTORY])
    assert live["end"] == offline["end"]
    assert live["end"]["level"] == 3  # breached, then climbed unanswered: see test_explain
    text = "\n".join(live["end"]["text"])
    assert "resolution warning at 75% due Tue 2026-03-10 13:00 EDT" in text

    unknown = subprocess.run(
        [*cmd[:3], "explain", "T404", *cmd[5:]],
        cwd=REPO, env=pipeline.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("escalator explain: ticket 'T404': no state in ")
