"""Shared fixtures: real Kafka, Redis and a schema registry on loopback, brought up lazily by
deploy/local/services.

- ``kafka_bootstrap`` / ``redis_url`` / ``schema_registry`` (session): start the service once via
  ``deploy/local/services up <svc>`` unless ESCALATOR_KAFKA_BOOTSTRAP / ESCALATOR_REDIS_URL /
  ESCALATOR_SCHEMA_REGISTRY_URL are set (then those are reused). ``schema_registry`` is the
  base URL of the registry's Confluent-compatible API (Apicurio Registry, in memory). A service
  this session started is stopped at the end; one that was already running is left alone. If a
  service cannot be started the test errors (never skips). Under pytest-xdist (scripts/test
  runs ``-n 2``) the workers start a service one at a time under a file lock and the
  controller stops it once every worker is done, so no worker loses a broker it still uses.
- ``topic_name`` (function): factory of unique topic names.
- ``create_topics`` / :func:`create_topic`: create topics with N partitions via AdminClient.

Unit tests that use none of these fixtures start nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.compiled import compiled_module_names

REPO_DIR = Path(__file__).resolve().parent.parent
SERVICES = REPO_DIR / "deploy" / "local" / "services"
STATE_DIR = Path(os.environ.get("ESCALATOR_LOCAL_DIR") or REPO_DIR / "var" / "local")


def pinned_kafka_version() -> str:
    """The Kafka version pinned in deploy/local/services (or ESCALATOR_KAFKA_VERSION)."""
    if os.environ.get("ESCALATOR_KAFKA_VERSION"):
        return os.environ["ESCALATOR_KAFKA_VERSION"]
    for line in SERVICES.read_text().splitlines():
        if line.startswith("PINNED_KAFKA_VERSION="):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"no PINNED_KAFKA_VERSION in {SERVICES}")


def read_info(service: str) -> dict[str, str]:
    """Key/values written by `services up` into <state dir>/<service>/info.env."""
    path = STATE_DIR / service / "info.env"
    if not path.exists():
        return {}
    info: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip()
    return info


@dataclass
class ServiceInfo:
    name: str
    address: str
    external: bool
    started_here: bool
    version: str | None = None
    startup: str = ""  # e.g. "started in 7.5 s", "already running", "external, checked in 0.3 s"
    output: str = ""
    stopped: bool = False


@dataclass
class _Registry:
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


_REGISTRY = _Registry()


def _run_services(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SERVICES), *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


@contextlib.contextmanager
def _one_at_a_time(service: str) -> Iterator[None]:
    """Parallel test processes start a service in turn: the second finds it running."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / f".{service}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _bring_up(service: str, env_var: str) -> ServiceInfo:
    with _one_at_a_time(service):
        return _bring_up_unlocked(service, env_var)


def _bring_up_unlocked(service: str, env_var: str) -> ServiceInfo:
    external = os.environ.get(env_var)
    was_running = False
    if not external:
        was_running = _run_services("status", service).returncode == 0
    t0 = time.monotonic()
    try:
        proc = _run_services("up", service)
    except subprocess.TimeoutExpired as exc:
        _REGISTRY.failures[service] = f"`services up {service}` did not finish in {exc.timeout} s"
        pytest.fail(f"`{SERVICES} up {service}` did not finish in {exc.timeout} s", pytrace=False)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        _REGISTRY.failures[service] = (
            output.splitlines()[-1] if output else f"exit {proc.returncode}"
        )
        pytest.fail(
            f"could not start {service} (`deploy/local/services up {service}` exited "
            f"{proc.returncode}):\n{output}",
            pytrace=False,
        )
    data = read_info(service)
    key = service.upper()
    if external:
        info = ServiceInfo(service, external, external=True, started_here=False, output=output)
        info.startup = f"external, checked in {time.monotonic() - t0:.1f} s"
        # An external broker does not report its version over the wire; if deploy/local/services
        # started it with this state dir (ESCALATOR_LOCAL_DIR), its info file says which it is.
        if data.get(f"{key}_BOOTSTRAP", data.get(f"{key}_URL")) == external:
            info.version = data.get(f"{key}_VERSION")
        elif service == "redis":
            import redis

            client = redis.Redis.from_url(external, socket_timeout=5)
            info.version = str(client.info("server").get("redis_version"))
            client.close()
        return info
    address = data.get(f"{key}_BOOTSTRAP") or data.get(f"{key}_URL")
    if not address:
        pytest.fail(f"`services up {service}` succeeded but wrote no address:\n{output}")
    return ServiceInfo(
        service,
        address,
        external=False,
        started_here=not was_running,
        version=data.get(f"{key}_VERSION"),
        startup="already running, reused"
        if was_running
        else f"started in {data.get(f'{key}_STARTUP_SECONDS', '?')} s",
        output=output,
    )


def _service_fixture(service: str, env_var: str) -> Iterator[ServiceInfo]:
    info = _bring_up(service, env_var)
    _REGISTRY.services[service] = info
    try:
        yield info
    finally:
        if not _xdist_worker():  # an xdist worker leaves the stop to the controller
            _stop(info)


