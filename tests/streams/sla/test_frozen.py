"""Mutable twins: filled like a plain object, then the frozen record itself."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streams.sla import actions, board, events
from streams.sla.actions import Escalation, Kind, Reason, SlaOutcome
from streams.sla.board import BoardEntry, BoardRecord, BoardView, Fired, Left, WarningEntry
from streams.sla.events import EventType, Priority, Status, TicketEvent
from streams.sla.frozen import fast_constructor, mutable_twin


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


def test_a_shell_filled_by_stores_becomes_an_equal_frozen_record() -> None:
    shell = mutable_twin(Point, init=False)
    built = shell()
    built.x, built.y, built.tags = 1, 2, ("a",)
    built.__class__ = Point
    assert type(built) is Point
    assert built == Point(1, 2, ("a",)) and hash(built) == hash(Point(1, 2, ("a",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.x = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        shell(1)


def test_a_twin_with_init_takes_the_record_s_arguments() -> None:
    twin = mutable_twin(Point)
    built = twin(1, 0, tags=("b",))
    built.__class__ = Point
    assert built == Point(1, 0, ("b",))
    with pytest.raises(TypeError):
        twin()


def test_fast_constructor_builds_the_frozen_record_and_rejects_what_it_rejects() -> None:
    new_point = fast_constructor(Point)
    assert new_point(4, tags=(), y=5) == Point(4, 5) and type(new_point(4, 5, ())) is Point
    with pytest.raises(TypeError):
        new_point(1, 2, (), 3)  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True, slots=True)
class Labelled:
    name: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


def test_fast_constructor_applies_defaults_and_default_factories_per_record() -> None:
    new_labelled = fast_constructor(Labelled)
    first, second = new_labelled("a"), new_labelled(name="b")
    assert first == Labelled("a") and second == Labelled("b")
    assert first.labels is not second.labels  # a fresh dict each, as the class makes them
    assert new_labelled("c", {"k": "v"}) == Labelled("c", {"k": "v"})


def test_fast_constructor_refuses_a_record_it_cannot_build_positionally() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Named:
        x: int

    with pytest.raises(TypeError, match="Named"):
        fast_constructor(Named)


def _build_point(x: int, y: int = 0, tags: tuple[str, ...] = ()) -> Point:
    return Point(x, y, tags)


def test_a_builder_with_the_record_s_fields_is_accepted_and_a_plain_record_keeps_its_shell() -> (
    None
):
    new_point = fast_constructor(Point, _build_point)
    # Point is plain Python (no mypyc): its frozen __setattr__ would refuse a builder's stores
    assert new_point is not _build_point
    assert new_point(1, tags=("a",)) == Point(1, 0, ("a",))


def _plain_left(escalation_id: str, at: int) -> Left:
    return Left(escalation_id, at)


def test_a_builder_left_plain_is_not_used_for_a_compiled_record() -> None:
    """Compiled (the compiled subset), Left is native and a plain builder's stores would hit
    its frozen __setattr__: the generic constructor serves instead; plain, the shell does."""
    new_left = fast_constructor(Left, _plain_left)
    assert new_left is not _plain_left
    assert new_left("e1", 5) == Left("e1", 5) and type(new_left("e1", 5)) is Left


def _swapped(y: int, x: int = 0, tags: tuple[str, ...] = ()) -> Point:
    return Point(x, y, tags)


def _short(x: int, y: int = 0) -> Point:
    return Point(x, y)


def _no_default(x: int, y: int, tags: tuple[str, ...] = ()) -> Point:
    return Point(x, y, tags)


def _other_default(x: int, y: int = 1, tags: tuple[str, ...] = ()) -> Point:
    return Point(x, y, tags)


def _list_default(x: int, y: int = 0, tags: list[str] = []) -> Point:  # noqa: B006
    return Point(x, y, tuple(tags))


def _keyword_only(x: int, *, y: int = 0, tags: tuple[str, ...] = ()) -> Point:
    return Point(x, y, tags)


@pytest.mark.parametrize(
    ("builder", "problem"),
    [
        (_swapped, r"takes \(y, x, tags\), the fields are \(x, y, tags\)"),
        (_short, r"takes \(x, y\), the fields are \(x, y, tags\)"),
        (_no_default, "parameter 'y'"),
        (_other_default, "parameter 'y'"),
        (_list_default, "parameter 'tags'"),  # a default of another type
        (_keyword_only, "parameter 'y'"),
    ],
)
def test_a_builder_that_is_not_the_record_s_fields_stops_the_import(
    builder: object, problem: str
) -> None:
    with pytest.raises(TypeError, match=rf"^Point: builder {builder.__name__} {problem}"):  # type: ignore[attr-defined]
        fast_constructor(Point, builder)  # type: ignore[arg-type]


def _build_labelled(name: str, labels: dict[str, str] | None = None) -> Labelled:
    return Labelled(name, {} if labels is None else labels)


def _labelled_without_default(name: str, labels: dict[str, str]) -> Labelled:
    return Labelled(name, labels)


def test_a_default_factory_s_field_defaults_to_none_in_its_builder() -> None:
    assert fast_constructor(Labelled, _build_labelled)("a") == Labelled("a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parameter 'labels'"):
        fast_constructor(Labelled, _labelled_without_default)


_FIRED = ("e1", "T1", "hierarchical", 2, 1, "lead", "churn_risk", "r1", 10, 11)
_ENTRY = ("T1", "e1", "functional", 1, "billing", "legal", "r2", 20, 21, 2, "HIGH", 30)
_WARNING = ("T1", "w1", "agent", "r3", 40, 41, 1)
_VIEW = ("T1", False, BoardEntry(*_ENTRY), WarningEntry(*_WARNING))
_EVENT = (
    "ev1", "T1", EventType.STATUS_CHANGED, 1_700_000_000_000, Status.PENDING, Priority.HIGH,
    "email", "billing", "c1", "gold", "tier1", "a1", 2, ("vip",), ("new",), 4, {"k": "v"},
)  # fmt: skip
_ESCALATION = (
    "e1", "T1", Kind.HIERARCHICAL, 2, 1, "support-manager", Reason.FIRST_RESPONSE_BREACH,
    "standard", "sla:first_response:breach", "first_response", 10, 12, "ev1", 3,
)  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name", "builder", "cls", "values"),
    [
        (events, "_new_event", "_build_event", TicketEvent, _EVENT),
        (actions, "new_escalation", "_build_escalation", Escalation, _ESCALATION),
        (actions, "new_outcome", "_build_outcome", SlaOutcome,
         ("T1", "p", "resolution", 1, 2, 3, 4, True, False, 5, 6)),
        (board, "_new_fired", "_build_fired", Fired, _FIRED),
        (board, "_new_entry", "_build_entry", BoardEntry, _ENTRY),
        (board, "_new_warning", "_build_warning", WarningEntry, _WARNING),
        (board, "_new_view", "_build_view", BoardView, _VIEW),
        (board, "_new_record", "_build_record", BoardRecord,
         (BoardView(*_VIEW), (Fired(*_FIRED),), (), None)),
    ],
)  # fmt: skip
def test_the_engine_s_constructors_build_the_record_the_class_builds(
    module: Any, name: str, builder: str, cls: type, values: tuple[Any, ...]
) -> None:
    """Each field distinct, so a builder storing one field's value in another fails here;
    compiled (scripts/test's compiled subset), the builder itself is the constructor."""
    new = getattr(module, name)
    assert (new is getattr(module, builder)) == hasattr(cls, "__mypyc_attrs__")
    built, plain = new(*values), cls(*values)
    assert type(built) is cls
    assert built == plain and hash(built) == hash(plain) and repr(built) == repr(plain)
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, first, values[0])


def test_an_event_built_without_attributes_gets_an_empty_mapping_of_its_own() -> None:
    first, second = events._new_event(*_EVENT[:4]), events._new_event(*_EVENT[:4])
    assert first == TicketEvent(*_EVENT[:4]) and first.attributes == {}
    assert first.attributes is not second.attributes
