"""schemas.fast_avro: the same dict or the same DecodeError as fastavro, for every input."""

from __future__ import annotations

import random
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import avro_generated
from schemas.codec import (
    GENERATED,
    NAMES,
    AvroCodec,
    DecodeError,
    EncodeError,
    ErrorKind,
    _strip_timestamps,
    codec_for,
    generated_module,
    load_schema,
)
from schemas.compat import sample_records
from schemas.fast_avro import (
    Generated,
    Unsure,
    _exec,
    _prebuilt,
    compile_reader,
    compile_writer,
    reader_source,
    render_module,
    writer_source,
)

T0 = 1_800_000_000_000


def _events() -> list[dict[str, Any]]:
    full = {
        "event_id": "e-ünï", "ticket_id": "T-1", "type": "TAGS_CHANGED", "occurred_at": T0,
        "status": "ON_HOLD", "priority": "URGENT", "channel": "email", "category": "billing",
        "customer_id": "c1", "customer_tier": "gold", "group": "g", "assignee_id": "a",
        "support_level": 4, "tags_added": ["x", "y" * 300], "tags_removed": ["z"], "csat": 5,
        "attributes": {"k": "v", "ключ": "значение"},
    }  # fmt: skip
    small = {"event_id": "e", "ticket_id": "t", "type": "CREATED", "occurred_at": -(2**63)}
    big = {**small, "occurred_at": 2**63 - 1, "support_level": -(2**31), "csat": 2**31 - 1}
    return [full, small, big, *sample_records(load_schema("TicketEvent"))]


def _result(decode: Any, data: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", decode(data))
    except DecodeError as exc:
        return ("error", exc.kind, str(exc))


def test_well_formed_records_decode_as_fastavro_does() -> None:
    codec = codec_for("TicketEvent")
    for record in _events():
        data = codec.encode(record)
        fast = codec._fast
        assert fast is not None
        decoded, end = fast(data, 5)
        assert end == len(data)
        assert decoded == codec.decode_fastavro(data)
        assert list(decoded) == list(codec.decode_fastavro(data))  # field order too
        assert codec.decode(data) == decoded


def test_blocks_with_byte_sizes_read_as_fastavro_reads_them() -> None:
    """Arrays and maps may come in several blocks, a negative count followed by a byte size."""
    codec = codec_for("TicketEvent")
    record = {**_events()[1], "tags_added": ["ab", "cd"]}
    data = codec.encode(record)
    at = data.index(b"\x04\x04ab\x04cd\x00")
    blocks = data[:at] + b"\x01\x06\x04ab\x02\x04cd\x00" + data[at + 8 :]
    assert codec.decode(blocks) == codec.decode_fastavro(blocks)
    assert codec.decode(blocks)["tags_added"] == ["ab", "cd"]


def test_any_damaged_record_decodes_or_fails_exactly_as_with_fastavro() -> None:
    """Random flips, cuts and insertions: the codec's answer (record or error, message and
    kind) is fastavro's, whether the fast reader took the message or left it to fastavro."""
    codec = codec_for("TicketEvent")
    originals = [codec.encode(record) for record in _events()]
    rng = random.Random(7)
    decoded = 0
    for _ in range(4000):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.6 and len(data) > 5:
                data[rng.randrange(5, len(data))] = rng.randrange(256)
            elif op < 0.8 and len(data) > 5:
                del data[rng.randrange(5, len(data)) :]
            else:
                data.insert(rng.randrange(5, len(data) + 1), rng.randrange(256))
        fast, slow = _result(codec.decode, bytes(data)), _result(codec.decode_fastavro, bytes(data))
        assert fast == slow, bytes(data)
        decoded += fast[0] == "ok"
    assert 100 < decoded < 3900  # both outcomes were exercised


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x00\x00\x00\x00\x01", ErrorKind.SCHEMA_MISMATCH),  # truncated
        (b"\x00\x00\x00\x00\x01\x02a\x02b\x30", ErrorKind.SCHEMA_MISMATCH),  # enum index 24
        (b"\x00\x00\x00\x00\x01\x02a\x02b\x01", ErrorKind.SCHEMA_MISMATCH),  # enum index -1
        (b"\x00\x00\x00\x00\x01\x02\xff", ErrorKind.SCHEMA_MISMATCH),  # invalid UTF-8
        (b"\x00\x00\x00\x00\x01\x03a", ErrorKind.SCHEMA_MISMATCH),  # negative length
    ],
)
def test_malformed_bytes_keep_fastavros_error(data: bytes, kind: ErrorKind) -> None:
    codec = codec_for("TicketEvent")
    with pytest.raises(DecodeError) as fast:
        codec.decode(data)
    with pytest.raises(DecodeError) as slow:
        codec.decode_fastavro(data)
    assert fast.value.kind is kind
    assert str(fast.value) == str(slow.value)


