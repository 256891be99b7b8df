"""Frozen slotted records built at the cost of mutable ones.

A frozen dataclass's generated __init__ sets every field through object.__setattr__, which
makes it several times slower than a plain one, and the hot path builds a record per event
(TicketEvent) and an action for about every other one. :func:`fast_constructor` makes, once
per class and from its fields, a constructor that skips that: it fills a mutable twin with the
same slot layout, then switches it to the frozen class by __class__ assignment (immutable
from then on). Where the record's module is compiled (mypyc, pyproject's compiled-modules) the
record is a native class with no __class__ to switch: a typed builder written beside the class
(`native=`) then stores each field straight into the record, which compiled code does without
any __setattr__; without one, the constructor stores each field past the frozen __setattr__ by
name (several times the cost).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

_P = ParamSpec("_P")
_T = TypeVar("_T")
_FACTORY: Any = object()  # an argument left to the field's default_factory


def field_values(record: Any) -> tuple[Any, ...]:
    """A dataclass record's fields in order, for its __reduce__: compiled by mypyc, a class is
    rebuilt by pickle through its __init__, and a frozen one refuses the attribute stores of
    pickle's default way (`backtest --jobs` sends boards and queue windows between processes)."""
    return tuple(getattr(record, f.name) for f in dataclasses.fields(record))


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


def fast_constructor(
    cls: Callable[_P, _T], native: Callable[_P, _T] | None = None
) -> Callable[_P, _T]:
    """A constructor for the frozen slotted dataclass `cls` with its signature, checks and
    defaults that builds the same record several times faster (see the module docstring).

    `native`: a builder that assigns every field of a new ``cls.__new__(cls)`` (assignments a
    frozen record refuses, hence used only for a compiled `cls`, and only if compiled itself).
    Its parameters are checked against the fields (names in order, defaults), compiled or not,
    so a field added to the class and not to its builder fails at import; that its body
    assigns each one, the compiled tests show (the compiled worker's digest equals plain
    Python's). A field with a default_factory defaults to None in it, for the factory's value."""
    frozen = cast(type, cls)
    fields = dataclasses.fields(frozen)
    if any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{frozen.__name__}: fast_constructor takes positional fields only")
    if native is not None:
        _check_builder(frozen, fields, native)
    shell = mutable_twin(frozen, init=False)
    if shell is None:
        if native is not None and not hasattr(native, "__code__"):  # compiled like the class
            return native
        return _native_constructor(cls, tuple(f.name for f in fields))
    return cast(Callable[_P, _T], _shell_constructor(frozen, shell, fields))


def _check_builder(
    frozen: type, fields: tuple[dataclasses.Field[Any], ...], native: Callable[..., Any]
) -> None:
    """Refuse a builder whose parameters are not the record's fields, in order, each with the
    field's default (None for a default_factory's)."""
    params = list(inspect.signature(native).parameters.values())
    names = [f.name for f in fields]
    problem = ""
    if [p.name for p in params] != names:
        problem = (
            f"takes ({', '.join(p.name for p in params)}), the fields are ({', '.join(names)})"
        )
    else:
        for f, p in zip(fields, params, strict=True):
            default: Any = p.empty
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = None
            if p.kind is not p.POSITIONAL_OR_KEYWORD or not _same(p.default, default):
                problem = f"parameter {p.name!r} is not the field's (positional, its default)"
                break
    if problem:
        name = getattr(native, "__name__", repr(native))
        raise TypeError(f"{frozen.__name__}: builder {name} {problem}")


def _same(given: object, default: object) -> bool:
    return given is default or (type(given) is type(default) and given == default)


def _shell_constructor(
    frozen: type, shell: type, fields: tuple[dataclasses.Field[Any], ...]
) -> Callable[..., Any]:
    """The constructor as straight-line code generated from the fields (as dataclasses
    generates __init__): a call, then one store per field, as cheap as written by hand."""
    names = [f.name for f in fields]
    env: dict[str, Any] = {"_shell_": shell, "_frozen_": frozen, "_FACTORY_": _FACTORY}
    if any(name.startswith("_") and name.endswith("_") for name in names):
        raise TypeError(f"{frozen.__name__}: a field name clashes with fast_constructor's")
    params, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            env[f"_default_{f.name}_"] = f.default
            params.append(f"{f.name}=_default_{f.name}_")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{f.name}_"] = f.default_factory
            params.append(f"{f.name}=_FACTORY_")
            body.append(f"if {f.name} is _FACTORY_: {f.name} = _factory_{f.name}_()")
        else:
            params.append(f.name)
    body.append("_record_ = _shell_()")
    body.extend(f"_record_.{name} = {name}" for name in names)
    body.extend(("_record_.__class__ = _frozen_", "return _record_"))
    source = f"def build({', '.join(params)}):\n" + "".join(f"    {line}\n" for line in body)
    exec(source, env)
    build: Callable[..., Any] = env["build"]
    build.__qualname__ = build.__name__ = f"new_{frozen.__name__}"
    return build


def _native_constructor(cls: Callable[_P, _T], names: tuple[str, ...]) -> Callable[_P, _T]:
    """The constructor for a native (compiled) `cls`: with every field positional, a new
    instance and a store per field; otherwise (keywords, defaults, a wrong count) `cls`
    itself, whose checks and defaults then apply."""
    frozen = cast(type, cls)
    new: Any = frozen.__new__
    count = len(names)

    def build(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        if kwargs or len(args) != count:
            return cls(*args, **kwargs)
        obj: _T = new(frozen)
        for i in range(count):
            object.__setattr__(obj, names[i], args[i])  # past the frozen __setattr__
        return obj

    return build
