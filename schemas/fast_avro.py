"""Avro binary readers and writers compiled to Python source for one schema: the worker's
hot decode and encode.

Why: fastavro's schemaless_reader reads a file object a few bytes per call, so a 60-byte
TicketEvent costs it more than the engine's work on the event (and its writer has the same
per-call overhead). A reader made here indexes the bytes directly and builds the same dict
fastavro returns; a writer appends to one bytearray the bytes fastavro writes; both for the
schema's common shapes (records of null, boolean, int, long, string, enums, unions, arrays and
maps of them).

They only answer what they are sure of: on any doubt (truncated bytes, an index out of range,
a varint beyond 64 bits, invalid UTF-8, a negative length; a value not exactly of its field's
type) they raise Unsure, and AvroCodec does the message again with fastavro, whose result or
error stands. So a message decodes to the same dict or the same error as before, and a record
encodes to the same bytes or the same error, only faster when it is plainly well formed.

A function is made from its source at start-up (exec), except where `schemas/avro_generated.py`
(`render_module`, written by scripts/gen-avro) holds one of exactly that source: the current
schemas' readers and writers, which mypyc compiles with the worker.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]
Writer = Callable[[bytearray, Mapping[str, Any]], None]

_INT32: Final = 1 << 31


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


def _index(data: bytes, pos: int, b: int) -> tuple[int, int]:
    """A length or index (a zigzag varint that must not be negative) whose first byte `b`,
    read at pos - 1, is not the plain single byte of a value under 64."""
    if b >= 0x80:
        b, pos = _varint(data, pos, b)
    value = (b >> 1) ^ -(b & 1)
    if value < 0:
        raise Unsure("negative length or count")
    return value, pos


@dataclass(frozen=True)
class Generated:
    """A generated function's source: its constants, then its definition (a module's text,
    typed so that mypyc compiles it to native code: `schemas/avro_generated.py` holds the
    current schemas' functions, see `render_module`)."""

    name: str
    text: str

    @property
    def key(self) -> str:
        """What identifies the source: a prebuilt function stands for it only if equal."""
        return hashlib.sha256(self.text.encode()).hexdigest()


class _Source:
    """The generated function's lines and the constants it refers to."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.names = 0
        self.namespace: str | None = None
        self.enums: dict[str, Mapping[str, Any]] = {}  # named enums defined so far, by name

    def enum(self, schema: Any, namespace: str | None) -> Mapping[str, Any] | None:
        """The enum `schema` defines (remembered by name and full name) or names; None for
        anything else."""
        if isinstance(schema, str):
            return self.enums.get(schema) or self.enums.get(f"{namespace}.{schema}")
        if isinstance(schema, Mapping) and schema.get("type") == "enum":
            name = schema["name"]
            space = schema.get("namespace", namespace)
            self.enums[name] = schema
            if "." not in name and space:
                self.enums[f"{space}.{name}"] = schema
            return schema
        return None

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def const(self, value: object) -> str:
        name = f"_{self.function}{self.name('_c')}"
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def render(self, signature: str) -> Generated:
        consts = "".join(f"{name}: Final = {value!r}\n" for name, value in self.consts.items())
        body = "\n".join(self.lines)
        return Generated(self.function, f"{consts}\n\ndef {self.function}{signature}:\n{body}\n")


def _function(prefix: str, schema: Mapping[str, Any]) -> str:
    """The generated function's name: `prefix`, then the record's name as an identifier."""
    name = re.sub(r"\W", "_", str(schema.get("name")))
    return f"{prefix}_{name}"


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
    kind = _kind(src, schema)
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
        # a length under 64 is one even byte: twice the length
        e(indent, "b = data[pos]")
        e(indent, "pos += 1")
        e(indent, "if b & 0x81:")
        e(indent + 1, "b, pos = _index(data, pos, b)")
        e(indent, "else:")
        e(indent + 1, "b >>= 1")
        e(indent, "end = pos + b")
        e(indent, "if end > size:")
        e(indent + 1, "raise _Unsure('string length')")
        e(indent, f"{target} = data[pos:end].decode()")
        e(indent, "pos = end")
    elif kind == "enum":
        enum = src.enum(schema, src.namespace)
        assert enum is not None
        symbols = src.const(tuple(enum["symbols"]))
        count = len(enum["symbols"])
        if count > 64:
            raise Unsure("an enum of more than 64 symbols")
        # the index of one of up to 64 symbols is one even byte (any other encoding: Unsure)
        e(indent, "b = data[pos]")
        e(indent, "pos += 1")
        e(indent, f"if b & 1 or b >= {2 * count}:")
        e(indent + 1, "raise _Unsure('enum index')")
        e(indent, f"{target} = {symbols}[b >> 1]")
    elif kind == "array":
        _blocks(src, indent, schema["items"], target, None)
    elif kind == "map":
        _blocks(src, indent, schema["values"], target, "string")
    else:
        raise Unsure(f"type {kind!r}")


def _kind(src: _Source, schema: Any) -> Any:
    """The type name of `schema` ("enum" for a named enum), or the schema it wraps."""
    if isinstance(schema, list):
        return "union"
    if src.enum(schema, src.namespace) is not None:
        return "enum"
    if isinstance(schema, Mapping):
        if schema.get("logicalType") is not None:  # fastavro converts those values
            raise Unsure(f"logical type {schema['logicalType']}")
        return schema.get("type")
    return schema


def _union(src: _Source, indent: int, branches: list[Any], target: str) -> None:
    """The branch index, one even byte for up to 64 branches (any other encoding: Unsure)."""
    if len(branches) > 64:
        raise Unsure("a union of more than 64 branches")
    e = src.emit
    e(indent, "b = data[pos]")
    e(indent, "pos += 1")
    for index, branch in enumerate(branches):
        e(indent, f"{'if' if index == 0 else 'elif'} b == {2 * index}:")
        _value(src, indent + 1, branch, target)
    e(indent, "else:")
    e(indent + 1, "raise _Unsure('union branch')")


def _blocks(src: _Source, indent: int, items: Any, target: str, keys: str | None) -> None:
    """An array (keys None) or a map: blocks of a count (negative: then a byte size) each,
    up to a count of 0."""
    e = src.emit
    count, item, key = src.name("n"), src.name("v"), src.name("k")
    e(indent, f"{target} = {{}}" if keys else f"{target} = []")
    e(indent, "if data[pos] == 0:  # empty, the common case")
    e(indent + 1, "pos += 1")
    e(indent, "else:")
    indent += 1
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


def reader_source(schema: Mapping[str, Any]) -> Generated | None:
    """The source of a reader of records written with `schema` (a record schema, timestamps
    without their logical type); None when the schema holds a type it does not read."""
    if schema.get("type") != "record":
        return None
    src = _Source(_function("read", schema))
    src.namespace = schema.get("namespace")
    src.emit(1, "size = len(data)")
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
    return src.render("(data: bytes, pos: int) -> tuple[dict[str, Any], int]")


def compile_reader(schema: Mapping[str, Any]) -> Reader | None:
    """A reader of records written with `schema` (a record schema, timestamps without their
    logical type): reader(data, pos) -> (the record as fastavro decodes it, the position
    after it), raising on any doubt. None when the schema holds a type it does not read."""
    source = reader_source(schema)
    if source is None:
        return None
    reader: Reader = _prebuilt(source, "READERS") or _exec(source)
    return reader


# ---------------------------------------------------------------------------------- writing


def _uvarint(out: bytearray, n: int) -> None:
    """Append the varint bytes of an unsigned `n` of 7 bits or more."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