def test_a_record_written_with_an_older_schema_is_resolved_by_fastavro() -> None:
    """Only records of the current schema take the fast reader: an old writer's record is
    resolved to the current schema (defaults filled in) as before."""
    codec = AvroCodec("TicketEvent")
    old_id, writer = next(
        (sid, pair[0]) for sid, pair in codec._readers.items() if pair[1] is not None
    )
    out = BytesIO()
    out.write(b"\x00" + old_id.to_bytes(4, "big"))
    schemaless_writer(out, writer, {"event_id": "e", "ticket_id": "t", "type": "CREATED",
                                    "occurred_at": T0})  # fmt: skip
    assert codec.decode(out.getvalue()) == codec.decode_fastavro(out.getvalue())


@pytest.mark.parametrize(
    "field_type",
    [
        "double",
        "bytes",
        {"type": "fixed", "name": "F", "size": 2},
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]},
        {"type": "int", "logicalType": "date"},
    ],
)
def test_schemas_with_types_it_does_not_read_are_left_to_fastavro(field_type: Any) -> None:
    schema = {"type": "record", "name": "S", "fields": [{"name": "a", "type": field_type}]}
    assert compile_reader(schema) is None
    assert compile_writer(schema) is None
    parse_schema(schema)  # a valid schema all the same


def test_a_varint_beyond_64_bits_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "S", "fields": [{"name": "n", "type": "long"}]}
    reader = compile_reader(schema)
    assert reader is not None
    assert reader(b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01", 0) == ({"n": 2**63 - 1}, 10)
    with pytest.raises(Unsure):
        reader(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(Unsure):
        reader(b"\xff" * 9 + b"\x7f", 0)


WRITTEN = ["TicketEvent", "Escalation", "PriorityBump", "Reminder"]
ODD_VALUES = [
    None, "", "x", "é", "\ud800", 0, 1, -1, 63, 64, -65, 2**31 - 1, 2**31, -(2**31),
    -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), True, False, 1.5, [], ["a"], ("a",), {},
    {"k": "v"}, {1: "v"}, b"x", "CREATED", "HIGH", "SLA_BREACH",
]  # fmt: skip


@pytest.mark.parametrize("name", WRITTEN)
def test_the_writer_writes_the_bytes_fastavro_writes(name: str) -> None:
    codec = codec_for(name)
    writer = codec._fast_writer
    assert writer is not None
    for record in sample_records(load_schema(name)):
        out = bytearray()
        writer(out, record)  # plainly of the schema: no doubt, no fallback
        assert codec.encode(record) == codec.encode_fastavro(record) == codec._header + out
        assert codec.decode(codec.encode(record)) == codec.decode_fastavro(codec.encode(record))


@pytest.mark.parametrize("name", WRITTEN)
def test_any_odd_record_encodes_or_fails_exactly_as_with_fastavro(name: str) -> None:
    """Fields replaced by values of every type, or left out: the same bytes, or the same
    EncodeError, whichever of the writer and fastavro took the record."""
    codec = codec_for(name)
    samples = sample_records(load_schema(name))
    rng = random.Random(11)
    failed = 0
    for _ in range(3000):
        record = dict(rng.choice(samples))
        for _ in range(rng.randint(0, 2)):
            field = rng.choice(list(record))
            if rng.random() < 0.1:
                del record[field]
            else:
                record[field] = rng.choice(ODD_VALUES)
        fast, slow = _encoded(codec.encode, record), _encoded(codec.encode_fastavro, record)
        assert fast == slow, record
        failed += fast[0] == "error"
    assert 0 < failed < 3000


def _encoded(encode: Any, record: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return ("ok", encode(record))
    except EncodeError as exc:
        return ("error", str(exc))


def test_a_priority_bump_names_the_enum_its_schema_defined_before() -> None:
    """PriorityBump's new_priority refers to the Priority enum by name."""
    codec = codec_for("PriorityBump")
    record = next(r for r in sample_records(load_schema("PriorityBump")))
    record = {**record, "old_priority": "LOW", "new_priority": "URGENT"}
    assert codec._fast_writer is not None and codec._fast is not None
    assert codec.encode(record) == codec.encode_fastavro(record)
    assert codec.decode(codec.encode(record))["new_priority"] == "URGENT"


NESTED = {
    "type": "record", "name": "Nested", "namespace": "t",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "grid", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "index", "type": {"type": "map", "values": {"type": "array", "items": "string"}}},
        {"name": "maybe", "type": ["int", "null"]},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
        {"name": "again", "type": ["null", "t.Colour"]},
    ],
}  # fmt: skip


