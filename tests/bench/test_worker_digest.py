"""The worker with the mypyc-compiled modules, as the Docker image ships it, writes the same
bytes as in plain Python: bench/worker_digest.py drives the same history through both trees
(outputs, changelog, stores, counters and metrics, each as a SHA-256).

The compiled copy is var/compiled (tests/support/compiled.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.compiled import REPO, compiled_copy

PARTS = ("outputs", "changelog", "stores", "counters", "metrics", "digest")


def run(tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=600
    )  # in `tree`: `python -c` puts the working directory first on the path
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def digests(tree: Path) -> dict[str, str]:
    out = run(tree, str(REPO / "bench" / "worker_digest.py"), "--agents", "40", "--days", "2")
    found = {}
    for line in out.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in PARTS:
            found[name.strip()] = value.strip()
    assert set(found) == set(PARTS), out
    return found


def test_the_compiled_worker_writes_what_plain_python_writes() -> None:
    compiled = compiled_copy()
    modules = "streams.runtime.processor", "streams.sla.board", "schemas.records"
    where = f"import importlib; print(*(importlib.import_module(m).__file__ for m in {modules}))"
    loaded = run(compiled, "-c", where).split()
    assert all(path.endswith(".so") for path in loaded), loaded  # not silently plain
    assert digests(compiled) == digests(REPO)
