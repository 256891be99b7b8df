"""The Helm chart deploy/helm/escalator, rendered with `helm template` (no cluster needed).

Helpers and the helm binary: tests/deploy/chart.py. That the chart matches the code it runs
(commands, variables, probes, ports, webhook targets): tests/deploy/test_chart_matches_code.py.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    ALL_ON,
    ALL_WORKLOADS,
    CHART,
    REPO_DIR,
    WEBHOOK_ON,
    config_env,
    containers,
    documents,
    env_of,
    helm_template,
    one,
    port_named,
    workload,
    workloads,
)

SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|SIGNING|(^|_)KEY($|_)|CREDENTIAL", re.I)


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
    assert worker["args"] == ["worker", "--runtime", "loop"]
    env = env_of(worker)
    assert env["ESCALATOR_POLICY_FILE"] == "/etc/escalator/policy.yaml"
    policy_mount = next(m for m in worker["volumeMounts"] if m["name"] == "policy")
    assert policy_mount["mountPath"] == "/etc/escalator"
    volume = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == "policy")
    policy_cm = one(docs, "ConfigMap", volume["configMap"]["name"])
    assert "policy.yaml" in policy_cm["data"]
    pdb = one(docs, "PodDisruptionBudget", "escalator-worker")
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


@pytest.mark.parametrize("name", ["escalator-worker", "escalator-ingest"])
def test_policy_change_rolls_what_reads_the_policy(render: Any, name: str) -> None:
    def annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
        return dict(workload(docs, name)["spec"]["template"]["metadata"]["annotations"])

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
    # the process reads the policy the ConfigMap holds
    pod = workload(changed_docs, name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = env_of(container)["ESCALATOR_POLICY_FILE"]
    directory, _, filename = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "escalator-policy" and filename == "policy.yaml"


def test_the_redis_sink_reads_no_policy(render: Any) -> None:
    """It projects the worker's ticket-board records: a policy change does not roll it."""
    template = workload(render(), "escalator-sink-redis")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert "checksum/policy" not in template["metadata"]["annotations"]
    assert "ESCALATOR_POLICY_FILE" not in env_of(container)
    assert all(v.get("configMap", {}).get("name") != "escalator-policy"
               for v in template["spec"]["volumes"])  # fmt: skip


def test_shadow_policy_is_mounted_and_passed_to_the_worker(render: Any, render_error: Any) -> None:
    from streams.sla.policy import parse_policy
    from tests.support.policies import candidate_text

    def worker(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        template = workload(docs, "escalator-worker")["spec"]["template"]
        (container,) = template["spec"]["containers"]
        return template, container

    _, plain = worker(render())
    assert "--shadow-policy" not in plain["args"]
    text = candidate_text()
    docs = render({"worker": {"shadowPolicy": text}})
    template, container = worker(docs)
    args = container["args"]
    path = args[args.index("--shadow-policy") + 1]
    directory, _, filename = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    data = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    assert data[filename].strip() == text.strip()
    assert parse_policy(data[filename]).sla_policies
    assert re.fullmatch(
        r"[0-9a-f]{64}", template["metadata"]["annotations"]["checksum/shadow-policy"]
    )
    err = render_error({"worker": {"shadowPolicy": text, "runtime": "faust"},
                        "processingGuarantee": "at_least_once"})  # fmt: skip
    assert "worker.shadowPolicy runs on worker.runtime: loop only" in err


def test_more_replicas_than_partitions_fails(render: Any, render_error: Any) -> None:
    render({"worker": {"replicas": 6}, "kafka": {"partitions": 6}})
    err = render_error({"worker": {"replicas": 7}, "kafka": {"partitions": 6}})
    assert "worker.replicas (7) must not exceed kafka.partitions (6)" in err


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        ({"passwordSecret": {"name": "sr", "key": "password"}, "url": "https://sr:8081"},
         "schemaRegistry.passwordSecret needs schemaRegistry.username"),
        ({"username": "u"}, "schemaRegistry credentials are set but schemaRegistry.url is empty"),
        ({"url": "https://sr:8081", "tls": {"certSecret": {"name": "c", "key": "tls.crt"}}},
         "schemaRegistry.tls.certSecret and schemaRegistry.tls.keySecret go together"),
        ({"url": "https://u:pw@sr:8081"}, "at '/schemaRegistry/url'"),
        ({"subjectStrategy": "topic"}, "at '/schemaRegistry/subjectStrategy'"),
    ],
)  # fmt: skip
def test_schema_registry_mistakes_fail(
    render_error: Any, registry: dict[str, Any], message: str
) -> None:
    assert message in render_error({"schemaRegistry": registry})


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
    docs = render(ALL_ON, production=production)
    for work in workloads(docs):
        pod = work["spec"]["template"]["spec"]
        secret_volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
        for container in containers(work):
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
    # Each process gets the secrets of what it talks to, and no others: the worker never
    # connects to Redis, the board never to Kafka.
    kafka = {
        "ESCALATOR_KAFKA_SASL_PASSWORD_FILE": "kafka-escalator-credentials",
        "ESCALATOR_KAFKA_SSL_CA_FILE": "kafka-cluster-ca",
    }
    redis = {"ESCALATOR_REDIS_PASSWORD_FILE": "escalator-redis"}
    # every process that reads or writes Avro gets the schema registry's credentials
    kafka = {
        **kafka,
        "ESCALATOR_SCHEMA_REGISTRY_PASSWORD_FILE": "escalator-schema-registry",
        "ESCALATOR_SCHEMA_REGISTRY_SSL_CA_FILE": "escalator-schema-registry-tls",
    }
    expected = {
        "escalator-worker": kafka,
        "escalator-ingest": {
            **kafka,
            **redis,
            "ESCALATOR_INGEST_TOKEN_FILE": "escalator-ingest-token",
        },
        "escalator-alerts": kafka,
        "escalator-sink-redis": {**kafka, **redis},
        "escalator-sink-webhook": {
            **kafka,
            "ESCALATOR_WEBHOOK_SIGNING_KEY_FILE": "escalator-webhook-signing-key",
        },
        "escalator-board": redis,
    }
    assert {w["metadata"]["name"] for w in workloads(docs)} == set(expected)
    for work in workloads(docs):
        pod = work["spec"]["template"]["spec"]
        secret_of_mount = {}
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for m in container["volumeMounts"]:
            if "secret" in volumes.get(m["name"], {}):
                secret_of_mount[m["mountPath"]] = volumes[m["name"]]["secret"]["secretName"]
        env = env_of(container)
        got = {
            name: secret_of_mount[path.rpartition("/")[0]]
            for name, path in env.items()
            if path.rpartition("/")[0] in secret_of_mount
        }
        assert got == expected[work["metadata"]["name"]], work["metadata"]["name"]
    monitor = one(docs, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} >= {"web", "http", "metrics"}
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"EscalatorDetectionLatencyHigh", "EscalatorWorkerAbsent"} <= alerts
    assert one(docs, "PodDisruptionBudget", "escalator-worker")["spec"]["maxUnavailable"] == 1
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


