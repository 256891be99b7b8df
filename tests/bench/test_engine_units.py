"""Unit check of bench/engine.py's `--jobs` timing: each run is timed in its own fresh
interpreter and writes the command's --out file (no services)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.engine import jobs_run
from streams.tools.generator import generate_to_file


def test_a_jobs_run_is_timed_in_a_fresh_interpreter_and_writes_the_same_out(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.jsonl"
    generate_to_file(history, agents=3, days=1, seed=5)
    own = os.times()
    one_s, one_cpu, one_out = jobs_run(history, 1, tmp_path)
    many_s, many_cpu, many_out = jobs_run(history, 2, tmp_path)
    after = os.times()
    assert one_out and one_out == many_out
    assert one_out.count(b"\n") > 10
    assert one_s > 0 and many_s > 0
    # the backtests ran in the children, whose CPU seconds are theirs and their processes'
    children = after.children_user + after.children_system - own.children_user - own.children_system
    assert one_cpu > 0 and many_cpu > 0 and one_cpu + many_cpu <= children + 0.05
    assert after.user + after.system - own.user - own.system < (one_cpu + many_cpu) / 2
