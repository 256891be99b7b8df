"""Mutable twins: filled like a plain object, then the frozen record itself."""

from __future__ import annotations

import dataclasses

import pytest

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
