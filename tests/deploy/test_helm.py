"""The Helm chart deploy/helm/escalator, rendered with `helm template` (no cluster needed).

Needs the helm binary: on PATH, in $(go env GOPATH)/bin, or named by $HELM. `scripts/helm-check`
installs it; without it these tests fail (they never skip).
"""

from __future__ import annotations

import os
import re
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
SETTINGS = REPO_DIR / "streams" / "settings.py"
K8S_VERSION = "1.30.0"  # as scripts/helm-check

# Variables of the process contract that streams/settings.py does not read (each process reads
# its own): ingest port and token, sink metrics port, webhook signing key and targets.
CONTRACT_ENV = {
    "ESCALATOR_INGEST_PORT",
    "ESCALATOR_INGEST_TOKEN_FILE",
    "ESCALATOR_METRICS_PORT",
    "ESCALATOR_WEBHOOK_SIGNING_KEY_FILE",
    "ESCALATOR_WEBHOOK_TARGETS_FILE",
}
SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|SIGNING|(^|_)KEY($|_)|CREDENTIAL", re.I)


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


def _helm_template(values: dict[str, Any] | None, files: list[Path], tmp: Path) -> Any:
    args = [helm(), "template", "escalator", str(CHART), "--namespace", "escalator"]
    args += ["--kube-version", K8S_VERSION]
    for f in files:
        args += ["-f", str(f)]
    if values is not None:
        path = tmp / f"values-{len(list(tmp.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def render(tmp_path: Path) -> Any:
    """render(values=None, production=False) -> list of rendered objects."""

    def _render(
        values: dict[str, Any] | None = None, production: bool = False
    ) -> list[dict[str, Any]]:
        proc = _helm_template(values, [PROD_VALUES] if production else [], tmp_path)
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render


@pytest.fixture
def render_error(tmp_path: Path) -> Any:
    """render_error(values) -> helm's error output (the rendering must fail)."""

    def _render_error(values: dict[str, Any], production: bool = False) -> str:
        proc = _helm_template(values, [PROD_VALUES] if production else [], tmp_path)
        assert proc.returncode != 0, f"rendering should have failed:\n{proc.stdout[:2000]}"
        return str(proc.stderr)

    return _render_error


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job")]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap", "escalator-config")["data"])


def settings_env_names() -> set[str]:
    """Every ESCALATOR_* name streams/settings.py reads (secrets also as NAME_FILE)."""
    source = SETTINGS.read_text("utf-8")
    names = set(re.findall(r'"(ESCALATOR_[A-Z0-9_]+)"', source))
    secrets = set(re.findall(r'_secret\(env, "(ESCALATOR_[A-Z0-9_]+)"\)', source))
    assert secrets, "no _secret(env, NAME) calls found in streams/settings.py"
    return names | {f"{n}_FILE" for n in secrets}


# ---- the worker StatefulSet ------------------------------------------------------------------


@pytest.mark.parametrize("data_dir", [None, "/data/escalator-state"])
def test_state_volume_is_mounted_where_data_dir_points(render: Any, data_dir: str | None) -> None:
    docs = render({"worker": {"dataDir": data_dir}} if data_dir else None)
    sts = one(docs, "StatefulSet")
    (worker,) = sts["spec"]["template"]["spec"]["containers"]
    data = env_of(worker)["ESCALATOR_DATA_DIR"]
    assert data == (data_dir or "/var/lib/escalator")
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = [m for m in worker["volumeMounts"] if m["mountPath"] == data]
    assert len(mounts) == 1 and mounts[0]["name"] in claims, worker["volumeMounts"]
    assert not mounts[0].get("readOnly")


