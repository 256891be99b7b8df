"""The mypyc-compiled copy of the tree (var/compiled) that tests run the worker from.

scripts/test builds it (scripts/compile-engine) before the suite runs. A copy that is missing
or whose compiled modules' sources differ from the tree's stops the test with what to run:
a stale copy would test yesterday's code, and a missing one must not pass as skipped.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / "var" / "compiled"


def compiled_copy() -> Path:
    with open(REPO / "pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["escalator"]["compiled-modules"]
    rebuild = f"run `bash scripts/compile-engine {COMPILED.relative_to(REPO)}`"
    for module in modules:
        source, copy = REPO / module, COMPILED / module
        if not copy.exists() or not any(copy.parent.glob(f"{copy.stem}.*.so")):
            pytest.fail(f"no compiled copy of {module} under {COMPILED}: {rebuild}")
        if copy.read_bytes() != source.read_bytes():
            pytest.fail(f"{COMPILED / module} is not the source's {module}: {rebuild}")
    return COMPILED


def mapped_compiled(pid: int, tree: Path) -> bool:
    """Whether process `pid` has mapped the library mypyc built under `tree`."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    top = f"{tree.resolve()}/"
    return any(top in line and "__mypyc." in line for line in maps.splitlines())