_LIMITS = {"int": 1 << 31, "long": 1 << 63}


def _put_long(src: _Source, indent: int, value: str) -> None:
    """Append the zigzag varint of the int `value` (checked to be within 64 bits)."""
    e = src.emit
    e(indent, f"z = ({value} << 1) ^ ({value} >> 63)")
    e(indent, "if z < 0x80:")
    e(indent + 1, "out.append(z)")
    e(indent, "else:")
    e(indent + 1, "_uvarint(out, z)")


def _put(src: _Source, indent: int, schema: Any, value: str) -> None:
    """Code appending `value` as `schema`; Unsure for a type this module does not write."""
    e = src.emit
    kind = _kind(src, schema)
    if isinstance(kind, (Mapping, list)):
        return _put(src, indent, kind, value)
    if isinstance(schema, list):
        _put_union(src, indent, schema, value)
    elif kind == "null":
        e(indent, f"if {value} is not None:")
        e(indent + 1, "raise _Unsure('null')")
    elif kind == "boolean":
        e(indent, f"if type({value}) is not bool:")
        e(indent + 1, "raise _Unsure('boolean')")
        e(indent, f"out.append(1 if {value} else 0)")
    elif kind in ("int", "long"):
        limit = _LIMITS[kind]
        e(indent, f"if type({value}) is not int or not {-limit} <= {value} < {limit}:")
        e(indent + 1, f"raise _Unsure({kind!r})")
        _put_long(src, indent, value)
    elif kind == "string":
        data = src.name("b")
        e(indent, f"if type({value}) is not str:")
        e(indent + 1, "raise _Unsure('string')")
        e(indent, f"{data} = {value}.encode()")
        _put_long(src, indent, f"len({data})")
        e(indent, f"out += {data}")
    elif kind == "enum":
        enum = src.enum(schema, src.namespace)
        assert enum is not None
        index = src.const({symbol: i for i, symbol in enumerate(enum["symbols"])})
        i = src.name("i")
        e(indent, f"{i} = {index}.get({value})")
        e(indent, f"if {i} is None:")
        e(indent + 1, "raise _Unsure('enum symbol')")
        _put_long(src, indent, i)
    elif kind in ("array", "map"):
        item, key = src.name("v"), src.name("k")
        container = "list" if kind == "array" else "dict"
        e(indent, f"if type({value}) is not {container}:")
        e(indent + 1, f"raise _Unsure({kind!r})")
        e(indent, f"if {value}:")
        _put_long(src, indent + 1, f"len({value})")
        if kind == "array":
            e(indent + 1, f"for {item} in {value}:")
            _put(src, indent + 2, schema["items"], item)
        else:
            e(indent + 1, f"for {key}, {item} in {value}.items():")
            _put(src, indent + 2, "string", key)
            _put(src, indent + 2, schema["values"], item)
        e(indent, "out.append(0)")
    else:
        raise Unsure(f"type {kind!r}")