def test_statefulset_shape(render: Any) -> None:
    docs = render()
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    headless = one(docs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    (worker,) = spec["template"]["spec"]["containers"]
    assert worker["args"] == ["worker"]
    env = env_of(worker)
    assert env["ESCALATOR_POLICY_FILE"] == "/etc/escalator/policy.yaml"
    policy_mount = next(m for m in worker["volumeMounts"] if m["name"] == "policy")
    assert policy_mount["mountPath"] == "/etc/escalator"
    volume = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == "policy")
    policy_cm = one(docs, "ConfigMap", volume["configMap"]["name"])
    assert "policy.yaml" in policy_cm["data"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_chart_default_policy_is_the_builtin_policy(render: Any) -> None:
    builtin = (REPO_DIR / "streams" / "sla" / "default_policy.yaml").read_text("utf-8")
    copy = (CHART / "files" / "policy.yaml").read_text("utf-8")
    assert copy == builtin, (
        "deploy/helm/escalator/files/policy.yaml differs from streams/sla/default_policy.yaml: "
        "copy it again"
    )
    rendered = one(render(), "ConfigMap", "escalator-policy")["data"]["policy.yaml"]
    assert rendered.strip() == builtin.strip()


def test_policy_change_rolls_the_workers(render: Any) -> None:
    def annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
        return dict(one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"])

    default = annotations(render())
    builtin = (CHART / "files" / "policy.yaml").read_text("utf-8")
    changed_docs = render({"policy": {"content": builtin + "# tightened by ops\n"}})
    changed = annotations(changed_docs)
    assert re.fullmatch(r"[0-9a-f]{64}", default["checksum/policy"])
    assert changed["checksum/policy"] != default["checksum/policy"]
    assert changed["checksum/config"] == default["checksum/config"]
    policy_cm = one(changed_docs, "ConfigMap", "escalator-policy")["data"]["policy.yaml"]
    assert "# tightened by ops" in policy_cm
    # the same content renders the same checksum (no spurious rollouts)
    assert annotations(render())["checksum/policy"] == default["checksum/policy"]


def test_more_replicas_than_partitions_fails(render: Any, render_error: Any) -> None:
    render({"worker": {"replicas": 6}, "kafka": {"partitions": 6}})
    err = render_error({"worker": {"replicas": 7}, "kafka": {"partitions": 6}})
    assert "worker.replicas (7) must not exceed kafka.partitions (6)" in err


def test_replicas_must_be_an_integer(render_error: Any) -> None:
    err = render_error({"worker": {"replicas": "three"}})
    assert "values don't meet the specifications of the schema" in err
    assert "at '/worker/replicas': got string, want integer" in err


def test_schema_rejects_bad_values(render_error: Any) -> None:
    assert "at '/worker/replicas': minimum: got 0, want 1" in render_error(
        {"worker": {"replicas": 0}}
    )
    err = render_error({"kafka": {"securityProtocol": "TLS"}})
    assert "/kafka/securityProtocol" in err and "SASL_SSL" in err
    assert "/processingGuarantee" in render_error({"processingGuarantee": "exactly-once"})
    assert "additional properties 'replicaz' not allowed" in render_error(
        {"worker": {"replicaz": 2}}
    )
    err = render_error({"kafka": {"securityProtocol": "SASL_SSL"}})
    assert "/kafka/sasl/username" in err and "/kafka/sasl/passwordSecret/name" in err


# ---- secrets -----------------------------------------------------------------------------------

FAKE_SECRET = "FAKE-SECRET-d6f1c2"


def test_secret_values_cannot_be_put_in_values(render_error: Any) -> None:
    err = render_error({"redis": {"url": f"redis://:{FAKE_SECRET}@redis:6379/0"}})
    assert "/redis/url" in err
    err = render_error(
        {"worker": {"extraEnv": [{"name": "ESCALATOR_KAFKA_SASL_PASSWORD", "value": FAKE_SECRET}]}}
    )
    assert "/worker/extraEnv/0" in err


@pytest.mark.parametrize("production", [False, True])
def test_no_secret_in_any_configmap(render: Any, production: bool) -> None:
    docs = render(production=production)
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmaps
    for cm in configmaps:
        for key, value in cm.get("data", {}).items():
            assert not SECRETISH.search(key), f"ConfigMap {cm['metadata']['name']}: key {key}"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), (
                f"ConfigMap {cm['metadata']['name']}: {key} has credentials in a URL"
            )
            assert FAKE_SECRET not in value
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"


@pytest.mark.parametrize("production", [False, True])
def test_secret_env_points_into_secret_volumes(render: Any, production: bool) -> None:
    docs = render(production=production)
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        secret_volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
        for container in containers(workload):
            mounts = {
                m["mountPath"]: m["name"]
                for m in container.get("volumeMounts", [])
                if m["name"] in secret_volumes
            }
            for name, value in env_of(container).items():
                plain = name.removesuffix("_FILE")
                if not SECRETISH.search(plain):
                    continue
                assert name.endswith("_FILE"), f"{container['name']}: secret given directly: {name}"
                directory, _, filename = value.rpartition("/")
                assert directory in mounts, f"{container['name']}: {name}={value} not in a Secret"
                volume = secret_volumes[mounts[directory]]
                assert volume["secretName"]
                assert filename in [i["path"] for i in volume["items"]]


def test_production_values(render: Any) -> None:
    docs = render(production=True)
    config = config_env(docs)
    assert config["ESCALATOR_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["ESCALATOR_KAFKA_SASL_MECHANISM"].startswith("SCRAM-SHA-")
    assert config["ESCALATOR_KAFKA_SASL_USERNAME"]
    assert config["ESCALATOR_PARTITIONS"] == "12"
    assert config["ESCALATOR_REPLICATION"] == "3"
    assert config["ESCALATOR_PROCESSING_GUARANTEE"] == "exactly_once"
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    expected = {
        "escalator-worker": {
            "ESCALATOR_KAFKA_SASL_PASSWORD_FILE": "kafka-escalator-credentials",
            "ESCALATOR_KAFKA_SSL_CA_FILE": "kafka-cluster-ca",
            "ESCALATOR_REDIS_PASSWORD_FILE": "escalator-redis",
        },
        "escalator-ingest": {
            "ESCALATOR_KAFKA_SASL_PASSWORD_FILE": "kafka-escalator-credentials",
            "ESCALATOR_INGEST_TOKEN_FILE": "escalator-ingest-token",
        },
        "escalator-sink-redis": {"ESCALATOR_REDIS_PASSWORD_FILE": "escalator-redis"},
        "escalator-sink-webhook": {
            "ESCALATOR_WEBHOOK_SIGNING_KEY_FILE": "escalator-webhook-signing-key",
        },
    }
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        secret_of_mount = {}
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for m in container["volumeMounts"]:
            if "secret" in volumes.get(m["name"], {}):
                secret_of_mount[m["mountPath"]] = volumes[m["name"]]["secret"]["secretName"]
        env = env_of(container)
        for name, secret in expected[workload["metadata"]["name"]].items():
            assert secret_of_mount[env[name].rpartition("/")[0]] == secret, (workload, name)
    monitor = one(docs, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} >= {"web", "http", "metrics"}
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"EscalatorDetectionLatencyHigh", "EscalatorWorkerAbsent"} <= alerts
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]


