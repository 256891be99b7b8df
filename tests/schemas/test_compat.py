"""The compatibility check passes on the repo and reports incompatible changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import SCHEMA_DIR
from schemas.compat import check_compatibility, main, sample_records

REPO = SCHEMA_DIR.parent


def test_repo_schemas_are_compatible() -> None:
    assert check_compatibility() == []


def test_cli_prints_ok() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemas.compat"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def _edit(path: Path, change: Any) -> None:
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def _release(copy: Path, name: str, change: Any) -> None:
    """Change the current schema and release it properly as a new version with a new id."""
    _edit(copy / f"{name}.avsc", change)
    ids = json.loads((copy / "ids.json").read_text())
    version = max(int(v) for v in ids[name]) + 1
    shutil.copy(copy / f"{name}.avsc", copy / "history" / f"{name}.v{version}.avsc")
    ids[name][str(version)] = max(i for vs in ids.values() for i in vs.values()) + 1
    (copy / "ids.json").write_text(json.dumps(ids))


def test_copy_is_clean(copy: Path) -> None:
    assert check_compatibility(copy) == []


def test_new_required_field_is_reported(copy: Path) -> None:
    def add(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "region", "type": "string", "doc": "Region."})

    _release(copy, "TicketEvent", add)
    problems = check_compatibility(copy)
    assert any("TicketEvent: not backward compatible" in p and "v1" in p for p in problems)
    assert main([str(copy)]) == 1


def test_new_optional_field_is_fine(copy: Path) -> None:
    def add(schema: dict[str, Any]) -> None:
        schema["fields"].append(
            {"name": "region", "type": ["null", "string"], "default": None, "doc": "Region."}
        )

    _release(copy, "TicketEvent", add)
    assert check_compatibility(copy) == []


def test_new_enum_symbol_breaks_old_readers(copy: Path) -> None:
    def add(schema: dict[str, Any]) -> None:
        schema["fields"][2]["type"]["symbols"].append("MERGED")

    _release(copy, "TicketEvent", add)
    problems = check_compatibility(copy)
    assert any("not forward compatible" in p and "MERGED" in p for p in problems), problems


def test_in_place_edit_missing_doc_and_ids(copy: Path) -> None:
    def edit(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "x", "type": ["null", "int"], "default": None})

    _edit(copy / "Escalation.avsc", edit)
    ids = json.loads((copy / "ids.json").read_text())
    ids["Reminder"]["1"] = ids["Escalation"]["1"]
    del ids["OpsAlert"]
    (copy / "ids.json").write_text(json.dumps(ids))
    problems = check_compatibility(copy)
    text = "\n".join(problems)
    assert "Escalation.avsc differs from history/Escalation.v1.avsc" in text
    assert "Escalation.avsc.x: field has no doc" in text
    assert "used by both" in text
    assert "no id for OpsAlert v1" in text


def test_samples_cover_nulls_values_and_every_symbol() -> None:
    schema = json.loads((SCHEMA_DIR / "TicketEvent.avsc").read_text())
    samples = sample_records(schema)
    assert {s["type"] for s in samples} == set(schema["fields"][2]["type"]["symbols"])
    assert any(s["status"] is None for s in samples) and any(s["status"] for s in samples)
    assert any(s["tags_added"] == [] for s in samples) and any(s["tags_added"] for s in samples)


# --------------------------------------------------------------------------------------------
# The registry's own verdict (a real Apicurio Registry from deploy/local/services)


@pytest.mark.integration
def test_registry_agrees_on_the_repo_schemas_and_leaves_no_subject(schema_registry: str) -> None:
    from schemas.codec import RegistryClient

    result = subprocess.run(
        [sys.executable, "-m", "schemas.compat", "--registry", schema_registry],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK: the schema registry at {schema_registry} agrees" in result.stdout
    subjects = RegistryClient(schema_registry).client.get_subjects()
    assert not [s for s in subjects if s.startswith("escalator-compat-")]


@pytest.mark.integration
def test_registry_refuses_a_new_required_field(copy: Path, schema_registry: str) -> None:
    from schemas.codec import RegistryClient
    from schemas.compat import check_registry

    def add(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "region", "type": "string", "doc": "Region."})

    _release(copy, "TicketEvent", add)
    problems = check_registry(RegistryClient(schema_registry), copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith("TicketEvent: the registry refuses history v3")
    assert "incompatible" in problems[0]


@pytest.mark.integration
def test_registry_refuses_the_schema_under_a_subject_in_use(schema_registry: str) -> None:
    import uuid

    from schemas.codec import RegistryClient
    from schemas.compat import check_registry

    registry = RegistryClient(schema_registry)
    subject = f"compat-{uuid.uuid4().hex[:8]}-escalations-value"
    other = {"type": "record", "name": "Escalation", "namespace": "io.escalator.v1",
             "fields": [{"name": "case_number", "type": "long"}]}  # fmt: skip
    registry.register(subject, json.dumps(other))
    problems = check_registry(registry, SCHEMA_DIR, {"Escalation": subject, "Reminder": "absent"})
    assert problems == [
        f"Escalation: the registry refuses the current schema under subject {subject} "
        "(not compatible with what is registered there, by its rule)"
    ]


def test_the_acknowledgement_symbol_even_with_an_enum_default_breaks_old_readers(
    copy: Path,
) -> None:
    """Why ESCALATION_ACKNOWLEDGED travels as TAGS_CHANGED plus an attribute (see
    schemas/records.py): a `default` only helps readers that have it, and v1/v2 do not."""

    def add(schema: dict[str, Any]) -> None:
        enum = schema["fields"][2]["type"]
        enum["symbols"].append("ESCALATION_ACKNOWLEDGED")
        enum["default"] = "TAGS_CHANGED"

    _release(copy, "TicketEvent", add)
    problems = check_compatibility(copy)
    assert any(
        "not forward compatible" in p and "ESCALATION_ACKNOWLEDGED" in p for p in problems
    ), problems
