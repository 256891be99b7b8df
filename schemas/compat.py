"""Schema compatibility and hygiene check, run in CI: ``python -m schemas.compat``.

For every schema ``schemas/<name>.avsc`` and every released version
``schemas/history/<name>.v<N>.avsc`` (the history holds every version ever released, the
current one included, so an in-place edit of a released schema is caught):

- backward: sample records written with each old version are readable by the current schema
  (new consumers read old data, e.g. replayed topics);
- forward: sample records written with the current schema are readable by each old version
  (consumers not yet upgraded keep working). Together: FULL_TRANSITIVE compatibility;
- the newest history version equals the current file (Parsing Canonical Form), versions run
  1..N without gaps;
- every record, enum and field has a non-empty ``doc``;
- ``ids.json`` has an id for every version (and none without a file), ids are unique.

Samples are generated from the writer schema: one record per union branch / enum symbol index, so
nulls and present values, every enum symbol, empty and non-empty arrays and maps are all covered.

With ``--registry URL`` (``python -m schemas.compat --registry http://.../apis/ccompat/v7``) a
schema registry gives its own verdict too (:func:`check_registry`): every history version is
registered in order under a scratch subject set to FULL_TRANSITIVE, and the current schema is
tested with the registry's compatibility endpoint; the scratch subjects are deleted afterwards.
Where the registry already has the subject the pipeline writes to (TopicNameStrategy, unprefixed
topics), the current schema is tested against it under that subject's own rule.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.codec import (
    SCHEMA_DIR,
    RegistryClient,
    RegistryError,
    SchemaNotFound,
    canonical,
    load_history,
    load_ids,
    load_schema,
    subject_name,
)

__all__ = ["check_compatibility", "check_registry", "main", "sample_records"]

_PRIMITIVES: Final = frozenset(
    ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
)


# --------------------------------------------------------------------------------------------
# Sample records


class _Names:
    """Named types (record, enum, fixed) of one schema, by full and short name."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}

    def add(self, schema: dict[str, Any], namespace: str | None) -> str | None:
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        self.types[full] = schema
        self.types.setdefault(name.rsplit(".", 1)[-1], schema)
        return full.rsplit(".", 1)[0] if "." in full else None

    def get(self, name: str, namespace: str | None) -> dict[str, Any]:
        for key in (f"{namespace}.{name}" if namespace else name, name):
            if key in self.types:
                return self.types[key]
        raise KeyError(f"unknown type {name!r}")