def _put_union(src: _Source, indent: int, branches: list[Any], value: str) -> None:
    """Unions of null and one other type only: which branch fastavro picks is then plain."""
    others = [i for i, branch in enumerate(branches) if branch != "null"]
    if len(branches) != 2 or len(others) != 1 or isinstance(branches[others[0]], list):
        raise Unsure("a union of other than null and one type")
    e = src.emit
    e(indent, f"if {value} is None:")
    e(indent + 1, f"out.append({2 * (1 - others[0])})")
    e(indent, "else:")
    e(indent + 1, f"out.append({2 * others[0]})")
    _put(src, indent + 1, branches[others[0]], value)


def writer_source(schema: Mapping[str, Any]) -> Generated | None:
    """The source of a writer of records as `schema`; None when the schema holds a type it
    does not write."""
    if schema.get("type") != "record":
        return None
    src = _Source(_function("write", schema))
    src.namespace = schema.get("namespace")
    try:
        for field in schema["fields"]:
            local = src.name("f")
            src.emit(1, f"{local} = record[{field['name']!r}]")
            _put(src, 1, field["type"], local)
    except Unsure:
        return None
    return src.render("(out: bytearray, record: Mapping[str, Any]) -> None")


def compile_writer(schema: Mapping[str, Any]) -> Writer | None:
    """A writer of records as `schema` (a record schema, timestamps without their logical
    type): writer(out, record) appends to `out` the bytes fastavro writes for `record`,
    raising Unsure on any doubt. None when the schema holds a type it does not write."""
    source = writer_source(schema)
    if source is None:
        return None
    writer: Writer = _prebuilt(source, "WRITERS") or _exec(source)
    return writer


# --------------------------------------------------------------------------------- prebuilt


def _exec(source: Generated) -> Any:
    """The function made from its source at run time (a schema `render_module` had not)."""
    scope: dict[str, Any] = {"_varint": _varint, "_index": _index, "_uvarint": _uvarint,
                             "_Unsure": Unsure, "_INT32": _INT32, "Any": Any,
                             "Mapping": Mapping, "Final": Final}  # fmt: skip
    exec(compile(source.text, f"<avro {source.name}>", "exec"), scope)  # noqa: S102
    return scope[source.name]


def _prebuilt(source: Generated, table: str) -> Any:
    """The function `schemas/avro_generated.py` holds for exactly this source, or None (a
    schema changed since it was rendered: tests/schemas/test_fast_avro.py fails then)."""
    try:
        from schemas import avro_generated
    except ImportError:
        return None
    functions: dict[str, Any] = getattr(avro_generated, table)
    return functions.get(source.key)


def render_module(schemas: Iterable[Mapping[str, Any]]) -> str:
    """`schemas/avro_generated.py`: the readers and writers of `schemas` as plain functions,
    which mypyc compiles with the rest of the worker (exec'd, one stays interpreted: a
    decode costs three times as much), each filed under its source's key, so that only a
    function equal to what compile_reader or compile_writer would make stands for it."""
    parts = [
        '"""Generated by `scripts/gen-avro` from schemas/*.avsc (schemas.fast_avro.render_module):'
        "\ndo not edit. The current schemas' Avro readers and writers, compiled with mypyc with\n"
        'the worker (pyproject\'s compiled-modules)."""\n\n'
        "# ruff: noqa\n# fmt: off\nfrom __future__ import annotations\n\n"
        "from collections.abc import Mapping\nfrom typing import Any, Final\n\n"
        "from schemas.fast_avro import _INT32, _index, _uvarint, _varint\n"
        "from schemas.fast_avro import Unsure as _Unsure\n"
    ]
    readers: list[tuple[str, str]] = []
    writers: list[tuple[str, str]] = []
    for schema in schemas:
        for make, found in ((reader_source, readers), (writer_source, writers)):
            source = make(schema)
            if source is not None:
                if any(source.name == name for _, name in found):
                    raise ValueError(f"two schemas make {source.name}: rename one record")
                parts.append(f"\n\n{source.text}")
                found.append((source.key, source.name))
    for table, found in (("READERS", readers), ("WRITERS", writers)):
        entries = "".join(f"    {key!r}: {name},\n" for key, name in found)
        parts.append(f"\n\n{table}: Final[dict[str, Any]] = {{\n{entries}}}\n")
    return "".join(parts)
