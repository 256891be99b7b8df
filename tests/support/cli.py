"""`escalator` run as a process, and its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.pipeline import REPO


def cli(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`escalator <command>` as a process, with only the given ESCALATOR_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *command], cwd=REPO, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
