"""Action records built on the engine's fast path are the same frozen records."""

from __future__ import annotations

import dataclasses

import pytest

from streams.sla.actions import (
    Escalation,
    Kind,
    PriorityBump,
    Reason,
    Reminder,
    Silenced,
    SlaOutcome,
    new_escalation,
    new_outcome,
)
from streams.sla.frozen import fast_constructor


def test_fast_constructor_builds_an_equal_frozen_record() -> None:
    values = (
        "e1", "T1", Kind.HIERARCHICAL, 2, 1, "support-manager", Reason.FIRST_RESPONSE_BREACH,
        "standard", "sla:first_response:breach", "first_response", 10, 12, None, 0,
    )  # fmt: skip
    built = new_escalation(*values)
    plain = Escalation(*values)
    assert type(built) is Escalation
    assert built == plain and hash(built) == hash(plain) and repr(built) == repr(plain)
    assert built.to_dict() == plain.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.level = 3  # type: ignore[misc]
    assert dataclasses.replace(built, level=3).level == 3


def test_fast_constructor_takes_keywords_and_rejects_what_the_class_rejects() -> None:
    outcome = new_outcome(
        ticket_id="T1", policy="p", metric="resolution", cycle=0, round=0, started_at=1,
        ended_at=2, met=True, breached=False, business_elapsed=1, target=None,
    )  # fmt: skip
    assert isinstance(outcome, SlaOutcome) and outcome.target is None
    with pytest.raises(TypeError):
        new_outcome("T1")  # type: ignore[call-arg]
    assert fast_constructor(SlaOutcome)(*dataclasses.astuple(outcome)) == outcome


def _sample(f: dataclasses.Field[object]) -> object:
    """A value of a field's type: its annotation's text, or a compiled module's type (which
    shows an optional `int | None` as <class 'type'>)."""
    text = f.type if isinstance(f.type, str) else repr(f.type)
    for name, value in (("'type'", None), ("Reason", Reason.CHURN_RISK), ("Kind", Kind.PRIORITY),
                        ("bool", True), ("int", 7)):  # fmt: skip
        if name in text:
            return value
    return f"{f.name}-1"


@pytest.mark.parametrize("cls", [Escalation, PriorityBump, Reminder, SlaOutcome, Silenced])
def test_to_dict_is_what_asdict_gives(cls: type) -> None:
    """The --out lines and explain's JSON are built from to_dict: same keys, order, values."""
    action = cls(*(_sample(f) for f in dataclasses.fields(cls)))
    got = action.to_dict()
    assert list(got.items()) == list(dataclasses.asdict(action).items())
    assert got["ticket_id"] == "ticket_id-1"
    assert got.get("reason", Reason.CHURN_RISK) is Reason.CHURN_RISK