def _width(schema: Any, names: _Names, namespace: str | None, seen: set[str]) -> int:
    """How many samples cover every enum symbol and union branch."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES or schema in seen:
            return 1
        seen.add(schema)
        return _width(names.get(schema, namespace), names, namespace, seen)
    if isinstance(schema, list):
        return max([len(schema), *(_width(s, names, namespace, seen) for s in schema)])
    kind = schema["type"]
    if kind == "record":
        ns = names.add(schema, namespace)
        return max([1, *(_width(f["type"], names, ns, seen) for f in schema["fields"])])
    if kind == "enum":
        names.add(schema, namespace)
        return len(schema["symbols"])
    if kind == "fixed":
        names.add(schema, namespace)
        return 1
    if kind == "array":
        return _width(schema["items"], names, namespace, seen)
    if kind == "map":
        return _width(schema["values"], names, namespace, seen)
    return _width(kind, names, namespace, seen)


def _sample(schema: Any, i: int, names: _Names, namespace: str | None) -> Any:
    if isinstance(schema, list):
        return _sample(schema[i % len(schema)], i, names, namespace)
    if isinstance(schema, str):
        if schema not in _PRIMITIVES:
            return _sample(names.get(schema, namespace), i, names, namespace)
        return {
            "null": None,
            "boolean": i % 2 == 1,
            "int": i,
            "long": 1_700_000_000_000 + i,
            "float": i + 0.5,
            "double": i + 0.25,
            "bytes": bytes([i % 256]) * (i % 3),
            "string": f"s{i}",
        }[schema]
    kind = schema["type"]
    if kind == "record":
        ns = names.add(schema, namespace)
        return {f["name"]: _sample(f["type"], i, names, ns) for f in schema["fields"]}
    if kind == "enum":
        names.add(schema, namespace)
        return schema["symbols"][i % len(schema["symbols"])]
    if kind == "fixed":
        names.add(schema, namespace)
        return bytes(schema["size"])
    if kind == "array":
        return (
            []
            if i % 3 == 0
            else [_sample(schema["items"], i + k, names, namespace) for k in (0, 1)]
        )
    if kind == "map":
        return {} if i % 3 == 0 else {f"k{i}": _sample(schema["values"], i, names, namespace)}
    return _sample(kind, i, names, namespace)  # {"type": "long", "logicalType": ...}


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def sample_records(schema: dict[str, Any], minimum: int = 3) -> list[dict[str, Any]]:
    """Records that exercise ``schema``: every union branch and enum symbol at least once."""
    width = max(minimum, _width(schema, _Names(), None, set()))
    return [_sample(schema, i, _Names(), None) for i in range(width)]


# --------------------------------------------------------------------------------------------
# Checks


def _docs(schema: Any, where: str) -> Iterator[str]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _docs(branch, where)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed") and not str(schema.get("doc", "")).strip():
        yield f"{where}: {kind} {schema.get('name')!r} has no doc"
    if kind == "record":
        for field in schema.get("fields", []):
            path = f"{where}.{field.get('name')}"
            if not str(field.get("doc", "")).strip():
                yield f"{path}: field has no doc"
            yield from _docs(field.get("type"), path)
    elif kind == "array":
        yield from _docs(schema.get("items"), where)
    elif kind == "map":
        yield from _docs(schema.get("values"), where)


def _round_trip(
    writer: dict[str, Any], reader: dict[str, Any], samples: list[dict[str, Any]]
) -> str | None:
    """None when every sample written with ``writer`` reads with ``reader``, else the error."""
    parsed_writer = parse_schema(_strip_logical(writer))
    parsed_reader = parse_schema(_strip_logical(reader))
    for sample in samples:
        buf = BytesIO()
        try:
            schemaless_writer(buf, parsed_writer, sample)
        except Exception as exc:  # pragma: no cover - generator bug, reported not raised
            return f"cannot write sample {sample!r}: {exc}"
        buf.seek(0)
        try:
            schemaless_reader(buf, parsed_writer, parsed_reader)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def check_compatibility(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Every problem found in ``schema_dir`` (empty list when all is well)."""
    problems: list[str] = []
    try:
        ids = load_ids(schema_dir)
    except (OSError, ValueError, AttributeError) as exc:
        return [f"ids.json: cannot read: {exc}"]
    owner: dict[int, str] = {}
    for subject, versions in sorted(ids.items()):
        for version, sid in sorted(versions.items()):
            if sid in owner:
                problems.append(
                    f"ids.json: id {sid} used by both {owner[sid]} and {subject} v{version}"
                )
            owner.setdefault(sid, f"{subject} v{version}")
    names = sorted(p.stem for p in schema_dir.glob("*.avsc"))
    if not names:
        problems.append(f"{schema_dir}: no .avsc files")
    for name in names:
        problems.extend(_check_one(name, schema_dir, ids))
    for subject in sorted(set(ids) - set(names)):
        problems.append(f"ids.json: subject {subject!r} has no {subject}.avsc")
    return problems


def _check_one(name: str, schema_dir: Path, ids: dict[str, dict[int, int]]) -> list[str]:
    problems: list[str] = []
    try:
        current = load_schema(name, schema_dir)
        parse_schema(current)
    except Exception as exc:
        return [f"{name}.avsc: invalid schema: {exc}"]
    if current.get("name") != name:
        problems.append(f"{name}.avsc: record name is {current.get('name')!r}, expected {name!r}")
    problems.extend(_docs(current, f"{name}.avsc"))
    try:
        history = load_history(name, schema_dir)
    except ValueError as exc:
        return [*problems, f"history/{name}: invalid JSON: {exc}"]
    if not history:
        return [*problems, f"history/{name}.v1.avsc: missing (history holds every version)"]
    newest = max(history)
    if sorted(history) != list(range(1, newest + 1)):
        problems.append(f"history/{name}: versions {sorted(history)} are not 1..{newest}")
    if canonical(history[newest]) != canonical(current):
        problems.append(
            f"{name}.avsc differs from history/{name}.v{newest}.avsc: a released schema must "
            f"not change; copy the new schema to history/{name}.v{newest + 1}.avsc and give it "
            f"an id in ids.json"
        )
    versions = ids.get(name, {})
    for version in sorted(history):
        if version not in versions:
            problems.append(f"ids.json: no id for {name} v{version}")
    for version in sorted(set(versions) - set(history)):
        problems.append(f"ids.json: {name} v{version} has no history/{name}.v{version}.avsc")
    current_samples = sample_records(current)
    for version, old in sorted(history.items()):
        label = f"history/{name}.v{version}.avsc"
        try:
            parse_schema(old)
        except Exception as exc:
            problems.append(f"{label}: invalid schema: {exc}")
            continue
        error = _round_trip(old, current, sample_records(old))
        if error:
            problems.append(
                f"{name}: not backward compatible: data written with v{version} is not readable "
                f"by the current schema: {error}"
            )
        error = _round_trip(current, old, current_samples)
        if error:
            problems.append(
                f"{name}: not forward compatible: data written with the current schema is not "
                f"readable by v{version} readers: {error}"
            )
    return problems


