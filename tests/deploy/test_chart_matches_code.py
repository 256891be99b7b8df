"""The Helm chart runs the code as the code expects to be run.

For every container of the chart, rendered with the default values, with every component on,
and with the production values: its args parse with the real CLI parser; every ESCALATOR_*
variable it gets is one the code reads; the configuration it gets loads (secrets mounted where
the *_FILE variables point, the policy and the webhook targets parse); it declares the port the
process listens on. The webhook targets the chart accepts are the ones the sink's parser
accepts. An integration test starts every process with the environment the chart gives it,
against the real Kafka, Redis and schema registry, and asks each probe path and each scraped
/metrics.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.sinks.webhook_targets import Target, TargetsError, TopicName, parse_targets
from streams.cli.main import SINKS, build_parser
from streams.runtime.faust_runtime import guarantee
from streams.runtime.settings import ConfigError, Settings, load_settings
from streams.runtime.topics import Topics, ensure_topics
from streams.sla.actions import Kind, Reason
from streams.sla.policy import load_policy
from streams.tools.demo import free_port
from tests.deploy.chart import (
    ALL_ON,
    ALL_WORKLOADS,
    CHART,
    REPO_DIR,
    containers,
    documents,
    env_of,
    helm_template,
    one,
    pods_of,
    port_named,
    process_env,
    workloads,
)
from tests.support.pipeline import WorkerProcess

RENDERS: dict[str, tuple[dict[str, Any] | None, bool]] = {
    "default": (None, False),
    "all-on": (ALL_ON, False),
    "production": (None, True),
    "faust": ({"processingGuarantee": "at_least_once", "worker": {"runtime": "faust"}}, False),
}
PACKAGES = ("streams", "connectors", "schemas")
METRICS_LABEL = "escalator.io/metrics"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, (values, production) in RENDERS.items():
        proc = helm_template(values, production, tmp_path_factory.mktemp(name))
        assert proc.returncode == 0, f"helm template ({name}) failed:\n{proc.stderr}"
        out[name] = documents(proc.stdout)
    return out


def each_container(
    docs: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for work in workloads(docs):
        for container in containers(work):
            yield work, container


def parse_args(argv: list[str]) -> Namespace:
    """argv as `escalator` parses it; a parse error fails the test with argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"escalator {' '.join(argv)}: {err.getvalue().strip()}", pytrace=False)


def command_function(args: Namespace) -> Any:
    """The function that runs the command (for `sink`, the one of its kind)."""
    return SINKS[args.kind] if args.command == "sink" else args.func


def listen_port(args: Namespace, settings: Settings) -> int:
    """The port each command serves on, decided as streams/cli.py decides it."""
    if args.command == "worker":
        return settings.web_port
    if args.command == "ingest":
        return int(args.port or settings.connectors.ingest_port)
    if args.command in ("sink", "alerts"):
        return settings.connectors.metrics_port
    if args.command == "board":
        return int(args.port)
    raise AssertionError(f"the chart runs `escalator {args.command}`, which serves no port")


# ---- (a) commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", RENDERS)
def test_args_are_an_escalator_command(rendered: dict[str, Any], values: str) -> None:
    seen = set()
    for work, container in each_container(rendered[values]):
        where = f"{work['metadata']['name']}/{container['name']}"
        # no command: the image's ENTRYPOINT ["escalator"] runs the args (test_dockerfile.py)
        assert "command" not in container, where
        args = parse_args(container["args"])
        assert args.command == container["args"][0], where
        assert command_function(args).__module__ == "streams.cli.main", where
        seen.add(" ".join(container["args"][:2] if args.command == "sink" else [args.command]))
    assert {"worker", "ingest", "alerts", "sink redis"} <= seen


