"""`escalator version`: the package version and whether the engine runs compiled.

The Docker image ships the hot modules of the engine and the worker's processor compiled with
mypyc (pyproject.toml `[tool.escalator] compiled-modules`; the worker is about 25-55% faster
with them, measured by `bench/pipeline.py --compiled-cost`). A compiled module is an
extension module beside its `.py`, which Python imports first; this says which ones this
installation has, and `--expect-compiled` fails the image build when the engine would run as
plain Python.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import platform
from pathlib import Path

PACKAGES = ("streams", "connectors", "schemas")
ENGINE = "streams.sla.engine"  # the module whose speed the compiled build is for


def compiled_modules() -> list[str]:
    """The package modules installed as extension modules (dotted names, sorted)."""
    found = []
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__path__[0])
        for path in root.rglob("*"):
            if path.name.endswith(suffixes):
                stem = path.name.split(".", 1)[0]
                parts = path.relative_to(root.parent).parent.parts
                found.append(".".join((*parts, stem)))
    return sorted(found)


def engine_compiled() -> bool:
    origin = str(importlib.import_module(ENGINE).__file__)
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def describe() -> str:
    try:
        version = importlib.metadata.version("escalator")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    modules = compiled_modules()
    if engine_compiled():
        engine = f"compiled with mypyc ({len(modules)} modules)"
    else:
        engine = "plain Python"
    return f"escalator {version} (Python {platform.python_version()}); engine: {engine}"
