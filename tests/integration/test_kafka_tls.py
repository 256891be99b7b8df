"""Kafka over TLS against real private brokers: SSL, and SASL_SSL (PLAIN).

Each broker is started by deploy/local/services with ESCALATOR_KAFKA_TLS_DIR, which makes a
throwaway CA and the broker certificate there, so the shared broker is untouched. The clients
are the ones the components build from load_settings(): confluent-kafka from kafka.confluent(),
the worker's aiokafka clients (`escalator worker`, streams.runtime.worker._credentials),
and the CLI's
start-up check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from streams.runtime.settings import load_settings
from tests.support.brokers import private_broker
from tests.support.cli import assert_one_line_error, cli
from tests.support.secure import (
    make_tls_files,
    round_trip,
    sasl_env,
    sasl_users,
    undelivered_errors,
    worker_escalates,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ssl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A private broker whose only client listener is SSL; (bootstrap, the CA file clients
    trust), the CA made by deploy/local/services."""
    tmp = tmp_path_factory.mktemp("ssl-broker")
    with private_broker(tmp, ESCALATOR_KAFKA_TLS_DIR=str(tmp / "tls")) as bootstrap:
        yield bootstrap, tmp / "tls" / "ca.pem"


def ssl_env(bootstrap: str, **more: str) -> dict[str, str]:
    return {
        "ESCALATOR_KAFKA_BOOTSTRAP": bootstrap,
        "ESCALATOR_KAFKA_SECURITY_PROTOCOL": "SSL",
        **more,
    }


def test_ssl_with_the_ca_file_round_trips_a_record(ssl_broker: tuple[str, Path]) -> None:
    bootstrap, ca = ssl_broker
    round_trip(
        load_settings(ssl_env(bootstrap, ESCALATOR_KAFKA_SSL_CA_FILE=str(ca))).kafka.confluent()
    )


def test_another_ca_fails_on_the_certificate_and_is_reported_in_one_line(
    ssl_broker: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, _ = ssl_broker
    other_ca = make_tls_files(tmp_path)["ca"]
    events = tmp_path / "events.jsonl"
    events.write_text("")
    # A CA that did not sign the broker's certificate, and the system's trust only.
    for env in (ssl_env(bootstrap, ESCALATOR_KAFKA_SSL_CA_FILE=str(other_ca)),
                ssl_env(bootstrap)):  # fmt: skip
        errors = undelivered_errors(load_settings(env).kafka.confluent())
        tls = [e for e in errors if e.code() == KafkaError._SSL]
        assert tls and "certificate verify failed" in tls[0].str(), errors
        for command in (["replay", str(events)], ["worker", "--topic-prefix", "tls-"]):
            assert_one_line_error(
                cli(command, env),
                f"Kafka at {bootstrap}: TLS failed (certificate verify failed",
                "check ESCALATOR_KAFKA_SSL_CA_FILE",
            )  # fmt: skip


def test_worker_connects_over_ssl(ssl_broker: tuple[str, Path], tmp_path: Path) -> None:
    bootstrap, ca = ssl_broker
    worker_escalates(tmp_path, ssl_env(bootstrap, ESCALATOR_KAFKA_SSL_CA_FILE=str(ca)))


def test_worker_logs_in_over_sasl_ssl(tmp_path: Path) -> None:
    users, password = sasl_users(tmp_path)
    tls = tmp_path / "tls"
    with private_broker(
        tmp_path, ESCALATOR_KAFKA_TLS_DIR=str(tls), ESCALATOR_KAFKA_SASL_PLAIN_USERS=users
    ) as bootstrap:
        env = sasl_env(
            bootstrap, "SASL_SSL", ESCALATOR_KAFKA_SASL_PASSWORD_FILE=str(password),
            ESCALATOR_KAFKA_SSL_CA_FILE=str(tls / "ca.pem"),
        )  # fmt: skip
        worker_escalates(tmp_path / "pipeline", env)  # its reader is confluent-kafka, SASL_SSL
