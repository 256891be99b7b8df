"""Avro binary readers compiled to Python source for one schema: the worker's hot decode.

Why: fastavro's schemaless_reader reads a file object a few bytes per call, so a 60-byte
TicketEvent costs it more than the engine's work on the event. A reader made here indexes the
bytes directly and builds the same dict fastavro returns, for the schema's common shapes
(records of null, boolean, int, long, string, enum, unions, arrays and maps of them).

It only answers what it is sure of: on any doubt (truncated bytes, an index out of range, a
varint beyond 64 bits, invalid UTF-8, a negative length) it raises, and AvroCodec decodes the
message again with fastavro, whose result or error stands. So a message decodes to the same
dict or the same error as before, only faster when it is well formed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]

_INT32 = 1 << 31


class Unsure(ValueError):
    """The bytes are not a plainly well-formed record: let fastavro decide."""


def _varint(data: bytes, pos: int, b: int) -> tuple[int, int]:
    """The rest of a varint whose first byte `b` (read at pos - 1) has its high bit set;
    returns (the unsigned value, the position after it)."""
    n = b & 0x7F
    shift = 7
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Unsure("varint longer than 10 bytes")
    if n >> 64:
        raise Unsure("varint beyond 64 bits")
    return n, pos


class _Source:
    """The generated function's lines and the constants it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.names = 0

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def const(self, value: object) -> str:
        name = self.name("_c")
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _long(src: _Source, indent: int, target: str, kind: str = "long") -> None:
    """Read a zigzag varint into `target` (an int: within the 32-bit range)."""
    e = src.emit
    e(indent, "b = data[pos]")
    e(indent, "pos += 1")
    e(indent, "if b >= 0x80:")
    e(indent + 1, "b, pos = _varint(data, pos, b)")
    e(indent, f"{target} = (b >> 1) ^ -(b & 1)")
    if kind == "int":
        e(indent, f"if not -_INT32 <= {target} < _INT32:")
        e(indent + 1, "raise _Unsure('int out of range')")


def _value(src: _Source, indent: int, schema: Any, target: str) -> None:
    """Code reading one value of `schema` into the local `target`; Unsure for a type this
    module does not read (the codec then keeps fastavro for the whole schema)."""
    e = src.emit
    kind = schema if isinstance(schema, str) else None
    if isinstance(schema, Mapping):
        kind = schema.get("type")
        if schema.get("logicalType") is not None:  # fastavro converts those values
            raise Unsure(f"logical type {schema['logicalType']}")
        if isinstance(kind, (Mapping, list)):
            return _value(src, indent, kind, target)
    if isinstance(schema, list):
        _union(src, indent, schema, target)
    elif kind == "null":
        e(indent, f"{target} = None")
    elif kind == "boolean":
        e(indent, "b = data[pos]")
        e(indent, "pos += 1")
        e(indent, "if b > 1:")
        e(indent + 1, "raise _Unsure('boolean byte')")
        e(indent, f"{target} = b == 1")
    elif kind in ("int", "long"):
        _long(src, indent, target, kind)
    elif kind == "string":
        n = src.name("n")
        _long(src, indent, n)
        e(indent, f"if {n} < 0 or pos + {n} > len(data):")
        e(indent + 1, "raise _Unsure('string length')")
        e(indent, f"{target} = data[pos:pos + {n}].decode()")
        e(indent, f"pos += {n}")
    elif kind == "enum":
        symbols = src.const(tuple(schema["symbols"]))
        i = src.name("i")
        _long(src, indent, i)
        e(indent, f"if not 0 <= {i} < {len(schema['symbols'])}:")
        e(indent + 1, "raise _Unsure('enum index')")
        e(indent, f"{target} = {symbols}[{i}]")
    elif kind == "array":
        _blocks(src, indent, schema["items"], target, None)
    elif kind == "map":
        _blocks(src, indent, schema["values"], target, "string")
    else:
        raise Unsure(f"type {kind!r}")


def _union(src: _Source, indent: int, branches: list[Any], target: str) -> None:
    e = src.emit
    i = src.name("i")
    _long(src, indent, i)
    for index, branch in enumerate(branches):
        e(indent, f"{'if' if index == 0 else 'elif'} {i} == {index}:")
        _value(src, indent + 1, branch, target)
    e(indent, "else:")
    e(indent + 1, "raise _Unsure('union branch')")


def _blocks(src: _Source, indent: int, items: Any, target: str, keys: str | None) -> None:
    """An array (keys None) or a map: blocks of a count (negative: then a byte size) each,
    up to a count of 0."""
    e = src.emit
    count, item, key = src.name("n"), src.name("v"), src.name("k")
    e(indent, f"{target} = {{}}" if keys else f"{target} = []")
    e(indent, "while True:")
    _long(src, indent + 1, count)
    e(indent + 1, f"if {count} == 0:")
    e(indent + 2, "break")
    e(indent + 1, f"if {count} < 0:")
    e(indent + 2, f"{count} = -{count}")
    _long(src, indent + 2, src.name("size"))
    e(indent + 1, f"for _ in range({count}):")
    if keys:
        _value(src, indent + 2, keys, key)
    _value(src, indent + 2, items, item)
    e(indent + 2, f"{target}[{key}] = {item}" if keys else f"{target}.append({item})")


def compile_reader(schema: Mapping[str, Any]) -> Reader | None:
    """A reader of records written with `schema` (a record schema, timestamps without their
    logical type): reader(data, pos) -> (the record as fastavro decodes it, the position
    after it), raising on any doubt. None when the schema holds a type it does not read."""
    if schema.get("type") != "record":
        return None
    src = _Source()
    fields = []
    try:
        for field in schema["fields"]:
            local = src.name("f")
            _value(src, 1, field["type"], local)
            fields.append((field["name"], local))
    except Unsure:
        return None
    body = ", ".join(f"{name!r}: {local}" for name, local in fields)
    src.emit(1, f"return {{{body}}}, pos")
    code = "def read(data, pos):\n" + "\n".join(src.lines) + "\n"
    scope: dict[str, Any] = {"_varint": _varint, "_Unsure": Unsure, "_INT32": _INT32}
    scope.update(src.consts)
    exec(compile(code, f"<avro reader {schema.get('name')}>", "exec"), scope)  # noqa: S102
    reader: Reader = scope["read"]
    return reader