def test_default_values_use_plaintext_and_no_monitoring_crds(render: Any) -> None:
    docs = render()
    config = config_env(docs)
    assert config["ESCALATOR_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert "ESCALATOR_KAFKA_SASL_USERNAME" not in config
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    worker = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert "ESCALATOR_KAFKA_SASL_PASSWORD_FILE" not in env_of(worker)


def test_env_names_are_the_ones_the_processes_read(render: Any) -> None:
    allowed = settings_env_names() | CONTRACT_ENV
    for production in (False, True):
        docs = render(production=production)
        used = set(config_env(docs))
        for workload in workloads(docs):
            for container in containers(workload):
                used |= set(env_of(container))
        unknown = sorted(n for n in used if n.startswith("ESCALATOR_") and n not in allowed)
        assert not unknown, f"the chart sets variables no process reads: {unknown}"


# ---- probes, ports, security ---------------------------------------------------------------


def _port_named(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name])


@pytest.mark.parametrize(
    ("workload_name", "port_name", "port_env", "readiness_path"),
    [
        ("escalator-worker", "web", "ESCALATOR_WEB_PORT", "/readyz"),
        ("escalator-ingest", "http", "ESCALATOR_INGEST_PORT", "/readyz"),
        ("escalator-sink-redis", "metrics", "ESCALATOR_METRICS_PORT", "/healthz"),
        ("escalator-sink-webhook", "metrics", "ESCALATOR_METRICS_PORT", "/healthz"),
    ],
)
def test_probes_use_the_named_port(
    render: Any, workload_name: str, port_name: str, port_env: str, readiness_path: str
) -> None:
    docs = render()
    (workload,) = [w for w in workloads(docs) if w["metadata"]["name"] == workload_name]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert str(_port_named(container, port_name)) == env_of(container)[port_env]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
    assert container["readinessProbe"]["httpGet"] == {"path": readiness_path, "port": port_name}
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["port"] == port_name