def test_nested_arrays_maps_booleans_and_named_types_match_fastavro() -> None:
    """The shapes no record of ours has yet, both ways, against fastavro's bytes and dicts."""
    reader, writer = compile_reader(NESTED), compile_writer(NESTED)
    assert reader is not None and writer is not None
    parsed = parse_schema(NESTED)
    rng = random.Random(3)
    for _ in range(300):
        record = {
            "flag": rng.random() < 0.5,
            "grid": [[rng.randint(-(2**63), 2**63 - 1) for _ in range(rng.randint(0, 3))]
                     for _ in range(rng.randint(0, 3))],
            "index": {f"k{i}é": ["x" * rng.randint(0, 70)] * rng.randint(0, 2)
                      for i in range(rng.randint(0, 3))},
            "maybe": rng.choice([None, 0, -1, 2**31 - 1]),
            "colour": rng.choice(["RED", "BLUE"]),
            "again": rng.choice([None, "RED", "BLUE"]),
        }  # fmt: skip
        expected = BytesIO()
        schemaless_writer(expected, parsed, record)
        out = bytearray()
        writer(out, record)
        assert bytes(out) == expected.getvalue()
        assert reader(bytes(out), 0) == (record, len(out))


def test_the_generated_module_is_current() -> None:
    """schemas/avro_generated.py holds what scripts/gen-avro would write from today's
    schemas: a stale one is never used (its keys differ), but the worker would run slower."""
    assert GENERATED.read_text("utf-8") == generated_module(), "run scripts/gen-avro"


@pytest.mark.parametrize("name", NAMES)
def test_the_codecs_take_the_prebuilt_functions(name: str) -> None:
    """Each codec that has a fast reader and writer takes the generated module's, filed
    under the key of the very source compile_reader and compile_writer make."""
    codec = codec_for(name)
    schema = _strip_timestamps(load_schema(name))
    for made, source, table in (
        (codec._fast, reader_source(schema), avro_generated.READERS),
        (codec._fast_writer, writer_source(schema), avro_generated.WRITERS),
    ):
        if source is None:
            assert made is None
            continue
        assert made is table[source.key]
        assert made.__name__ == source.name


def test_a_schema_the_module_lacks_is_compiled_at_run_time_to_the_same_reader() -> None:
    """A source the module does not hold (another schema, or one changed since it was
    rendered) is exec'd; made from the same source, that reader answers as the prebuilt."""
    reader = compile_reader(NESTED)
    assert reader is not None and reader not in avro_generated.READERS.values()
    assert reader.__code__.co_filename == "<avro read_Nested>"
    codec = codec_for("TicketEvent")
    source = reader_source(_strip_timestamps(load_schema("TicketEvent")))
    assert source is not None
    changed = _exec(Generated(source.name, source.text + "\n"))  # a key the module lacks
    assert _prebuilt(Generated(source.name, source.text + "\n"), "READERS") is None
    for record in _events():
        data = codec.encode(record)
        assert changed(data, 5) == codec._fast(data, 5) == (codec.decode_fastavro(data), len(data))


def test_two_records_of_one_name_are_refused_a_module() -> None:
    """Their functions would share a name, and the later one would stand for both keys."""
    other = {**NESTED, "fields": NESTED["fields"][:2]}
    assert "def read_Nested(" in render_module([NESTED])
    with pytest.raises(ValueError, match="two schemas make read_Nested"):
        render_module([NESTED, other])
