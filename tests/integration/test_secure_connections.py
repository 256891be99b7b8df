"""Redis password and TLS, and Kafka SASL/PLAIN, against real private servers (issue #5 item 5).

Each test starts its own redis-server (password or TLS only) or broker (SASL_PLAINTEXT only,
via deploy/local/services), so the shared ones are untouched. The clients are the ones the
components build from load_settings(): the board writer and reader (sink and board page, sync
client), the ingest enricher (asyncio client), confluent-kafka from kafka.confluent(), the
worker's aiokafka clients (`escalator worker`), and the CLI's start-up checks. Kafka over TLS:
test_kafka_tls.py, with the helpers here.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaError

from connectors.sinks.board_store import BoardKeys, BoardReader, BoardWriter, Update
from connectors.sources.enrichment import Breaker, Enricher
from streams.runtime.settings import Settings, load_settings
from streams.sla.board import BoardEntry, BoardRecord, BoardView
from streams.sla.events import EventType, TicketEvent
from streams.tools.demo import free_port
from tests.support.brokers import private_broker
from tests.support.cli import assert_one_line_error, cli
from tests.support.pipeline import RUNTIMES
from tests.support.secure import (
    make_tls_files,
    round_trip,
    sasl_env,
    sasl_users,
    undelivered_errors,
    worker_escalates,
)

pytestmark = pytest.mark.integration

READY = "Ready to accept connections"

StartRedis = Callable[..., int]


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[StartRedis]:
    """Starts private redis-servers with extra arguments; returns the port; stops them after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, tls: bool = False) -> int:
        port = free_port()
        where = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
        log = tmp_path / f"redis-{port}.log"
        proc = subprocess.Popen(
            ["redis-server", *where, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path), "--logfile", str(log), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 20
        while READY not in (log.read_text(errors="replace") if log.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise AssertionError(f"redis-server {args} did not start:\n{text[-2000:]}")
            time.sleep(0.05)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(secrets.token_urlsafe(24) + "\n")  # trailing newline, as in mounted Secrets
    return path


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    return make_tls_files(tmp_path)


def start_tls_redis(start_redis: StartRedis, tls: dict[str, Path]) -> int:
    return start_redis(
        "--tls-cert-file", str(tls["server"]), "--tls-key-file", str(tls["key"]),
        "--tls-ca-cert-file", str(tls["ca"]), "--tls-auth-clients", "no", tls=True,
    )  # fmt: skip


def board_round_trip(settings: Settings) -> None:
    """The Redis sink's writer and the board page's reader, through the configured client."""
    client = settings.redis.client(decode_responses=True)
    keys = BoardKeys.from_settings(settings, "secure-")
    try:
        entry = BoardEntry("T-1", "e1", "HIERARCHICAL", 2, "support-manager",
                           "FIRST_RESPONSE_BREACH", "sla:first_response:breach", 1_000, 1_000,
                           1, None, None)  # fmt: skip
        record = BoardRecord(BoardView("T-1", False, entry, None))
        assert (
            BoardWriter(client, keys).apply([Update("ticket-board", 0, 0, "T-1", record)]).added
            == 1
        )
        entries = BoardReader(client, keys).entries()
        assert list(entries) == ["T-1"]
        assert entries["T-1"].target == "support-manager" and entries["T-1"].level == 2
    finally:
        client.close()


async def enrichment_works(settings: Settings) -> None:
    """The ingest enricher, through the configured asyncio client."""
    with settings.redis.client() as sync:
        profile = {"tier": "vip", "lifetime_value": "18250.00", "churn_score": "0.8"}
        sync.hset("customer:C42", mapping=profile)
    client = settings.redis.async_client()
    try:
        enricher = Enricher(client, settings.connectors.enrich_key_pattern, Breaker(2.0, 5.0))
        event = TicketEvent("ev-1", "T-1", EventType.CREATED, 1_000, customer_id="C42")
        (enriched,) = await enricher.enrich([event])
    finally:
        await client.aclose()
    assert enriched.customer_tier == "vip"
    assert enriched.attributes == {"customer_ltv": "18250.00", "churn_score": "0.8"}


# Every command that uses Redis checks it at start-up, before it needs Kafka or a port.
REDIS_COMMANDS = [
    ["board", "--host", "127.0.0.1", "--port", "0"],
    ["sink", "redis", "--topic-prefix", "secure-"],
    ["ingest", "--insecure-no-auth", "--host", "127.0.0.1", "--port", "0"],
]


async def test_password_from_file_authenticates_board_and_enrichment(
    start_redis: StartRedis, password_file: Path
) -> None:
    port = start_redis("--requirepass", password_file.read_text().strip())
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(redis.AuthenticationError):
        load_settings({"ESCALATOR_REDIS_URL": url}).redis.client().ping()  # the password counts
    settings = load_settings(
        {"ESCALATOR_REDIS_URL": url, "ESCALATOR_REDIS_PASSWORD_FILE": str(password_file)}
    )
    with settings.redis.client() as client:
        assert client.ping() is True
    board_round_trip(settings)
    await enrichment_works(settings)


@pytest.mark.parametrize("command", REDIS_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_wrong_or_missing_password_stops_start_up_with_one_line(
    start_redis: StartRedis, password_file: Path, tmp_path: Path, command: list[str]
) -> None:
    port = start_redis("--requirepass", password_file.read_text().strip())
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    url = f"redis://127.0.0.1:{port}/0"
    rejected = cli(
        command, {"ESCALATOR_REDIS_URL": url, "ESCALATOR_REDIS_PASSWORD_FILE": str(wrong)}
    )
    assert_one_line_error(
        rejected, f"Redis at 127.0.0.1:{port}/0 rejected the password",
        "invalid username-password pair", "check ESCALATOR_REDIS_PASSWORD",
    )  # fmt: skip
    missing = cli(command, {"ESCALATOR_REDIS_URL": url})
    assert_one_line_error(missing, "requires a password; set ESCALATOR_REDIS_PASSWORD")


async def test_tls_with_the_ca_file_serves_board_and_enrichment(
    start_redis: StartRedis, tls_files: dict[str, Path]
) -> None:
    port = start_tls_redis(start_redis, tls_files)
    url = f"rediss://127.0.0.1:{port}/0"
    with pytest.raises(redis.ConnectionError):  # plain text to a TLS-only port gets nowhere
        load_settings({"ESCALATOR_REDIS_URL": url.replace("rediss", "redis")}).redis.client(
            socket_timeout=0.5
        ).ping()
    settings = load_settings(
        {"ESCALATOR_REDIS_URL": url, "ESCALATOR_REDIS_SSL_CA_FILE": str(tls_files["ca"])}
    )
    with settings.redis.client() as client:
        assert client.ping() is True
    board_round_trip(settings)
    await enrichment_works(settings)


def test_tls_without_the_ca_fails_on_the_certificate(
    start_redis: StartRedis, tls_files: dict[str, Path]
) -> None:
    port = start_tls_redis(start_redis, tls_files)
    env = {"ESCALATOR_REDIS_URL": f"rediss://127.0.0.1:{port}/0"}  # system trust only
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        load_settings(env).redis.client().ping()
    for command in REDIS_COMMANDS:
        assert_one_line_error(
            cli(command, env), f"Redis at 127.0.0.1:{port}/0: TLS failed",
            "certificate verify failed", "ESCALATOR_REDIS_SSL_CA_FILE",
        )  # fmt: skip


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A private broker whose only client listener is SASL_PLAINTEXT/PLAIN; (bootstrap, the
    password file of its user "alice")."""
    tmp = tmp_path_factory.mktemp("sasl-broker")
    users, password = sasl_users(tmp)
    with private_broker(tmp, ESCALATOR_KAFKA_SASL_PLAIN_USERS=users) as bootstrap:
        yield bootstrap, password


def test_sasl_plain_login_round_trips_a_record(sasl_broker: tuple[str, Path]) -> None:
    bootstrap, password = sasl_broker
    env = sasl_env(bootstrap, ESCALATOR_KAFKA_SASL_PASSWORD_FILE=str(password))
    round_trip(load_settings(env).kafka.confluent())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_worker_logs_in_with_sasl_plain(
    sasl_broker: tuple[str, Path], tmp_path: Path, runtime: str
) -> None:
    bootstrap, password = sasl_broker
    worker_escalates(
        tmp_path, sasl_env(bootstrap, ESCALATOR_KAFKA_SASL_PASSWORD_FILE=str(password)), runtime
    )


def test_wrong_sasl_password_is_rejected_and_reported_in_one_line(
    sasl_broker: tuple[str, Path],
) -> None:
    bootstrap, _ = sasl_broker
    env = sasl_env(bootstrap, ESCALATOR_KAFKA_SASL_PASSWORD="not-the-password")
    errors = undelivered_errors(load_settings(env).kafka.confluent())
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    # Redis refuses connections here: the start-up check leaves that to the sink's retries.
    env["ESCALATOR_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    assert_one_line_error(
        cli(["sink", "redis", "--topic-prefix", "secure-"], env),
        f"Kafka at {bootstrap} rejected the login", "Invalid username or password",
        "check ESCALATOR_KAFKA_SASL_USERNAME and ESCALATOR_KAFKA_SASL_PASSWORD",
    )  # fmt: skip