# --------------------------------------------------------------------------------------------
# The registry's verdict


def check_registry(
    registry: RegistryClient, schema_dir: Path = SCHEMA_DIR, deployed: dict[str, str] | None = None
) -> list[str]:
    """Problems the registry's own compatibility checks find in ``schema_dir``: the history
    registered in order under FULL_TRANSITIVE scratch subjects, then the current schema tested.
    ``deployed``: record name -> subject already in use, tested under its own rule."""
    from confluent_kafka.schema_registry import ConfigCompatibilityLevel
    from confluent_kafka.schema_registry.common.schema_registry_client import ServerConfig

    full = ServerConfig(compatibility=ConfigCompatibilityLevel.FULL_TRANSITIVE)
    run = uuid.uuid4().hex[:8]
    problems: list[str] = []
    for name in sorted(p.stem for p in schema_dir.glob("*.avsc")):
        current = json.dumps(load_schema(name, schema_dir))
        subject = f"escalator-compat-{run}-{name}"
        try:
            # the rule goes on the first version's subject; it holds for every later one
            history = sorted(load_history(name, schema_dir).items())
            for index, (version, schema) in enumerate(history):
                try:
                    registry.register(subject, json.dumps(schema))
                except RegistryError as exc:
                    problems.append(f"{name}: the registry refuses history v{version}: {exc}")
                    break
                if index == 0:
                    registry.call("set compatibility", registry.client.set_config, subject, full)
            else:  # the whole history went in: now the current schema
                if not registry.compatible(subject, current):
                    problems.append(
                        f"{name}: the registry finds the current schema not FULL_TRANSITIVE "
                        f"compatible with its history (subject {subject})"
                    )
        finally:
            for permanent in (False, True):
                with contextlib.suppress(RegistryError, SchemaNotFound):
                    registry.call("delete", registry.client.delete_subject, subject, permanent)
        live = (deployed or {}).get(name)
        if live is None:
            continue
        try:
            if not registry.compatible(live, current):
                problems.append(
                    f"{name}: the registry refuses the current schema under subject {live} "
                    "(not compatible with what is registered there, by its rule)"
                )
        except SchemaNotFound:
            pass  # nothing registered under it yet
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    registry_url = None
    if "--registry" in args:
        at = args.index("--registry")
        if at + 1 >= len(args):
            print("--registry needs a URL", file=sys.stderr)
            return 2
        registry_url = args[at + 1]
        del args[at : at + 2]
    schema_dir = Path(args[0]) if args else SCHEMA_DIR
    problems = check_compatibility(schema_dir)
    if registry_url and not problems:
        problems = _registry_problems(registry_url, schema_dir)
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) in {schema_dir}", file=sys.stderr)
        return 1
    count = len(list(schema_dir.glob("*.avsc")))
    history = len(list((schema_dir / "history").glob("*.avsc")))
    print(f"OK: {count} schemas, {history} versions, ids unique, compatible (full transitive)")
    if registry_url:
        print(f"OK: the schema registry at {registry_url} agrees")
    return 0


def _registry_problems(url: str, schema_dir: Path) -> list[str]:
    from streams.runtime.settings import ConfigError, load_settings
    from streams.runtime.topics import Topics

    try:
        settings = load_settings()
    except ConfigError as exc:
        return [str(exc)]
    conf = settings.schema_registry
    registry = RegistryClient(conf.client_conf(url))
    deployed = {}
    for name in sorted(p.stem for p in schema_dir.glob("*.avsc")):
        try:
            topic = Topics().for_record(name)
        except KeyError:
            continue
        deployed[name] = subject_name(conf.subject_strategy, topic, load_schema(name, schema_dir))
    try:
        return check_registry(registry, schema_dir, deployed)
    except RegistryError as exc:
        return [str(exc)]


if __name__ == "__main__":
    raise SystemExit(main())
