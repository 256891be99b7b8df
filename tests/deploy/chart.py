"""Rendering the Helm chart deploy/helm/escalator with `helm template`, and reading the result.

Needs the helm binary: on PATH, in $(go env GOPATH)/bin, or named by $HELM. `scripts/helm-check`
installs it; without it the tests fail (they never skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_DIR = Path(__file__).resolve().parents[2]
CHART = REPO_DIR / "deploy" / "helm" / "escalator"
PROD_VALUES = REPO_DIR / "deploy" / "helm" / "values-production.yaml"
K8S_VERSION = "1.30.0"  # as scripts/helm-check

WEBHOOK_ON: dict[str, Any] = {
    "sinks": {
        "webhook": {
            "enabled": True,
            "targets": [{"name": "paging", "url": "https://paging.example.invalid/hook"}],
        }
    }
}
# Every optional component on (the production values have them all on as well).
ALL_ON: dict[str, Any] = {**WEBHOOK_ON, "board": {"enabled": True}}
ALL_WORKLOADS = {
    "escalator-worker",
    "escalator-ingest",
    "escalator-alerts",
    "escalator-sink-redis",
    "escalator-sink-webhook",
    "escalator-board",
}


@cache
def helm() -> str:
    candidates = [os.environ.get("HELM"), shutil.which("helm")]
    go = shutil.which("go")
    if go:
        gopath = subprocess.run(
            [go, "env", "GOPATH"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if gopath:
            candidates.append(str(Path(gopath) / "bin" / "helm"))
    candidates.append(str(Path.home() / "go" / "bin" / "helm"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "helm is not installed (not on PATH, not in $(go env GOPATH)/bin, $HELM unset): "
        "run `bash scripts/helm-check` once, it installs it",
        pytrace=False,
    )


def helm_template(
    values: dict[str, Any] | None, production: bool, tmp: Path, chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    args = [helm(), "template", "escalator", str(chart), "--namespace", "escalator"]
    args += ["--kube-version", K8S_VERSION]
    if production:
        args += ["-f", str(PROD_VALUES)]
    if values is not None:
        path = tmp / f"values-{len(list(tmp.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job")]


def workload(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [w for w in workloads(docs) if w["metadata"]["name"] == name]
    return found


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap", "escalator-config")["data"])


def port_named(container: dict[str, Any], name: str | int) -> int:
    if isinstance(name, int):
        return name
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert name in ports, f"{container['name']}: no container port named {name}"
    return int(ports[name])


def pods_of(docs: list[dict[str, Any]], service: dict[str, Any]) -> list[dict[str, Any]]:
    """The workloads whose pods a Service selects."""
    selector = service["spec"]["selector"].items()
    return [
        w
        for w in workloads(docs)
        if selector <= w["spec"]["template"]["metadata"]["labels"].items()
    ]


def process_env(
    docs: list[dict[str, Any]], workload: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, str]:
    """The environment the chart gives `container`, with its volumes made real under `root`.

    ConfigMap volumes get the rendered data, Secret volumes a made-up value per key (at least
    32 characters), emptyDir and volume claims an empty directory, the pod name the first
    StatefulSet pod's; every variable that points
    into a mount points to the same file under `root`.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        source = item.get("valueFrom")
        if source is not None:  # only the pod's own name (the downward API) is allowed
            assert source == {"fieldRef": {"fieldPath": "metadata.name"}}, (
                f"{container['name']}: {item['name']} uses valueFrom {source}"
            )
            env[item["name"]] = f"{workload['metadata']['name']}-0"
            continue
        env[item["name"]] = item["value"]
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    local: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        local[mount["mountPath"]] = target
        volume = volumes.get(mount["name"])
        if volume is None:
            assert mount["name"] in claims, f"{container['name']}: no volume {mount['name']}"
        elif "configMap" in volume:
            data = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (target / item["path"]).write_text(data[item["key"]])
        elif "secret" in volume:
            secret = volume["secret"]
            for item in secret["items"]:
                value = f"made-up-{secret['secretName']}-{item['key']}-0123456789abcdef"
                (target / item["path"]).write_text(value + "\n")
        else:
            assert "emptyDir" in volume, f"{container['name']}: volume kind of {volume}"
    for name, value in env.items():
        for path in sorted(local, key=len, reverse=True):
            if value == path or value.startswith(path.rstrip("/") + "/"):
                env[name] = str(local[path]) + value[len(path.rstrip("/")) :]
                break
    return env