@pytest.mark.parametrize("values", RENDERS)
def test_worker_runs_the_runtime_of_the_values(
    rendered: dict[str, Any], values: str, tmp_path: Path
) -> None:
    """worker.runtime reaches `escalator worker --runtime`; the Faust runtime accepts the
    guarantee the chart gives it (it refuses exactly_once at start-up)."""
    docs = rendered[values]
    wanted = (RENDERS[values][0] or {}).get("worker", {}).get("runtime", "loop")
    work = one(docs, "StatefulSet", "escalator-worker")
    (container,) = (c for c in containers(work) if c["args"][0] == "worker")
    assert parse_args(container["args"]).runtime == wanted
    if wanted == "faust":
        env = process_env(docs, work, container, tmp_path)
        assert guarantee(env) == "at_least_once"


def test_chart_refuses_faust_with_exactly_once(render_error: Any) -> None:
    with pytest.raises(ConfigError):  # what the worker would refuse at start-up
        guarantee({"ESCALATOR_PROCESSING_GUARANTEE": "exactly_once"})
    error = render_error({"worker": {"runtime": "faust"}})
    assert "worker.runtime=faust is at-least-once only" in error


def test_schema_lists_the_runtimes_of_the_parser() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text("utf-8"))
    runtime = schema["properties"]["worker"]["properties"]["runtime"]
    (action,) = (a for a in worker_parser()._actions if a.dest == "runtime")
    assert runtime["enum"] == list(action.choices)


def worker_parser() -> Any:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["worker"]


# ---- (b) environment variables -----------------------------------------------------------------


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def _environ_reads(tree: ast.AST) -> Iterator[str]:
    """Names read with os.environ.get("X"), os.environ["X"] or os.getenv("X")."""
    for node in ast.walk(tree):
        target: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ",):
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            yield target.value


def names_the_code_reads() -> set[str]:
    """Every variable load_settings reads (recorded while it runs, on an empty environment and
    on one that takes the SASL and TLS branches), and every one other modules read directly."""
    names: set[str] = set()
    for values in (
        {},
        {
            "ESCALATOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ESCALATOR_KAFKA_SASL_USERNAME": "u",
            "ESCALATOR_KAFKA_SASL_PASSWORD": "p",
            "ESCALATOR_REDIS_URL": "rediss://r:6379/0",
            "ESCALATOR_SCHEMA_REGISTRY_URL": "https://registry:8081",
            "ESCALATOR_SCHEMA_REGISTRY_USERNAME": "u",
            "ESCALATOR_SCHEMA_REGISTRY_PASSWORD": "p",
        },
    ):
        env = RecordingEnv(values)
        load_settings(env)
        names |= env.read
    for package in PACKAGES:
        for path in (REPO_DIR / package).rglob("*.py"):
            names.update(_environ_reads(ast.parse(path.read_text("utf-8"))))
    return {n for n in names if n.startswith("ESCALATOR_")}


def test_the_read_names_are_found() -> None:
    names = names_the_code_reads()
    # one of each way of reading: plain, secret (NAME and NAME_FILE), direct os.environ
    assert {"ESCALATOR_KAFKA_BOOTSTRAP", "ESCALATOR_INGEST_PORT"} <= names
    assert {"ESCALATOR_REDIS_PASSWORD", "ESCALATOR_REDIS_PASSWORD_FILE"} <= names
    tree = ast.parse('import os\nos.environ.get("ESCALATOR_X")\nos.environ["ESCALATOR_Y"]\n')
    assert set(_environ_reads(tree)) == {"ESCALATOR_X", "ESCALATOR_Y"}