# ---- probes, ports, security ---------------------------------------------------------------


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
    docs = render(WEBHOOK_ON)
    (container,) = workload(docs, workload_name)["spec"]["template"]["spec"]["containers"]
    assert str(port_named(container, port_name)) == env_of(container)[port_env]
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
    docs = render(ALL_ON, production=production)
    assert {w["metadata"]["name"] for w in workloads(docs)} == ALL_WORKLOADS
    for work in workloads(docs):
        pod = work["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers(work):
            sc = container["securityContext"]
            where = f"{work['metadata']['name']}/{container['name']}"
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


def test_webhook_sink_is_off_by_default_and_needs_a_target(render: Any, render_error: Any) -> None:
    names = {w["metadata"]["name"] for w in workloads(render())}
    assert names == {"escalator-worker", "escalator-ingest", "escalator-alerts",
                     "escalator-sink-redis"}  # fmt: skip
    err = render_error({"sinks": {"webhook": {"enabled": True}}})
    assert "sinks.webhook.enabled needs at least one target" in err


def test_alerts_run_as_one_pod_replaced_not_rolled_with_the_workers_policy(
    render: Any, render_error: Any
) -> None:
    """Two `escalator alerts` would fence each other (one transactional id) and each needs
    every partition: one replica, Recreate. It reads the workers' policy and rolls with it."""
    docs = render()
    alerts = workload(docs, "escalator-alerts")
    assert alerts["kind"] == "Deployment" and alerts["spec"]["replicas"] == 1
    assert alerts["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = alerts["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["alerts"]
    assert env_of(container)["ESCALATOR_POLICY_FILE"] == "/etc/escalator/policy.yaml"
    worker = one(docs, "StatefulSet")["spec"]["template"]
    pod = alerts["spec"]["template"]
    assert (
        pod["metadata"]["annotations"]["checksum/policy"]
        == (worker["metadata"]["annotations"]["checksum/policy"])
    )
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "policy"]
    assert volume["configMap"]["name"] == "escalator-policy"
    other = render({"policy": {"content": "version: 1\n"}})
    changed = workload(other, "escalator-alerts")["spec"]["template"]["metadata"]["annotations"]
    assert changed["checksum/policy"] != pod["metadata"]["annotations"]["checksum/policy"]
    builtin = (REPO_DIR / "streams" / "sla" / "default_policy.yaml").read_text("utf-8")
    off = builtin.replace("ops_alerts:\n  enabled: true", "ops_alerts:\n  enabled: false")
    assert off != builtin
    err = render_error({"policy": {"content": off}})
    assert "alerts.enabled needs the policy's ops_alerts.enabled" in err
    docs = render({"policy": {"content": off}, "alerts": {"enabled": False}})
    assert "escalator-alerts" not in {w["metadata"]["name"] for w in workloads(docs)}


def test_sinks_and_ingest_can_be_disabled(render: Any) -> None:
    names = {w["metadata"]["name"] for w in workloads(render(WEBHOOK_ON))}
    assert names == {
        "escalator-worker",
        "escalator-ingest",
        "escalator-alerts",
        "escalator-sink-redis",
        "escalator-sink-webhook",
    }
    docs = render(
        {
            "ingest": {"enabled": False},
            "alerts": {"enabled": False},
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

    targets = [{"name": "crm", "url": "https://crm.example.invalid/hook"}]
    changed = render({"sinks": {"webhook": {"enabled": True, "targets": targets}}})
    assert checksum(changed) != checksum(render(WEBHOOK_ON))
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


def test_prometheus_rule_leaves_out_the_ops_alerts_rules_without_the_alerts_process(
    render: Any,
) -> None:
    on = {"metrics": {"prometheusRule": {"enabled": True}}}
    docs = render({**on, "alerts": {"enabled": False}})
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    source = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text("utf-8"))["groups"]
    assert groups == [g for g in source if g["name"] != "escalator.ops-alerts"]
    assert len(groups) == len(source) - 1
    ops = [g for g in one(render(on), "PrometheusRule")["spec"]["groups"] if "ops" in g["name"]]
    assert "EscalatorOpsAlertsAbsent" in {r["alert"] for r in ops[0]["rules"]}


# ---- the board -------------------------------------------------------------------------------


def test_board_is_optional_and_needs_the_redis_sink(render: Any, render_error: Any) -> None:
    assert not [d for d in render() if "board" in d["metadata"]["name"]]
    docs = render(ALL_ON)
    board = one(docs, "Deployment", "escalator-board")
    service = one(docs, "Service", "escalator-board")
    assert (
        service["spec"]["selector"].items()
        <= board["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = board["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert port_named(container, "http") == 8070
    err = render_error({"board": {"enabled": True}, "sinks": {"redis": {"enabled": False}}})
    assert "board.enabled needs sinks.redis.enabled" in err
    assert "/board/replicas" in render_error({"board": {"enabled": True, "replicas": "2"}})
    assert "/board/port" in render_error({"board": {"port": 70000}})


def test_board_gets_no_kafka_settings_and_is_not_scraped(render: Any) -> None:
    docs = render(production=True)
    (container,) = one(docs, "Deployment", "escalator-board")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "envFrom" not in container
    assert not [n for n in env_of(container) if n.startswith("ESCALATOR_KAFKA_")]
    service = one(docs, "Service", "escalator-board")
    assert "escalator.io/metrics" not in service["metadata"]["labels"]
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert not selector <= service["metadata"]["labels"].items()


def _render_notes(values: dict[str, Any] | None, production: bool, tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it, rendered offline: a copy of the chart turns it
    into a named template and puts its text into a ConfigMap."""
    chart = tmp_path / f"chart-{production}"
    tmp_path.mkdir(exist_ok=True)
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text("utf-8")
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |-\n"
        '    {{- include "test.notes" . | nindent 4 }}\n'
    )
    proc = helm_template(values, production, tmp_path, chart=chart)
    assert proc.returncode == 0, proc.stderr
    return str(one(documents(proc.stdout), "ConfigMap", "notes")["data"]["notes"])


def test_notes_name_the_board_and_its_secrets(tmp_path: Path) -> None:
    off = _render_notes(None, False, tmp_path)
    assert "board     off (board.enabled=true" in off
    notes = _render_notes(None, True, tmp_path)
    assert "port-forward svc/escalator-board 8070:80" in notes
    (redis_line,) = [line for line in notes.splitlines() if "-> ESCALATOR_REDIS_PASSWORD" in line]
    assert redis_line.strip().startswith("- escalator-redis (key password)")
    assert redis_line.endswith("[ingest, sink-redis, board]")
    (kafka_line,) = [line for line in notes.splitlines() if "ESCALATOR_KAFKA_SASL" in line]
    assert kafka_line.endswith("[worker, ingest, alerts, sink-redis, sink-webhook]")
    assert "alerts    Deployment escalator-alerts (one pod)" in notes
    helpdesk = {"sinks": {"helpdesk": {"enabled": True, "url": "https://acme.zendesk.com",
                                       "zendeskEmail": "ops@acme.example"}}}  # fmt: skip
    notes = _render_notes(helpdesk, False, tmp_path / "helpdesk")
    assert "sink      helpdesk -> zendesk https://acme.zendesk.com" in notes
    (token_line,) = [line for line in notes.splitlines() if "ZENDESK_API_TOKEN" in line]
    assert token_line.endswith("[sink-helpdesk]")


# ---- issue #18: network policies, probes from progress, ingest disruption budget and tokens --

PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
PROXY = {"podSelector": {"matchLabels": {"app": "auth-proxy"}}}


def _pod_labels(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return dict(workload(docs, name)["spec"]["template"]["metadata"]["labels"])


def test_board_and_metrics_ports_admit_only_what_the_values_allow(render: Any) -> None:
    docs = render({**ALL_ON, "networkPolicy": {"metricsFrom": [PROMETHEUS], "boardFrom": [PROXY]}})
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    selecting = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                 "app.kubernetes.io/component")  # fmt: skip
    labels = _pod_labels(docs, "escalator-board")
    board_pods = {"podSelector": {"matchLabels": {k: labels[k] for k in selecting}}}
    expected = {
        "escalator-worker": ("web", [PROMETHEUS, board_pods]),
        "escalator-sink-redis": ("metrics", [PROMETHEUS, board_pods]),
        "escalator-sink-webhook": ("metrics", [PROMETHEUS]),
        "escalator-alerts": ("metrics", [PROMETHEUS]),
        "escalator-board": ("http", [PROXY]),
    }
    assert set(policies) == set(expected)  # the ingest API port stays open to senders
    for name, (port, peers) in expected.items():
        spec = policies[name]
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["podSelector"]["matchLabels"].items() <= _pod_labels(docs, name).items()
        (rule,) = spec["ingress"]
        assert rule["from"] == peers, name
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}], name
    # The board's selector picks the board's pods and nothing else.
    selector = board_pods["podSelector"]["matchLabels"].items()
    for work in workloads(docs):
        labels = work["spec"]["template"]["metadata"]["labels"].items()
        assert (selector <= labels) == (work["metadata"]["name"] == "escalator-board")
    # Nothing listed and no board: nobody may connect.
    defaults = {d["metadata"]["name"]: d["spec"] for d in render() if d["kind"] == "NetworkPolicy"}
    assert defaults["escalator-worker"]["ingress"] == []
    assert not [d for d in render({"networkPolicy": {"enabled": False}})
                if d["kind"] == "NetworkPolicy"]  # fmt: skip


def test_a_service_monitor_needs_someone_allowed_to_scrape(render_error: Any) -> None:
    err = render_error({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert "needs networkPolicy.metricsFrom" in err


def test_worker_startup_waits_for_the_restore_and_liveness_is_progress(render: Any) -> None:
    docs = render({"worker": {"liveness": {"stallSeconds": 90, "restoreSeconds": 1200}}})
    (container,) = workload(docs, "escalator-worker")["spec"]["template"]["spec"]["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/startupz", "port": "web"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    env = env_of(container)
    assert (env["ESCALATOR_LIVENESS_STALL_S"], env["ESCALATOR_LIVENESS_RESTORE_S"]) == (
        "90", "1200")  # fmt: skip


def test_ingest_gets_a_disruption_budget(render: Any) -> None:
    docs = render()
    pdb = one(docs, "PodDisruptionBudget", "escalator-ingest")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(
        docs, "escalator-ingest").items()  # fmt: skip
    off = render({"ingest": {"podDisruptionBudget": {"enabled": False, "maxUnavailable": 1}}})
    assert [d["metadata"]["name"] for d in off if d["kind"] == "PodDisruptionBudget"] == [
        "escalator-worker"]  # fmt: skip


def test_ingest_takes_per_source_tokens_and_a_zendesk_secret(
    render: Any, render_error: Any
) -> None:
    docs = render({"ingest": {
        "tokenSecret": {"name": "", "key": "token"},
        "tokensFileSecret": {"name": "ingest-tokens", "key": "tokens.yaml"},
        "zendeskSecret": {"name": "zendesk", "key": "secret"},
        "rateLimit": {"perSecond": 5, "burst": 10},
    }})  # fmt: skip
    (container,) = workload(docs, "escalator-ingest")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert "ESCALATOR_INGEST_TOKEN_FILE" not in env
    assert env["ESCALATOR_INGEST_TOKENS_FILE"].endswith("/tokens.yaml")
    assert env["ESCALATOR_ZENDESK_WEBHOOK_SECRET_FILE"].endswith("/secret")
    assert (env["ESCALATOR_INGEST_RATE_LIMIT"], env["ESCALATOR_INGEST_RATE_BURST"]) == ("5", "10")
    err = render_error({"ingest": {"tokenSecret": {"name": "", "key": "token"}}})
    assert "ingest needs ingest.tokenSecret.name or ingest.tokensFileSecret.name" in err
