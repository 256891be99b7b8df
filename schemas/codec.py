"""Avro codec in the schema-registry wire format, with schema evolution.

Wire format (Confluent): byte 0 = magic ``0``, bytes 1..4 = schema id (big-endian unsigned),
then the Avro binary body (no container header). Any Confluent-compatible consumer can read what
:class:`AvroCodec` writes.

Schema ids come from one of two places:

- **ids.json (default)**: ``schemas/ids.json`` maps subject -> {version: id}. The subject is the
  record name (``TicketEvent``, ``Escalation``, ...), one subject per record type, independent of
  the topic (like RecordNameStrategy with short names). Ids are unique across all subjects, like
  a registry's global ids. The newest version is the current schema (``schemas/<name>.avsc``,
  identical to ``schemas/history/<name>.v<N>.avsc``); older versions are read with their own
  writer schema and resolved to the current one (Avro schema evolution: defaults fill new fields).
- **a schema registry** (``registry=`` URL, e.g. ``settings.schema_registry_url`` /
  ``ESCALATOR_SCHEMA_REGISTRY_URL``): the current schema is registered (or only looked up with
  ``auto_register=False``) under the subject on first encode, and unknown ids met on decode are
  fetched by id, both lazily and cached. Registry calls go through confluent-kafka's
  ``SchemaRegistryClient`` (basic auth, TLS, retries, its own caches), wrapped by
  :class:`RegistryClient` only to map its errors. A registry that cannot be reached raises
  :class:`RegistryError`, never :class:`DecodeError`: an outage must stop the worker (and
  retry), not dead-letter good messages. The hot path keeps one compiled fastavro schema per id.

Subjects in a registry follow Confluent's naming strategies (:func:`subject_name`):
TopicNameStrategy ``<topic>-value`` (the default), RecordNameStrategy ``<namespace>.<name>`` and
TopicRecordNameStrategy ``<topic>-<namespace>.<name>``.

Timestamps: the ``timestamp-millis`` logical type is stripped from the schemas the codec compiles
(the binary encoding is a plain ``long`` either way), so timestamps are read and written as ``int``
epoch milliseconds, the unit used everywhere in the core, and no datetime is built per field. The
published .avsc files keep the logical type for other consumers.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas.fast_avro import compile_reader, compile_writer, render_module

__all__ = [
    "HISTORY_DIR",
    "IDS_FILE",
    "MAGIC",
    "NAMES",
    "SCHEMA_DIR",
    "AvroCodec",
    "DecodeError",
    "EncodeError",
    "ErrorKind",
    "Registry",
    "RegistryClient",
    "RegistryError",
    "SchemaNotFound",
    "SubjectStrategy",
    "codec_for",
    "codecs_for",
    "load_history",
    "load_ids",
    "load_schema",
    "subject_name",
]

SCHEMA_DIR: Final = Path(__file__).resolve().parent
HISTORY_DIR: Final = SCHEMA_DIR / "history"
IDS_FILE: Final = SCHEMA_DIR / "ids.json"
NAMES: Final = (
    "TicketEvent",
    "Escalation",
    "PriorityBump",
    "Reminder",
    "OpsAlert",
    "DeadLetter",
    "WebhookDeadLetter",
    "TicketBoard",
)
MAGIC: Final = 0
_HEADER_LEN: Final = 5


class ErrorKind(StrEnum):
    """Why an input message was rejected: the ``DeadLetter.error_kind`` enum."""

    UNDECODABLE = "UNDECODABLE"
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"
    INVALID_FIELD = "INVALID_FIELD"
    TIMESTAMP_OUT_OF_RANGE = "TIMESTAMP_OUT_OF_RANGE"
    OVERSIZED = "OVERSIZED"


class DecodeError(ValueError):
    """Bytes that cannot be decoded; ``kind`` is an :class:`ErrorKind`."""

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.kind = kind
        self.reason = reason

    def __reduce__(self) -> tuple[type[DecodeError], tuple[ErrorKind, str]]:
        return (DecodeError, (self.kind, self.reason))


class EncodeError(ValueError):
    """A record that does not fit the schema."""


class RegistryError(RuntimeError):
    """The schema registry could not be reached or answered with an error (not "not found")."""


class SchemaNotFound(LookupError):
    """The registry does not know the schema id (or the schema, for a lookup)."""


class SubjectStrategy(StrEnum):
    """Confluent's subject naming strategies (``ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY``)."""

    TOPIC = "TopicNameStrategy"
    RECORD = "RecordNameStrategy"
    TOPIC_RECORD = "TopicRecordNameStrategy"