@pytest.mark.parametrize("values", RENDERS)
def test_every_variable_the_chart_sets_is_read(rendered: dict[str, Any], values: str) -> None:
    read = names_the_code_reads()
    docs = rendered[values]
    for work, container in each_container(docs):
        given = set(env_of(container))
        for source in container.get("envFrom", []):
            given |= set(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        unknown = sorted(n for n in given if n.startswith("ESCALATOR_") and n not in read)
        assert not unknown, f"{work['metadata']['name']}: no process reads {unknown}"


@pytest.mark.parametrize("values", RENDERS)
def test_every_process_gets_a_configuration_that_loads(
    rendered: dict[str, Any], values: str, tmp_path: Path
) -> None:
    """load_settings accepts what each container gets (a SASL password where SASL is on, files
    where *_FILE points), and what its command needs besides is there and parses."""
    docs = rendered[values]
    for work, container in each_container(docs):
        name = work["metadata"]["name"]
        env = process_env(docs, work, container, tmp_path / name)
        settings = load_settings(env)
        args = parse_args(container["args"])
        source = inspect.getsource(command_function(args))
        if "policy_file" in source:  # the command loads the policy
            assert settings.policy_file, f"{name}: ESCALATOR_POLICY_FILE is not set"
            policy = load_policy(settings.policy_file)
            chart_policy = one(docs, "ConfigMap", "escalator-policy")["data"]["policy.yaml"]
            assert Path(settings.policy_file).read_text("utf-8") == chart_policy, name
            assert policy.sla_policies, name
        else:
            assert "ESCALATOR_POLICY_FILE" not in env, f"{name} does not read the policy"
        if "webhook_targets_file" in source:
            assert settings.connectors.webhook_targets_file, name
            text = Path(settings.connectors.webhook_targets_file).read_text("utf-8")
            assert parse_targets(text, name)
        if "webhook_signing_key" in source:
            assert settings.connectors.webhook_signing_key, f"{name}: unsigned"
        if "ingest_token" in source and not getattr(args, "insecure_no_auth", False):
            assert settings.connectors.ingest_token, f"{name}: no bearer token"


def test_schema_registry_settings_reach_the_processes_that_use_avro(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    """schemaRegistry in the production values: URL, strategy, user in the ConfigMap; the
    password and CA mounted (Secret references) where the *_FILE variables point, into the
    processes that read or write Avro only; the defaults set nothing (ids.json)."""
    docs = rendered["production"]
    values = yaml.safe_load((CHART.parent / "values-production.yaml").read_text("utf-8"))
    wanted = values["schemaRegistry"]
    assert wanted["url"] and wanted["passwordSecret"]["name"] and wanted["tls"]["caSecret"]["name"]
    for work, container in each_container(docs):
        name = work["metadata"]["name"]
        env = process_env(docs, work, container, tmp_path / name)
        settings = load_settings(env)
        registry = settings.schema_registry
        if container["args"][0] == "board":  # reads Redis only
            assert registry.password is None and registry.ssl_ca_file is None, name
            continue
        assert settings.schema_registry_url == wanted["url"], name
        assert registry.subject_strategy == wanted["subjectStrategy"], name
        assert registry.auto_register == wanted["autoRegister"], name
        assert registry.username == wanted["username"] and registry.password, name
        assert registry.ssl_ca_file and Path(registry.ssl_ca_file).is_file(), name
        conf = registry.client_conf(wanted["url"])
        assert conf["basic.auth.user.info"] == f"{wanted['username']}:{registry.password}"
    for work, container in each_container(rendered["default"]):
        given = set(env_of(container))
        for source in container.get("envFrom", []):
            given |= set(
                one(rendered["default"], "ConfigMap", source["configMapRef"]["name"])["data"]
            )
        assert not [n for n in given if n.startswith("ESCALATOR_SCHEMA_REGISTRY")], work["metadata"]


# ---- (c, d) ports and probes -------------------------------------------------------------------


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "livenessProbe", "readinessProbe")
    return {k: container[k]["httpGet"] for k in kinds if k in container}


@pytest.mark.parametrize("values", RENDERS)
def test_ports_are_where_the_processes_listen(
    rendered: dict[str, Any], values: str, tmp_path: Path
) -> None:
    docs = rendered[values]
    for work, container in each_container(docs):
        name = work["metadata"]["name"]
        settings = load_settings(process_env(docs, work, container, tmp_path / name))
        port = listen_port(parse_args(container["args"]), settings)
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        found = probes(container)
        assert {"livenessProbe", "readinessProbe"} <= set(found), name
        for kind, probe in found.items():
            assert port_named(container, probe["port"]) == port, f"{name} {kind}"
    for service in (d for d in docs if d["kind"] == "Service"):
        selected = pods_of(docs, service)
        assert selected, f"Service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            for work in selected:
                (container,) = work["spec"]["template"]["spec"]["containers"]
                port_named(container, port["targetPort"])


def test_service_monitor_scrapes_every_metrics_service(rendered: dict[str, Any]) -> None:
    """The integration test below checks that /metrics answers on these ports."""
    docs = rendered["production"]
    monitor = one(docs, "ServiceMonitor")
    scraped = {e["port"] for e in monitor["spec"]["endpoints"] if e["path"] == "/metrics"}
    labelled = [
        d for d in docs if d["kind"] == "Service" and METRICS_LABEL in d["metadata"]["labels"]
    ]
    assert {s["metadata"]["name"] for s in labelled} >= {
        "escalator-worker-metrics",
        "escalator-ingest",
        "escalator-alerts-metrics",
        "escalator-sink-redis-metrics",
        "escalator-sink-webhook-metrics",
    }
    for service in labelled:
        assert {p["name"] for p in service["spec"]["ports"]} <= scraped, service["metadata"]


def _url_target(docs: list[dict[str, Any]], url: str) -> list[str]:
    """The args of the containers behind an in-cluster URL http://<service>:<port>."""
    host, _, port = url.removeprefix("http://").partition(":")
    service = one(docs, "Service", host)
    (svc_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    (work,) = pods_of(docs, service)
    (container,) = work["spec"]["template"]["spec"]["containers"]
    port_named(container, svc_port["targetPort"])
    return list(container["args"])


@pytest.mark.parametrize("values", ["all-on", "production"])
def test_board_asks_the_worker_and_the_redis_sink(rendered: dict[str, Any], values: str) -> None:
    docs = rendered[values]
    (board,) = one(docs, "Deployment", "escalator-board")["spec"]["template"]["spec"]["containers"]
    args = parse_args(board["args"])
    assert args.host == "0.0.0.0"  # reachable through its Service
    assert _url_target(docs, args.worker_url)[0] == "worker"
    assert _url_target(docs, args.sink_url)[:2] == ["sink", "redis"]


# ---- (e) webhook targets -----------------------------------------------------------------------


def _targets_file(docs: list[dict[str, Any]]) -> str:
    data = one(docs, "ConfigMap", "escalator-sink-webhook-targets")["data"]
    return str(data["webhook-targets.yaml"])


def test_production_targets_parse(rendered: dict[str, Any]) -> None:
    docs = rendered["production"]
    targets = parse_targets(_targets_file(docs), "production")
    values = yaml.safe_load((CHART.parent / "values-production.yaml").read_text("utf-8"))
    assert [t.name for t in targets] == [t["name"] for t in values["sinks"]["webhook"]["targets"]]
    with pytest.raises(TargetsError, match=r"targets\[1\]\.url"):
        parse_targets(_targets_file(docs).replace("https://crm", "ftp://crm"), "broken")


def test_schema_lists_the_fields_and_values_of_the_parser() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text("utf-8"))
    webhook = schema["properties"]["sinks"]["properties"]["webhook"]["properties"]
    target = webhook["targets"]["items"]
    assert set(target["properties"]) == set(Target.model_fields)
    assert set(target["required"]) == {n for n, f in Target.model_fields.items() if f.is_required()}
    props = target["properties"]
    assert props["topics"]["items"]["enum"] == list(TopicName.__args__)
    assert props["kinds"]["items"]["enum"] == [k.value for k in Kind]
    assert props["reasons"]["items"]["enum"] == [r.value for r in Reason]


GOOD = {"name": "ok", "url": "https://hooks.example.invalid/x"}
# Each breaks one rule of connectors/sinks/webhook_targets.py.
INVALID_TARGETS: dict[str, list[dict[str, Any]]] = {
    "name with a space": [{**GOOD, "name": "two words"}],
    "name too long": [{**GOOD, "name": "n" * 64}],
    "not http": [{**GOOD, "url": "ftp://hooks.example.invalid/x"}],
    "no host": [{**GOOD, "url": "https:///x"}],
    "password in url": [{**GOOD, "url": "https://user:pw@hooks.example.invalid/x"}],
    "no topics": [{**GOOD, "topics": []}],
    "unknown topic": [{**GOOD, "topics": ["ops-alerts"]}],
    "negative min_level": [{**GOOD, "min_level": -1}],
    "unknown kind": [{**GOOD, "kinds": ["SIDEWAYS"]}],
    "unknown reason": [{**GOOD, "reasons": ["BORED"]}],
    "zero timeout": [{**GOOD, "timeout_s": 0}],
    "timeout too long": [{**GOOD, "timeout_s": 301}],
    "no attempts": [{**GOOD, "max_attempts": 0}],
    "too many attempts": [{**GOOD, "max_attempts": 101}],
    "cap below base": [{**GOOD, "backoff_base_s": 5, "backoff_cap_s": 1}],
    "cap below default base": [{**GOOD, "backoff_cap_s": 0.25}],
    "default cap below base": [{**GOOD, "backoff_base_s": 120}],
    "no concurrency": [{**GOOD, "concurrency": 0}],
    "unknown field": [{**GOOD, "retries": 3}],
    "missing url": [{"name": "ok"}],
    "same name twice": [GOOD, {**GOOD, "url": "https://other.example.invalid/"}],
}
VALID_TARGETS: dict[str, list[dict[str, Any]]] = {
    "minimal": [GOOD],
    "everything": [
        {
            "name": "all.fields_1",
            "url": "http://user@10.0.0.1:8443/hook?x=1",
            "topics": ["escalations", "priority-bumps"],
            "teams": ["billing"],
            "levels": [1, 2],
            "min_level": 0,
            "kinds": ["HIERARCHICAL", "EXECUTIVE"],
            "reasons": ["SLA_WARNING", "LEGAL_THREAT"],
            "timeout_s": 300,
            "max_attempts": 100,
            "backoff_base_s": 0.1,
            "backoff_cap_s": 3600,
            "concurrency": 256,
        },
        {**GOOD, "name": "second", "backoff_base_s": 60, "backoff_cap_s": 60},
    ],
}


@pytest.mark.parametrize("case", INVALID_TARGETS)
def test_chart_refuses_what_the_sink_refuses(render_error: Any, case: str) -> None:
    targets = INVALID_TARGETS[case]
    with pytest.raises(TargetsError):  # the case is one the sink rejects on start
        parse_targets(yaml.safe_dump({"targets": targets}), case)
    render_error({"sinks": {"webhook": {"enabled": True, "targets": targets}}})


@pytest.mark.parametrize("case", VALID_TARGETS)
def test_targets_the_chart_renders_parse_as_given(render: Any, case: str) -> None:
    targets = VALID_TARGETS[case]
    docs = render({"sinks": {"webhook": {"enabled": True, "targets": targets}}})
    parsed = parse_targets(_targets_file(docs), case)
    expected = parse_targets(yaml.safe_dump({"targets": targets}), case)
    assert parsed == expected
    assert [t.model_dump(exclude_unset=True) for t in parsed] == targets


# ---- the processes, started as the chart starts them -------------------------------------------


def _get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def _start(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> WorkerProcess:
    """One process of the chart, run as its container would run it."""
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProcess(name, proc, log, 0)


def _wait_for(started: WorkerProcess, url: str, deadline: float, ok: Any = None) -> bytes:
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            tail = started.log_text()[-3000:]
            pytest.fail(f"{started.name} exited ({started.proc.returncode}):\n{tail}")
        status, body = _get(url)
        if status == 200 and (ok is None or ok(body)):
            return body
        if status == 404:  # not a path the process serves (not ready is 503)
            pytest.fail(f"{started.name} does not serve {url}: {body[:200]!r}")
        time.sleep(0.5)
    tail = started.log_text()[-3000:]
    pytest.fail(f"{started.name}: {url} not OK in time (last {status}):\n{tail}")


@pytest.mark.integration
@pytest.mark.parametrize("runtime", ["loop", "faust"])
def test_processes_serve_their_probes_and_metrics(
    kafka_bootstrap: str,
    redis_url: str,
    schema_registry: str,
    render: Any,
    tmp_path: Path,
    runtime: str,
) -> None:
    worker_port, ingest_port, alerts_port, redis_port, webhook_port, board_port, nobody = (
        _free_ports(7)
    )
    processing = "exactly_once" if runtime == "loop" else "at_least_once"
    docs = render(
        {
            "processingGuarantee": processing,
            "kafka": {"bootstrap": kafka_bootstrap, "partitions": 2},
            "redis": {"url": redis_url},
            # every Avro schema registered and resolved through the real registry
            "schemaRegistry": {"url": schema_registry},
            "worker": {"webPort": worker_port, "runtime": runtime},
            "ingest": {"port": ingest_port},
            "alerts": {"metricsPort": alerts_port},
            "sinks": {
                "redis": {"metricsPort": redis_port},
                "webhook": {
                    "enabled": True,
                    "metricsPort": webhook_port,
                    "targets": [{"name": "local", "url": f"http://127.0.0.1:{nobody}/hook"}],
                },
            },
            "board": {"enabled": True, "port": board_port},
        }
    )
    assert {w["metadata"]["name"] for w in workloads(docs)} == ALL_WORKLOADS
    prefix = f"chart{uuid.uuid4().hex[:8]}-"
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    escalator = str(Path(sys.executable).parent / "escalator")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    started: dict[str, tuple[WorkerProcess, dict[str, Any]]] = {}
    board_keys = f"escalator:board:{prefix}"
    client = redis.Redis.from_url(redis_url)
    try:
        sts = one(docs, "StatefulSet")
        (worker,) = sts["spec"]["template"]["spec"]["containers"]
        # the worker creates the topics; escalator alerts, started first, needs queue-stats
        ensure_topics(
            load_settings(process_env(docs, sts, worker, tmp_path / "topics")), Topics(prefix)
        )
        for work, container in each_container(docs):
            name = work["metadata"]["name"]
            env = process_env(docs, work, container, tmp_path / "fs" / name)
            args = list(container["args"])
            for service in services:  # in-cluster Service names -> loopback
                args = [a.replace(f"//{service}:", "//127.0.0.1:") for a in args]
            argv = [escalator, *args, "--topic-prefix", prefix]
            started[name] = (_start(name, argv, {**base, **env}, tmp_path), container)
        deadline = time.monotonic() + 240
        for proc, container in started.values():
            for probe in probes(container).values():
                port = port_named(container, probe["port"])
                _wait_for(proc, f"http://127.0.0.1:{port}{probe['path']}", deadline)
        for service in (d for d in docs if d["kind"] == "Service"):
            if service["metadata"]["labels"].get(METRICS_LABEL) != "true":
                continue
            for work in pods_of(docs, service):
                component = work["metadata"]["labels"]["app.kubernetes.io/component"]
                proc, container = started[work["metadata"]["name"]]
                for port in service["spec"]["ports"]:
                    url = f"http://127.0.0.1:{port_named(container, port['targetPort'])}/metrics"
                    text = _wait_for(proc, url, deadline).decode()
                    info = [
                        s.labels
                        for f in text_string_to_metric_families(text)
                        for s in f.samples
                        if s.name == "escalator_build_info"
                    ]
                    assert [i["component"] for i in info] == [component], url
        board, _ = started["escalator-board"]

        def all_up(body: bytes) -> bool:
            health = json.loads(body)["health"]
            return all(health[part]["status"] == "up" for part in ("redis", "sink", "worker"))

        _wait_for(board, f"http://127.0.0.1:{board_port}/api/board", deadline, all_up)
        status, page = _get(f"http://127.0.0.1:{board_port}/")
        assert status == 200 and b"<html" in page.lower()
    finally:
        for proc, _ in started.values():
            proc.stop(timeout=30)
        stale = list(client.scan_iter(match=f"{board_keys}*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()
