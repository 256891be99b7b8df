"""The layout's import direction (issue #19): the command line wires everything and nothing
imports it; tools may use connectors; connectors use the runtime and schemas; the runtime and
schemas use only the core; the core (streams.sla) imports nothing of ours.

Every import counts, also the ones inside functions: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("streams", "connectors", "schemas")

# part -> the parts it may import (besides itself)
ALLOWED = {
    "streams.sla": set(),
    # The runtime and schemas are one layer: the codec takes its registry from the settings.
    "schemas": {"streams.sla", "streams.runtime"},
    "streams.runtime": {"streams.sla", "schemas"},
    "connectors": {"streams.sla", "schemas", "streams.runtime"},
    "streams.tools": {"streams.sla", "schemas", "streams.runtime", "connectors"},
    "streams.cli": {"streams.sla", "schemas", "streams.runtime", "connectors", "streams.tools"},
}


def part_of(module: str) -> str | None:
    """The layout part a dotted module belongs to (longest prefix), None if not ours."""
    found = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(found, key=len) if found else None


def modules() -> list[tuple[str, Path]]:
    found = []
    for top in OURS:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            found.append((".".join(p for p in rel.parts if p != "__init__"), path))
    return found


def imports(path: Path, module: str) -> set[str]:
    """Dotted names a module imports (absolute; relative ones resolved against `module`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level or None]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in OURS}


def test_every_module_belongs_to_a_part() -> None:
    assert [m for m, _ in modules() if part_of(m) is None] == ["streams"]


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_run_one_way(module: str, path: Path) -> None:
    own = part_of(module)
    if own is None:
        return
    wrong = {
        name for name in imports(path, module)
        if (part := part_of(name)) is not None and part != own and part not in ALLOWED[own]
    }  # fmt: skip
    assert not wrong, f"{module} ({own}) imports {sorted(wrong)}"
