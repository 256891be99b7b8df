"""Fixtures rendering the Helm chart (tests/deploy/chart.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import documents, helm_template


@pytest.fixture
def render(tmp_path: Path) -> Any:
    """render(values=None, production=False) -> list of rendered objects."""

    def _render(
        values: dict[str, Any] | None = None, production: bool = False
    ) -> list[dict[str, Any]]:
        proc = helm_template(values, production, tmp_path)
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return documents(proc.stdout)

    return _render


@pytest.fixture
def render_error(tmp_path: Path) -> Any:
    """render_error(values) -> helm's error output (the rendering must fail)."""

    def _render_error(values: dict[str, Any], production: bool = False) -> str:
        proc = helm_template(values, production, tmp_path)
        assert proc.returncode != 0, f"rendering should have failed:\n{proc.stdout[:2000]}"
        return str(proc.stderr)

    return _render_error