def test_services_target_named_ports(render: Any) -> None:
    docs = render(production=True)
    for svc in (d for d in docs if d["kind"] == "Service"):
        for port in svc["spec"]["ports"]:
            assert isinstance(port["targetPort"], str), svc["metadata"]["name"]


@pytest.mark.parametrize("production", [False, True])
def test_every_container_is_locked_down(render: Any, production: bool) -> None:
    docs = render(production=production)
    assert len(workloads(docs)) == 4
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers(workload):
            sc = container["securityContext"]
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in tmp_volumes, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


def test_sinks_and_ingest_can_be_disabled(render: Any) -> None:
    names = {w["metadata"]["name"] for w in workloads(render())}
    assert names == {
        "escalator-worker",
        "escalator-ingest",
        "escalator-sink-redis",
        "escalator-sink-webhook",
    }
    docs = render(
        {
            "ingest": {"enabled": False},
            "sinks": {"redis": {"enabled": False}, "webhook": {"enabled": False}},
        }
    )
    assert {w["metadata"]["name"] for w in workloads(docs)} == {"escalator-worker"}
    assert not [d for d in docs if d["metadata"]["name"].startswith("escalator-sink-")]
    docs = render({"sinks": {"webhook": {"enabled": False}}})
    assert {w["metadata"]["name"] for w in workloads(docs)} >= {"escalator-sink-redis"}
    assert "escalator-sink-webhook" not in {w["metadata"]["name"] for w in workloads(docs)}


def test_webhook_targets_change_rolls_the_webhook_sink(render: Any) -> None:
    def checksum(docs: list[dict[str, Any]]) -> str:
        sink = one(docs, "Deployment", "escalator-sink-webhook")
        return str(sink["spec"]["template"]["metadata"]["annotations"]["checksum/webhook-targets"])

    targets = [{"name": "paging", "url": "https://paging.example.invalid/hook"}]
    changed = render({"sinks": {"webhook": {"targets": targets}}})
    assert checksum(changed) != checksum(render())
    data = one(changed, "ConfigMap", "escalator-sink-webhook-targets")["data"]
    assert yaml.safe_load(data["webhook-targets.yaml"]) == {"targets": targets}
    sink = one(changed, "Deployment", "escalator-sink-webhook")
    env = env_of(sink["spec"]["template"]["spec"]["containers"][0])
    assert env["ESCALATOR_WEBHOOK_TARGETS_FILE"] == "/etc/escalator/webhook-targets.yaml"


def test_prometheus_rule_comes_from_the_alerts_file(render: Any) -> None:
    docs = render({"metrics": {"prometheusRule": {"enabled": True}}})
    rule = one(docs, "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text("utf-8"))
    assert rule["spec"]["groups"] == source["groups"]
    exprs = [r["expr"] for g in source["groups"] for r in g["rules"]]
    assert all("escalator_" in e for e in exprs)