def subject_name(strategy: str, topic: str, schema: Mapping[str, Any]) -> str:
    """The registry subject of ``schema`` written to ``topic`` (message values) under
    ``strategy``, as Confluent's serializers name it."""
    name = str(schema["name"])
    namespace = schema.get("namespace")
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    kind = SubjectStrategy(strategy)
    if kind is SubjectStrategy.TOPIC:
        return f"{topic}-value"
    if kind is SubjectStrategy.RECORD:
        return full
    return f"{topic}-{full}"


# --------------------------------------------------------------------------------------------
# Schema files


def load_schema(name: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The current schema ``<schema_dir>/<name>.avsc`` as JSON."""
    data: dict[str, Any] = json.loads((schema_dir / f"{name}.avsc").read_text("utf-8"))
    return data


def load_history(name: str, schema_dir: Path = SCHEMA_DIR) -> dict[int, dict[str, Any]]:
    """Every released version ``<schema_dir>/history/<name>.v<N>.avsc``, by version number."""
    out: dict[int, dict[str, Any]] = {}
    for path in sorted((schema_dir / "history").glob(f"{name}.v*.avsc")):
        version = path.name[len(name) + 2 : -len(".avsc")]
        if version.isdigit():
            out[int(version)] = json.loads(path.read_text("utf-8"))
    return out


def load_ids(schema_dir: Path = SCHEMA_DIR) -> dict[str, dict[int, int]]:
    """``ids.json``: subject -> {version: schema id}."""
    raw = json.loads((schema_dir / "ids.json").read_text("utf-8"))
    return {
        subject: {int(version): int(sid) for version, sid in versions.items()}
        for subject, versions in raw.items()
    }


def _strip_timestamps(schema: Any) -> Any:
    """Copy of ``schema`` with ``timestamp-millis`` removed, so fastavro reads plain ints."""
    if isinstance(schema, list):
        return [_strip_timestamps(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: _strip_timestamps(v) for k, v in schema.items()}
        if out.get("logicalType") == "timestamp-millis" and out.get("type") == "long":
            del out["logicalType"]
            if len(out) == 1:
                return "long"
        return out
    return schema


GENERATED: Final = SCHEMA_DIR / "avro_generated.py"


def generated_module() -> str:
    """What `GENERATED` must hold: the fast readers and writers of the current schemas, as
    the codecs compile them (`scripts/gen-avro` writes it, a test checks it)."""
    return render_module(_strip_timestamps(load_schema(name)) for name in NAMES)


def _compile(schema: Mapping[str, Any]) -> Any:
    return parse_schema(_strip_timestamps(dict(schema)))


def canonical(schema: Any) -> str:
    """Avro Parsing Canonical Form (ignores docs, defaults, order of attributes)."""
    return str(to_parsing_canonical_form(parse_schema(schema)))


# --------------------------------------------------------------------------------------------
# Registry


class Registry(Protocol):
    """What :class:`AvroCodec` needs from a schema registry."""

    def register(self, subject: str, schema: str) -> int: ...

    def lookup(self, subject: str, schema: str) -> int: ...

    def get_schema(self, schema_id: int) -> str: ...


class RegistryClient:
    """:class:`Registry` over confluent-kafka's ``SchemaRegistryClient``.

    ``conf`` is a URL (several comma-separated, ``user:password@`` for basic auth) or the
    client's settings (``streams.runtime.settings.RegistrySettings.client_conf``). Its errors become
    :class:`SchemaNotFound` (HTTP 404), :class:`RegistryError` (any other answer, with the
    registry's message, e.g. an incompatible schema's 409) or, when it cannot be reached,
    :class:`RegistryError` saying so.
    """

    def __init__(self, conf: str | Mapping[str, Any]) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        # httpx logs every request at INFO: noise in a worker's log, one line per schema
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        settings = {"url": conf} if isinstance(conf, str) else dict(conf)
        self.url = str(settings["url"])
        self.where = re.sub(r"//[^/@]*@", "//", self.url)  # for messages: no user:password@
        for part in self.url.split(","):
            if not part.strip().startswith(("http://", "https://")):
                raise ValueError(f"schema registry URL {part.strip()!r}: expected http(s)://host")
        self.client = SchemaRegistryClient(settings)

    def call(self, what: str, call: Any, *args: Any) -> Any:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return call(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaNotFound(f"{what}: {exc.error_message}") from None
            if exc.http_status_code == 409:
                raise RegistryError(
                    f"{what}: the schema registry refuses the schema as incompatible with the "
                    f"versions under that subject (HTTP 409): {exc.error_message}"
                ) from None
            raise RegistryError(
                f"{what}: schema registry answered HTTP {exc.http_status_code}: {exc.error_message}"
            ) from None
        except Exception as exc:  # httpx transport errors, timeouts, bad JSON
            raise RegistryError(
                f"{what}: schema registry {self.where} unreachable: {type(exc).__name__}: {exc}"
            ) from None

    def register(self, subject: str, schema: str) -> int:
        from confluent_kafka.schema_registry import Schema

        return int(
            self.call(
                f"register {subject}", self.client.register_schema, subject, Schema(schema, "AVRO")
            )
        )

    def lookup(self, subject: str, schema: str) -> int:
        from confluent_kafka.schema_registry import Schema

        found = self.call(
            f"look up {subject}", self.client.lookup_schema, subject, Schema(schema, "AVRO")
        )
        return int(found.schema_id)

    def get_schema(self, schema_id: int) -> str:
        found = self.call(f"schema id {schema_id}", self.client.get_schema, int(schema_id))
        if (found.schema_type or "AVRO") != "AVRO":
            raise SchemaNotFound(f"schema id {schema_id} is {found.schema_type}, not AVRO")
        return str(found.schema_str)

    def compatible(self, subject: str, schema: str) -> bool:
        """Whether the registry's compatibility rule for ``subject`` accepts ``schema``."""
        from confluent_kafka.schema_registry import Schema

        return bool(
            self.call(
                f"compatibility of {subject}",
                self.client.test_compatibility,
                subject,
                Schema(schema, "AVRO"),
            )
        )


# --------------------------------------------------------------------------------------------
# Codec

_NEGATIVE_TTL_S: Final = 60.0


class AvroCodec:
    """Encode/decode one record type in the schema-registry wire format.

    ``registry``: ``None`` for ids from ``ids.json``, a registry URL, or a :class:`Registry`.
    ``subject``: with ids.json, the record name; with a registry, the subject of ``topic`` (the
    topic the records are written to; the record name when not given) under ``strategy``
    (:func:`subject_name`). Schemas are parsed and compiled once per codec; the codec is safe to
    share between threads.
    """

    def __init__(
        self,
        name: str,
        registry: str | Registry | None = None,
        *,
        subject: str | None = None,
        auto_register: bool = True,
        schema_dir: Path = SCHEMA_DIR,
        topic: str | None = None,
        strategy: str = SubjectStrategy.TOPIC,
    ) -> None:
        self.name = name
        self.schema: dict[str, Any] = load_schema(name, schema_dir)
        if subject is None and registry is not None:
            subject = subject_name(strategy, topic or name, self.schema)
        self.subject = subject or name
        self._schema_str = json.dumps(self.schema, separators=(",", ":"))
        self._canonical = canonical(self.schema)
        self._parsed = _compile(self.schema)
        # records written with the current schema, read without fastavro (see fast_avro)
        self._fast = compile_reader(_strip_timestamps(self.schema))
        self._fast_writer = compile_writer(_strip_timestamps(self.schema))
        self._auto_register = auto_register
        self._lock = threading.Lock()
        # schema id -> (writer, reader or None when the writer is the current schema)
        self._readers: dict[int, tuple[Any, Any]] = {}
        self._unknown: dict[int, tuple[float, DecodeError]] = {}
        self._header: bytes | None = None
        self._schema_id: int | None = None
        self._foreign: dict[int, str] = {}
        self._registry: Registry | None
        if registry is None:
            self._registry = None
            self._load_ids(schema_dir)
        elif isinstance(registry, str):
            self._registry = RegistryClient(registry)
        else:
            self._registry = registry

    def _load_ids(self, schema_dir: Path) -> None:
        ids = load_ids(schema_dir)
        versions = ids.get(self.subject)
        if not versions:
            raise KeyError(f"{schema_dir / 'ids.json'} has no subject {self.subject!r}")
        current = max(versions)
        self._set_schema_id(versions[current])
        history = load_history(self.name, schema_dir)
        for version, schema_id in versions.items():
            if version == current:
                continue
            if version not in history:
                raise KeyError(f"ids.json: {self.subject} v{version} has no history file")
            self._readers[schema_id] = self._reader_for(history[version])
        self._foreign = {
            sid: f"{subject} v{version}"
            for subject, by_version in ids.items()
            if subject != self.subject
            for version, sid in by_version.items()
        }

    def _set_schema_id(self, schema_id: int) -> None:
        if not 0 <= schema_id < 2**32:
            raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
        self._schema_id = schema_id
        self._header = bytes((MAGIC,)) + schema_id.to_bytes(4, "big")
        self._readers[schema_id] = (self._parsed, None)

    def _reader_for(self, writer: Mapping[str, Any]) -> tuple[Any, Any]:
        if canonical(writer) == self._canonical:
            return (self._parsed, None)
        return (_compile(writer), self._parsed)

    @property
    def schema_id(self) -> int:
        """Id of the current schema (registers or looks it up first in registry mode)."""
        if self._schema_id is None:
            self._ensure_header()
        assert self._schema_id is not None
        return self._schema_id

    def _ensure_header(self) -> bytes:
        header = self._header
        if header is not None:
            return header
        assert self._registry is not None
        with self._lock:
            if self._header is None:
                try:
                    if self._auto_register:
                        sid = self._registry.register(self.subject, self._schema_str)
                    else:
                        sid = self._registry.lookup(self.subject, self._schema_str)
                except SchemaNotFound as exc:
                    raise RegistryError(
                        f"schema {self.name} is not registered under subject {self.subject!r} "
                        f"(auto_register=False): {exc}"
                    ) from None
                self._set_schema_id(sid)
            assert self._header is not None
            return self._header

    # -- encode ------------------------------------------------------------------------------

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Wire-format bytes of ``record`` (a dict shaped like the schema; timestamps as int ms)."""
        header = self._header if self._header is not None else self._ensure_header()
        fast = self._fast_writer
        if fast is not None:
            data = bytearray(header)
            try:
                fast(data, record)
            except Exception:  # noqa: S110  # not plainly of the schema: fastavro decides below
                pass
            else:
                return bytes(data)
        return self.encode_fastavro(record)

    def encode_fastavro(self, record: Mapping[str, Any]) -> bytes:
        """encode() by fastavro alone, as before schemas.fast_avro."""
        header = self._header if self._header is not None else self._ensure_header()
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, self._parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        return out.getvalue()

    def frame(self, body: bytes) -> bytes:
        """Wire-format bytes of a record body already Avro-encoded under this codec's schema
        (schemas.board_wire): the header added."""
        header = self._header if self._header is not None else self._ensure_header()
        return header + body

    # -- decode ------------------------------------------------------------------------------

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record in ``data``, resolved to the current schema; raises :class:`DecodeError`."""
        fast = self._fast
        if fast is None:
            return self._fastavro(data, *self._writer(data))
        if type(data) is not bytes or data[:_HEADER_LEN] != self._header:
            schema_id, pair = self._writer(data)  # not the current schema's id (or no bytes)
            if pair[0] is not self._parsed:
                return self._fastavro(data, schema_id, pair)
        try:  # written with the current schema
            record, end = fast(data, _HEADER_LEN)
        except Exception:  # not plainly well formed: fastavro decides
            return self._fastavro(data, *self._writer(data))
        if end != len(data):
            return self._fastavro(data, *self._writer(data))
        return record

    def decode_fastavro(self, data: bytes) -> dict[str, Any]:
        """decode() by fastavro alone, as before schemas.fast_avro (the bench's ceiling)."""
        return self._fastavro(data, *self._writer(data))

    def _writer(self, data: bytes) -> tuple[int, tuple[Any, Any]]:
        """The schema id in the header of ``data`` and its (writer, reader) pair."""
        if data is None or len(data) < _HEADER_LEN:
            size = "no value (tombstone)" if data is None else f"{len(data)} bytes"
            raise DecodeError(ErrorKind.UNDECODABLE, f"{size}: too short for wire format")
        if data[0] != MAGIC:
            raise DecodeError(
                ErrorKind.UNDECODABLE, f"magic byte {data[0]:#04x}, expected 0x00 (not Avro?)"
            )
        schema_id = int.from_bytes(data[1:5], "big")
        pair = self._readers.get(schema_id)
        if pair is None:
            pair = self._resolve(schema_id)
        return schema_id, pair

    def _fastavro(self, data: bytes, schema_id: int, pair: tuple[Any, Any]) -> dict[str, Any]:
        fo = BytesIO(data)
        fo.seek(_HEADER_LEN)
        try:
            record: dict[str, Any] = schemaless_reader(fo, pair[0], pair[1])  # type: ignore[assignment]
        except IndexError:
            # fastavro indexes enum symbols and union branches by position.
            raise DecodeError(
                ErrorKind.SCHEMA_MISMATCH,
                f"body of {self.name} (schema id {schema_id}) holds a value the schema does not "
                "define: an enum symbol or union branch index out of range (invalid enum value?)",
            ) from None
        except Exception as exc:  # fastavro raises many types on garbage (EOF, Unicode...)
            raise DecodeError(
                ErrorKind.SCHEMA_MISMATCH,
                f"body not readable as {self.name} with schema id {schema_id}: "
                f"{type(exc).__name__}: {exc}",
            ) from None
        end = fo.tell()
        if end != len(data):
            raise DecodeError(
                ErrorKind.SCHEMA_MISMATCH,
                f"{len(data) - end} trailing bytes after {self.name} (schema id {schema_id})",
            )
        return record

    def _resolve(self, schema_id: int) -> tuple[Any, Any]:
        if self._registry is None:
            other = self._foreign.get(schema_id)
            what = f"is {other}, not {self.subject}" if other else "is not in ids.json"
            raise DecodeError(ErrorKind.UNKNOWN_SCHEMA, f"schema id {schema_id} {what}")
        cached = self._unknown.get(schema_id)
        if cached is not None and cached[0] > time.monotonic():
            raise cached[1]
        try:
            text = self._registry.get_schema(schema_id)
        except SchemaNotFound as exc:
            error = DecodeError(ErrorKind.UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}")
            self._remember_unknown(schema_id, error)
            raise error from None
        try:
            pair = self._reader_for(json.loads(text))
        except Exception as exc:
            error = DecodeError(
                ErrorKind.SCHEMA_MISMATCH,
                f"schema id {schema_id} is not a readable Avro schema: {exc}",
            )
            self._remember_unknown(schema_id, error)
            raise error from None
        with self._lock:
            self._readers[schema_id] = pair
        return pair

    def _remember_unknown(self, schema_id: int, error: DecodeError) -> None:
        with self._lock:
            if len(self._unknown) > 1000:
                self._unknown.clear()
            self._unknown[schema_id] = (time.monotonic() + _NEGATIVE_TTL_S, error)

    def __repr__(self) -> str:
        source = "ids.json" if self._registry is None else "registry"
        return f"AvroCodec({self.name!r}, subject={self.subject!r}, ids from {source})"


def codec_for(name: str, settings: Any = None, topics: Any = None) -> AvroCodec:
    """Codec for ``name`` with the registry of ``settings``
    (a ``streams.runtime.settings.Settings``;
    without settings, ``load_settings()``), ids.json when it names none. ``topics``
    (``streams.runtime.topics.Topics``, unprefixed when not given) names the topic ``name``
    is written to, which its subject is named after."""
    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics

    if settings is None:
        settings = load_settings()
    url = settings.schema_registry_url
    if not url:
        return AvroCodec(name)
    conf = settings.schema_registry
    topic = (topics or Topics()).for_record(name)
    return AvroCodec(
        name,
        _client(url, conf),
        topic=topic,
        strategy=conf.subject_strategy,
        auto_register=conf.auto_register,
    )


_CLIENTS: dict[tuple[str, Any], RegistryClient] = {}


def _client(url: str, conf: Any) -> RegistryClient:
    """One registry client (and its caches) per URL and settings in a process."""
    key = (url, conf)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = RegistryClient(conf.client_conf(url))
    return client


def codecs_for(names: Iterable[str], settings: Any, topics: Any = None) -> dict[str, AvroCodec]:
    """:func:`codec_for` of each name; with a registry, each current schema is registered (or
    looked up) at once, so an unreachable registry or a schema it refuses as incompatible stops
    start-up (:class:`RegistryError`) rather than the first record."""
    codecs = {name: codec_for(name, settings, topics) for name in names}
    for codec in codecs.values():
        codec.schema_id  # noqa: B018 - registers now
    return codecs
