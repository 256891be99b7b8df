"""Validate rendered Kubernetes manifests offline (used by scripts/helm-check).

Core kinds are validated with kubernetes-validate (strict: unknown fields are errors) against
one pinned Kubernetes version. Kinds that are not in the core schemas are validated against a
JSON schema in --crd-schemas (file <kind in lower case>.json, e.g. servicemonitor.json); a kind
with neither is an error, so nothing passes unchecked.

Usage: validate_manifests.py --k8s-version 1.30.0 --crd-schemas DIR FILE...
Exit status 0 when every document validates, 1 otherwise; one line per document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils


def _documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise SystemExit(f"{path}: a document is not a Kubernetes object: {str(doc)[:80]}")
    return docs


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", required=True)
    parser.add_argument("--crd-schemas", type=Path, required=True)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)

    wanted = kv_utils.major_minor(args.k8s_version)
    supported = sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()}, key=_version_key)
    if wanted not in supported:
        print(
            f"FATAL kubernetes-validate {kv_utils.__version__} has no schemas for Kubernetes "
            f"{wanted} (it has {', '.join(supported)})"
        )
        return 1

    failures = 0
    kinds: Counter[str] = Counter()
    for path in args.files:
        for doc in _documents(path):
            name = _name(doc)
            kinds[doc["kind"]] += 1
            try:
                kubernetes_validate.validate(doc, args.k8s_version, strict=True)
            except kv_utils.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(top)"
                print(f"ERROR {path}: {name}: {where}: {exc.message}")
                failures += 1
                continue
            except kv_utils.SchemaNotFoundError:
                schema_file = args.crd_schemas / f"{doc['kind'].lower()}.json"
                if not schema_file.is_file():
                    print(
                        f"ERROR {path}: {name}: {doc['apiVersion']} {doc['kind']} is not a core "
                        f"kind of Kubernetes {wanted} and {schema_file} does not exist"
                    )
                    failures += 1
                    continue
                schema = json.loads(schema_file.read_text("utf-8"))
                errors = sorted(
                    jsonschema.Draft202012Validator(schema).iter_errors(doc),
                    key=lambda e: list(e.path),
                )
                for err in errors:
                    where = ".".join(str(p) for p in err.path) or "(top)"
                    print(f"ERROR {path}: {name}: {where}: {err.message}")
                failures += len(errors)
                if not errors:
                    print(
                        f"ok    {path}: {name} (CRD kind: not in the Kubernetes schemas, checked "
                        f"against {schema_file})"
                    )
                continue
            print(f"ok    {path}: {name} (Kubernetes {wanted}, strict)")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{'FAILED' if failures else 'valid'}: {summary}; {failures} error(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
