"""AvroCodec: wire format, round trips, schema evolution, decode errors, registry-backed ids."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas.codec import (
    NAMES,
    AvroCodec,
    DecodeError,
    EncodeError,
    ErrorKind,
    RegistryError,
    canonical,
    codec_for,
    load_history,
    load_ids,
    load_schema,
    subject_name,
)
from schemas.compat import sample_records

T0 = 1_800_000_000_000


def _ticket(**extra: Any) -> dict[str, Any]:
    return {"event_id": "e1", "ticket_id": "t1", "type": "CREATED", "occurred_at": T0, **extra}


def test_wire_format_header() -> None:
    codec = AvroCodec("TicketEvent")
    data = codec.encode(_ticket())
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == codec.schema_id
    ids = load_ids()
    assert codec.schema_id == ids["TicketEvent"][max(ids["TicketEvent"])]
    # body is plain Avro binary: "e1" = zigzag len 2 (0x04) + bytes
    assert data[5:8] == b"\x04e1"


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_every_schema(name: str) -> None:
    codec = AvroCodec(name)
    for record in sample_records(load_schema(name)):
        assert codec.decode(codec.encode(record)) == record


def test_timestamps_are_int_ms() -> None:
    codec = AvroCodec("TicketEvent")
    decoded = codec.decode(codec.encode(_ticket()))
    assert type(decoded["occurred_at"]) is int and decoded["occurred_at"] == T0


def test_encode_error() -> None:
    with pytest.raises(EncodeError):
        AvroCodec("TicketEvent").encode({"event_id": "e1"})


def test_v1_written_event_read_with_current_schema() -> None:
    codec = AvroCodec("TicketEvent")
    v1 = load_history("TicketEvent")[1]
    assert "support_level" not in {f["name"] for f in v1["fields"]}
    v1_id = load_ids()["TicketEvent"][1]
    body = BytesIO()
    writer = parse_schema({**v1, "fields": v1["fields"]})
    schemaless_writer(body, writer, _ticket(priority="HIGH", tags_added=["vip"]))
    data = b"\x00" + v1_id.to_bytes(4, "big") + body.getvalue()
    decoded = codec.decode(data)
    assert decoded["priority"] == "HIGH"
    assert decoded["tags_added"] == ["vip"]
    assert decoded["support_level"] is None  # default filled
    assert decoded["attributes"] == {}  # default filled
    assert decoded["occurred_at"] == T0


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", ErrorKind.UNDECODABLE),
        (b"\x00\x00\x00", ErrorKind.UNDECODABLE),
        (b'{"event_id": "e1"}', ErrorKind.UNDECODABLE),
        (b"\x01\x00\x00\x00\x02\x04e1", ErrorKind.UNDECODABLE),
        (b"\x00\x00\x00\x03\xe7\x04e1", ErrorKind.UNKNOWN_SCHEMA),  # id 999
        (b"\x00\x00\x00\x00\x03" + b"\x04e1", ErrorKind.UNKNOWN_SCHEMA),  # Escalation's id
        (b"\x00\x00\x00\x00\x02\x04e1", ErrorKind.SCHEMA_MISMATCH),  # truncated body
        (b"\x00\x00\x00\x00\x02\x04e1\x04t1\x7f", ErrorKind.SCHEMA_MISMATCH),  # enum index 63
    ],
)
def test_decode_errors_by_kind(data: bytes, kind: ErrorKind) -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec("TicketEvent").decode(data)
    assert info.value.kind is kind
    assert info.value.reason


def test_decode_none_is_undecodable() -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec("TicketEvent").decode(None)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.UNDECODABLE


def test_trailing_bytes_are_a_mismatch() -> None:
    codec = AvroCodec("TicketEvent")
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode(_ticket()) + b"\x00")
    assert info.value.kind is ErrorKind.SCHEMA_MISMATCH
    assert "trailing" in info.value.reason


# --------------------------------------------------------------------------------------------
# Registry-backed ids: a tiny in-process fake of the Confluent Schema Registry REST API


class FakeRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, dict[str, int]] = {}  # subject -> canonical schema -> id
        self.requests: list[tuple[str, str]] = []
        self.next_id = 100

    def register(self, subject: str, schema: str) -> int:
        key = canonical(json.loads(schema))
        for sid, text in self.schemas.items():
            if canonical(json.loads(text)) == key:
                self.subjects.setdefault(subject, {})[key] = sid
                return sid
        sid = self.next_id
        self.next_id += 1
        self.schemas[sid] = schema
        self.subjects.setdefault(subject, {})[key] = sid
        return sid


@pytest.fixture
def registry() -> Iterator[tuple[str, FakeRegistry]]:
    fake = FakeRegistry()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path.split("?")[0]))
            if self.path.startswith("/schemas/ids/"):
                sid = int(self.path.rsplit("/", 1)[1].split("?")[0])
                if sid in fake.schemas:
                    return self._reply(200, {"schema": fake.schemas[sid]})
                return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            self._reply(404, {"error_code": 404, "message": "no route"})

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path.split("?")[0]))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[0] == "subjects" and len(parts) == 3 and parts[2] == "versions":
                return self._reply(200, {"id": fake.register(parts[1], body["schema"])})
            if parts[0] == "subjects" and len(parts) == 2:
                key = canonical(json.loads(body["schema"]))
                sid = fake.subjects.get(parts[1], {}).get(key)
                if sid is None:
                    return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                return self._reply(
                    200, {"subject": parts[1], "id": sid, "version": 1, "schema": body["schema"]}
                )
            self._reply(404, {"error_code": 404, "message": "no route"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


def test_registry_registers_lazily_and_uses_its_id(registry: tuple[str, FakeRegistry]) -> None:
    url, fake = registry
    codec = AvroCodec("TicketEvent", url)
    assert fake.requests == []  # lazy: nothing until the first encode
    data = codec.encode(_ticket())
    # TopicNameStrategy without a topic: the record name stands for it
    assert fake.requests == [("POST", "/subjects/TicketEvent-value/versions")]
    assert int.from_bytes(data[1:5], "big") == 100 == codec.schema_id
    assert codec.decode(data)["event_id"] == "e1"
    codec.encode(_ticket())
    assert len(fake.requests) == 1  # id cached


def test_registry_decode_fetches_writer_schema_once(registry: tuple[str, FakeRegistry]) -> None:
    url, fake = registry
    v1_id = fake.register("TicketEvent", json.dumps(load_history("TicketEvent")[1]))
    writer = parse_schema(load_history("TicketEvent")[1])
    body = BytesIO()
    schemaless_writer(body, writer, _ticket(csat=4))
    data = b"\x00" + v1_id.to_bytes(4, "big") + body.getvalue()
    reader = AvroCodec("TicketEvent", url)
    for _ in range(3):
        decoded = reader.decode(data)
        assert decoded["csat"] == 4 and decoded["attributes"] == {}
    assert fake.requests == [("GET", f"/schemas/ids/{v1_id}")]
    # a producer's registered current schema is read on the fast path (same canonical form)
    produced = AvroCodec("TicketEvent", url).encode(_ticket())
    assert reader.decode(produced)["event_id"] == "e1"


def test_registry_unknown_id_and_lookup_only(registry: tuple[str, FakeRegistry]) -> None:
    url, fake = registry
    codec = AvroCodec("TicketEvent", url, auto_register=False)
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00\x00\x00\x00\x07\x04e1")
    assert info.value.kind is ErrorKind.UNKNOWN_SCHEMA
    with pytest.raises(DecodeError):  # negative cache: no second request
        codec.decode(b"\x00\x00\x00\x00\x07\x04e1")
    assert fake.requests.count(("GET", "/schemas/ids/7")) == 1
    with pytest.raises(RegistryError, match="not registered"):
        codec.encode(_ticket())
    sid = fake.register("TicketEvent-value", json.dumps(load_schema("TicketEvent")))
    assert codec.schema_id == sid  # lookup (POST /subjects/TicketEvent-value) now finds it


def test_registry_unreachable_is_not_a_decode_error() -> None:
    # discard port: nothing listens; the password never shows in the message
    codec = AvroCodec("TicketEvent", "http://user:s3cret@127.0.0.1:9")
    with pytest.raises(RegistryError) as info:
        codec.decode(b"\x00\x00\x00\x00\x07\x04e1")
    assert "unreachable" in str(info.value) and "s3cret" not in str(info.value)
    assert "http://127.0.0.1:9" in str(info.value)
    with pytest.raises(RegistryError):
        codec.encode(_ticket())


def test_codec_for_uses_settings_url(registry: tuple[str, FakeRegistry]) -> None:
    from streams.runtime.settings import load_settings

    url, fake = registry
    codec = codec_for("Reminder", load_settings({"ESCALATOR_SCHEMA_REGISTRY_URL": url}))
    assert codec.schema_id == 100
    assert fake.requests == [("POST", "/subjects/reminders-value/versions")]
    assert codec_for("Reminder", load_settings({})).schema_id == load_ids()["Reminder"][1]


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("TopicNameStrategy", "p-escalations-value"),
        ("RecordNameStrategy", "io.escalator.v1.Escalation"),
        ("TopicRecordNameStrategy", "p-escalations-io.escalator.v1.Escalation"),
    ],
)
def test_subject_naming_strategies(
    registry: tuple[str, FakeRegistry], strategy: str, subject: str
) -> None:
    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics

    url, fake = registry
    env = {"ESCALATOR_SCHEMA_REGISTRY_URL": url}
    if strategy != "TopicNameStrategy":  # the default
        env["ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY"] = strategy
    codec = codec_for("Escalation", load_settings(env), Topics("p-"))
    assert codec.subject == subject
    codec.schema_id  # noqa: B018
    assert fake.requests == [("POST", f"/subjects/{subject}/versions")]
    assert subject_name(strategy, "p-escalations", load_schema("Escalation")) == subject
