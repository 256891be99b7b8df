"""Start-up checks: stop with one line when Kafka, Redis or the schema registry is wrong.

Configuration mistakes that waiting does not fix (a wrong password, a certificate, a missing
topic setting) end start-up here, before any component connects for real.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from streams.cli.errors import UserError
from streams.runtime import kafka_config
from streams.runtime.settings import Settings, redact_url

if TYPE_CHECKING:
    from streams.runtime.topics import Topics


def kafka_reachable(settings: Settings) -> None:
    """Stop start-up when Kafka does not answer within 10 s, or as soon as it rejects the
    login or the TLS handshake fails (mistakes that waiting does not fix)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []  # librdkafka's own log lines would bury the one-line error
    admin = AdminClient(kafka_config.admin(settings, log_level=0, error_cb=errors.append))
    fatal = (KafkaError._AUTHENTICATION, KafkaError._SSL)
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.list_topics(timeout=1)
            return
        except Exception as failure:
            admin.poll(0)  # serves error_cb
            exc = failure
        if time.monotonic() >= deadline or any(e.code() in fatal for e in errors):
            break
    rejected = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if rejected:
        raise UserError(
            f"Kafka at {redact_url(settings.kafka.bootstrap)} rejected the login "
            f"({rejected[0].str().rpartition(': ')[2]}); check "
            "ESCALATOR_KAFKA_SASL_USERNAME and ESCALATOR_KAFKA_SASL_PASSWORD(_FILE)"
        ) from None
    tls = [e for e in errors if e.code() == KafkaError._SSL]
    if tls:  # e.g. "ssl://h:p/bootstrap: SSL handshake failed: error:0A000086:SSL
        # routines::certificate verify failed: broker certificate could not be verified,
        # verify that ... (after 7ms in state SSL_HANDSHAKE)"
        reason = tls[0].str().partition("SSL handshake failed: ")[2] or tls[0].str()
        reason = reason.rpartition("SSL routines::")[2].split(", ")[0].split(" (after ")[0]
        raise UserError(
            f"Kafka at {redact_url(settings.kafka.bootstrap)}: TLS failed ({reason}); check "
            "ESCALATOR_KAFKA_SSL_CA_FILE and ESCALATOR_KAFKA_SECURITY_PROTOCOL"
        ) from None
    raise UserError(
        f"cannot reach Kafka at {redact_url(settings.kafka.bootstrap)} ({exc}); start it with "
        "'deploy/local/services up' or set ESCALATOR_KAFKA_BOOTSTRAP"
    ) from None


def redis_accepts(settings: Settings) -> None:
    """Stop start-up when Redis rejects the password or its certificate: configuration
    mistakes that retrying cannot fix. An unreachable Redis is left to the component's retries."""
    import ssl

    import redis

    where = settings.redis.url.rpartition("@")[2].rpartition("//")[2]  # no credentials
    client = settings.redis.client()
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        given = settings.redis.password or "@" in settings.redis.url
        problem = f"rejected the password ({exc}); check" if given else "requires a password; set"
        raise UserError(
            f"Redis at {where} {problem} ESCALATOR_REDIS_PASSWORD or ESCALATOR_REDIS_PASSWORD_FILE"
        ) from None
    except redis.RedisError as exc:  # down or slow: not a start-up error, unless it is TLS
        cause = exc.__context__
        if isinstance(cause, ssl.SSLError):
            detail = getattr(cause, "verify_message", None)
            raise UserError(
                f"Redis at {where}: TLS failed ("
                f"{f'certificate verify failed: {detail}' if detail else cause}); "
                "check ESCALATOR_REDIS_SSL_CA_FILE and the rediss:// URL"
            ) from None
    finally:
        client.close()


def registry_answers(settings: Settings) -> None:
    """Stop start-up when a schema registry is configured but does not answer (or refuses the
    credentials): every component that reads or writes Avro needs it for unknown ids."""
    url = settings.schema_registry_url
    if not url:
        return
    from schemas.codec import RegistryClient, RegistryError

    registry = RegistryClient(settings.schema_registry.client_conf(url))
    try:
        registry.call("list subjects", registry.client.get_subjects)
    except RegistryError as exc:
        raise UserError(f"{exc}; check ESCALATOR_SCHEMA_REGISTRY_URL") from None


def pipeline_topics(settings: Settings, prefix: str, compacted: Iterable[str] = ()) -> Topics:
    """Check Kafka and the schema registry answer and the pipeline topics exist with the
    configured partitions; `compacted`: more topics to ensure, keeping the last record per key
    (a changelog)."""
    import streams.runtime.topics

    kafka_reachable(settings)
    registry_answers(settings)
    topics = streams.runtime.topics.Topics(prefix)
    try:
        streams.runtime.topics.ensure_topics(settings, topics)
        if compacted:
            streams.runtime.topics.ensure_topics(settings, topics, compacted, compact=True)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return topics
