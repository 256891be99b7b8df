"""Frozen slotted records built at the cost of mutable ones.

A frozen dataclass's generated __init__ sets every field through object.__setattr__, which
makes it several times slower than a plain one, and the hot path builds a record per event
(TicketEvent) and an action for about every other one. A mutable twin with the same slot
layout is filled instead, then switched to the frozen class by __class__ assignment
(immutable from then on). Where the record's module is compiled (mypyc, pyproject's
compiled-modules) the record is a native class with no __class__ to switch: callers then
store its fields directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

_P = ParamSpec("_P")
_T = TypeVar("_T")


def mutable_twin(cls: type, *, init: bool = True) -> Any:
    """A mutable dataclass with the fields and slot layout of the frozen dataclass `cls`,
    whose instances can become `cls` instances by __class__ assignment; None where `cls` is
    a native (compiled) class. With ``init=False`` it takes no arguments, for a caller that
    fills it by attribute stores, which costs less than a call passing every field."""
    if hasattr(cls, "__mypyc_attrs__"):
        return None
    fields = dataclasses.fields(cls)
    twin = dataclasses.make_dataclass(
        f"_{cls.__name__}Builder", [(f.name, f.type) for f in fields], slots=True, init=init
    )
    try:
        probe = twin(*(None for _ in fields)) if init else twin()
        probe.__class__ = cls
    except TypeError:  # pragma: no cover - another interpreter's object layout
        raise ImportError(
            f"{cls.__name__}: this interpreter cannot switch a record's class"
        ) from None
    return twin


def fast_constructor(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """A constructor for the frozen slotted dataclass `cls` that fills its mutable twin and
    switches the class; compiled, `cls` itself."""
    frozen = cast(type, cls)
    twin = mutable_twin(frozen)
    if twin is None:
        return cls

    def build(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        obj: Any = twin(*args, **kwargs)
        obj.__class__ = frozen
        result: _T = obj  # not cast(): a function call per action
        return result

    return build
