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


def compiled_module_paths() -> list[str]:
    """pyproject's `[tool.escalator] compiled-modules`: paths of the modules mypyc compiles."""
    with open(REPO / "pyproject.toml", "rb") as f:
        paths: list[str] = tomllib.load(f)["tool"]["escalator"]["compiled-modules"]
    return paths


def compiled_module_names() -> list[str]:
    """The same as dotted module names."""
    return [path.removesuffix(".py").replace("/", ".") for path in compiled_module_paths()]


def compiled_copy() -> Path:
    rebuild = f"run `bash scripts/compile-engine {COMPILED.relative_to(REPO)}`"
    for module in compiled_module_paths():
        source, copy = REPO / module, COMPILED / module
        if not copy.exists() or not any(copy.parent.glob(f"{copy.stem}.*.so")):
            pytest.fail(f"no compiled copy of {module} under {COMPILED}: {rebuild}")
        if copy.read_bytes() != source.read_bytes():
            pytest.fail(f"{COMPILED / module} is not the source's {module}: {rebuild}")
    return COMPILED


def mapped_compiled(pid: int, tree: Path) -> bool:
    """Whether process `pid` has mapped the library mypyc built under `tree` (as
    bench/pipeline.py --compiled-cost tells a compiled worker)."""
    # here, not at the top: tests/conftest.py imports this module in the compiled copy too,
    # which has no bench/
    from bench.compiled_worker import maps_compiled
    from bench.pipeline import mapped_under

    return maps_compiled(mapped_under(pid, tree))