def _stop(info: ServiceInfo) -> None:
    if info.started_here and not info.stopped:
        _run_services("down", info.name, timeout=120)
        info.stopped = True


@pytest.fixture(scope="session")
def pinned_kafka() -> str:
    return pinned_kafka_version()


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[ServiceInfo]:
    yield from _service_fixture("kafka", "ESCALATOR_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def redis_service() -> Iterator[ServiceInfo]:
    yield from _service_fixture("redis", "ESCALATOR_REDIS_URL")


@pytest.fixture(scope="session")
def registry_service() -> Iterator[ServiceInfo]:
    yield from _service_fixture("registry", "ESCALATOR_SCHEMA_REGISTRY_URL")


@pytest.fixture(scope="session")
def schema_registry(registry_service: ServiceInfo) -> str:
    """Base URL of the registry's Confluent-compatible API, for ESCALATOR_SCHEMA_REGISTRY_URL."""
    return registry_service.address


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: ServiceInfo) -> str:
    return kafka_service.address


@pytest.fixture(scope="session")
def redis_url(redis_service: ServiceInfo) -> str:
    return redis_service.address


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory: ``topic_name("events")`` -> ``"test-events-<test>-<uuid>"``, unique per call."""
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")

    def make(prefix: str = "t") -> str:
        return f"test-{prefix}-{test}-{uuid.uuid4().hex[:12]}"

    return make


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> str:
    """Create ``name`` with ``partitions`` partitions (replication factor 1); wait until done."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return name
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not visible with {partitions} partitions after {timeout} s")


@pytest.fixture
def create_topics(kafka_bootstrap: str) -> Callable[..., str]:
    """``create_topics(name, partitions=3)`` against the session broker."""

    def make(name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        return create_topic(kafka_bootstrap, name, partitions, config)

    return make


def _describe(info: ServiceInfo) -> str:
    if info.name == "kafka":
        what = f"Apache Kafka {info.version}" if info.version else "Kafka (version unknown)"
    elif info.name == "registry":
        what = f"Apicurio Registry {info.version}" if info.version else "schema registry"
    else:
        what = f"Redis {info.version}" if info.version else "Redis (version unknown)"
    return f"{what} at {info.address} ({info.startup})"


def pytest_configure(config: pytest.Config) -> None:
    """ESCALATOR_EXPECT_COMPILED=1 (scripts/test, in the copy scripts/compile-engine builds):
    stop at once unless every module of pyproject's compiled-modules is the compiled one, so
    that run can never quietly test the plain Python again."""
    if not os.environ.get("ESCALATOR_EXPECT_COMPILED"):
        return
    plain = [
        name
        for name in compiled_module_names()
        if str(importlib.import_module(name).__file__).endswith(".py")
    ]
    if plain:
        raise pytest.UsageError(
            f"ESCALATOR_EXPECT_COMPILED is set but {', '.join(plain)} imported as plain Python"
            f" (from {REPO_DIR}); build with scripts/compile-engine and run pytest there"
        )


def pytest_report_header(config: pytest.Config) -> str | None:
    if os.environ.get("ESCALATOR_EXPECT_COMPILED"):
        return f"engine: compiled with mypyc: {', '.join(compiled_module_names())}"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    services = _REGISTRY.services
    for name, reason in _REGISTRY.failures.items():
        terminalreporter.write_line(f"services: {name} FAILED to start: {reason}", red=True)
    if not services and not _REGISTRY.failures:
        terminalreporter.write_line("services: none used (no integration test ran)")
        return
    for name in ("kafka", "redis", "registry"):
        if name in services:
            terminalreporter.write_line(f"services: {_describe(services[name])}")
            for line in services[name].output.splitlines():
                terminalreporter.write_line(f"  | {line}")


_SKIPPED_INTEGRATION: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure (xfail) ran; pytest reports it as skipped, but it is not.
    if report.skipped and "integration" in report.keywords and not hasattr(report, "wasxfail"):
        _SKIPPED_INTEGRATION.append(report.nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: take in what a worker started, to report it and stop it at the end."""
    output = getattr(node, "workeroutput", {})
    for data in output.get("escalator_services", []):
        info = ServiceInfo(**data)
        known = _REGISTRY.services.get(info.name)
        if known is None or (info.started_here and not known.started_here):
            _REGISTRY.services[info.name] = info
    _REGISTRY.failures.update(output.get("escalator_service_failures", {}))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped integration test is a test that did not run: in CI that fails the run."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker hands its services to the controller
        workeroutput["escalator_services"] = [
            dataclasses.asdict(info) for info in _REGISTRY.services.values()
        ]
        workeroutput["escalator_service_failures"] = dict(_REGISTRY.failures)
    else:
        for info in _REGISTRY.services.values():
            _stop(info)
    if _SKIPPED_INTEGRATION and os.environ.get("CI"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: {len(_SKIPPED_INTEGRATION)} integration test(s) skipped in CI: "
                + ", ".join(_SKIPPED_INTEGRATION),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
