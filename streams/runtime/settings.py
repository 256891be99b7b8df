"""Process configuration from environment variables, shared by worker, ingest and sinks.

Every variable is named ESCALATOR_*; a wrong value stops start-up with one line
naming the variable, never a traceback. Secrets may be given directly or as a
path in the matching *_FILE variable (how Kubernetes mounts Secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GUARANTEES = ("exactly_once", "at_least_once")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SUBJECT_STRATEGIES = ("TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy")


class ConfigError(ValueError):
    """A configuration mistake, reported as one line naming the variable."""


def _tls_conf(ca: str | None, cert: str | None, key: str | None) -> dict[str, str]:
    """The TLS files in the setting names librdkafka and SchemaRegistryClient share."""
    names = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location")
    return {name: path for name, path in zip(names, (ca, cert, key), strict=True) if path}


def redact_url(url: str) -> str:
    """`url` with the password of its user-info replaced by `***`, for log lines and errors:
    redis://:pw@h:6379/0 -> redis://:***@h:6379/0. Also takes host:port lists (Kafka)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")  # a password may hold '@' or '/'
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None

    def confluent(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) client settings."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password
        conf.update(_tls_conf(self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file))
        return conf


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:16379/0"
    password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    timeout_s: float = 2.0

    def client(self, **overrides: Any) -> Any:
        """A redis-py client (password and TLS from these settings; rediss:// turns TLS on)."""
        import redis

        return redis.Redis.from_url(self.url, **self._client_kwargs(overrides))

    def async_client(self, **overrides: Any) -> Any:
        """The same as a redis.asyncio client, for code on an event loop (ingest)."""
        import redis.asyncio

        return redis.asyncio.Redis.from_url(self.url, **self._client_kwargs(overrides))

    def _client_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
        }
        if self.password:
            kwargs["password"] = self.password
        if self.ssl_ca_file:
            kwargs["ssl_ca_certs"] = self.ssl_ca_file
        kwargs.update(overrides)
        return kwargs


@dataclass(frozen=True)
class RegistrySettings:
    """How the schema registry (at ``Settings.schema_registry_url``) is reached and named:
    confluent-kafka's SchemaRegistryClient settings and the subject naming strategy."""

    subject_strategy: str = "TopicNameStrategy"
    auto_register: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    timeout_s: int = 10

    def client_conf(self, url: str) -> dict[str, Any]:
        """``SchemaRegistryClient`` settings for ``url``."""
        conf: dict[str, Any] = {"url": url, "timeout": self.timeout_s}
        if self.username:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password or ''}"
        conf.update(_tls_conf(self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file))
        return conf


@dataclass(frozen=True)
class ConnectorSettings:
    """Ingest, enrichment, the Redis board and webhook sinks."""

    ingest_host: str = "0.0.0.0"
    ingest_port: int = 8080
    ingest_token: str | None = field(default=None, repr=False)
    ingest_tokens_file: str | None = None  # per-source tokens (connectors.sources.ingest_access)
    ingest_rate_limit: int = 50  # requests a second per client; 0: no limit
    ingest_rate_burst: int = 200
    ingest_batch_max_items: int = 10_000
    zendesk_webhook_secret: str | None = field(default=None, repr=False)
    zendesk_signature_window_s: int = 300
    ingest_max_bytes: int = 1_000_000
    ingest_batch_max_bytes: int = 16_000_000
    ingest_delivery_timeout_ms: int = 5000
    ingest_tags_prefix: str = "escalator:tags:"
    ingest_tags_ttl_seconds: int = 30 * 86_400
    enrich_key_pattern: str = "customer:{customer_id}"
    enrich_cache_seconds: float = 30.0
    enrich_timeout_ms: int = 100
    enrich_retry_seconds: int = 5
    board_prefix: str = "escalator:board:"
    board_stream_maxlen: int = 10_000
    webhook_targets_file: str | None = None
    webhook_signing_key: str | None = field(default=None, repr=False)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108


@dataclass(frozen=True)
class Settings:
    app_id: str = "escalator"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    connectors: ConnectorSettings = field(default_factory=ConnectorSettings)
    store: str = "rocksdb://"
    data_dir: Path = Path("var/worker")
    partitions: int = 6
    replication: int = 1
    processing_guarantee: str = "exactly_once"
    policy_file: str | None = None
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    liveness_stall_s: int = 60  # /healthz fails when the worker's loop is still this long
    liveness_restore_s: int = 3600  # ... or this long while it restores state
    schema_registry_url: str | None = None
    schema_registry: RegistrySettings = field(default_factory=RegistrySettings)
    tick_ms: int = 100
    # A due escalation is readable after a tick (tick_ms) and the commit after it: 100 ms
    # keeps p99 from deadline to readable near 0.3 s under 5,000 events/s (200 ms: 0.6-1.4 s),
    # at the same throughput (bench/pipeline.py --latency-under-load).
    commit_interval_ms: int = 100
    # The worker's records wait this long to share a produce request; under exactly-once it
    # costs no latency, since a commit sends what waits at once.
    producer_linger_ms: int = 20
    session_timeout_ms: int = 10_000
    max_event_bytes: int = 1_000_000
    # A wall-clock worker (and ingest) refuses events stamped further ahead of its clock.
    max_clock_skew_ms: int = 300_000
    # A ticket's state or output record larger than this goes to the DLQ, not to Kafka
    # (stay under the topics' max.message.bytes, 1 MiB by default).
    max_record_bytes: int = 1_000_000
    metrics_enabled: bool = True
    # Names this worker's transactional producer; the StatefulSet pod name in Kubernetes.
    # Empty: host name and data dir (streams.runtime.kafka_config.transactional_id).
    instance_id: str = ""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value}: must be between {low} and {high}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(allowed)}")
    return value


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """NAME, or the content of the file named by NAME_FILE."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={path}: cannot read ({exc.strerror})") from None


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name)
    if path and not Path(path).is_file():
        raise ConfigError(f"{name}={path}: no such file")
    return path or None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    protocol = _choice(env, "ESCALATOR_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", PROTOCOLS)
    mechanism = env.get("ESCALATOR_KAFKA_SASL_MECHANISM") or None
    if protocol.startswith("SASL"):
        mechanism = _choice(env, "ESCALATOR_KAFKA_SASL_MECHANISM", "PLAIN", SASL_MECHANISMS)
        if not env.get("ESCALATOR_KAFKA_SASL_USERNAME"):
            raise ConfigError(
                f"ESCALATOR_KAFKA_SECURITY_PROTOCOL={protocol} needs ESCALATOR_KAFKA_SASL_USERNAME"
            )
        if not _secret(env, "ESCALATOR_KAFKA_SASL_PASSWORD"):
            raise ConfigError(
                f"ESCALATOR_KAFKA_SECURITY_PROTOCOL={protocol} needs ESCALATOR_KAFKA_SASL_PASSWORD"
                " or ESCALATOR_KAFKA_SASL_PASSWORD_FILE"
            )
    kafka = KafkaSettings(
        bootstrap=env.get("ESCALATOR_KAFKA_BOOTSTRAP") or KafkaSettings.bootstrap,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=env.get("ESCALATOR_KAFKA_SASL_USERNAME") or None,
        sasl_password=_secret(env, "ESCALATOR_KAFKA_SASL_PASSWORD"),
        ssl_ca_file=_file(env, "ESCALATOR_KAFKA_SSL_CA_FILE"),
        ssl_cert_file=_file(env, "ESCALATOR_KAFKA_SSL_CERT_FILE"),
        ssl_key_file=_file(env, "ESCALATOR_KAFKA_SSL_KEY_FILE"),
    )
    redis = RedisSettings(
        url=env.get("ESCALATOR_REDIS_URL") or RedisSettings.url,
        password=_secret(env, "ESCALATOR_REDIS_PASSWORD"),
        ssl_ca_file=_file(env, "ESCALATOR_REDIS_SSL_CA_FILE"),
    )
    if not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"ESCALATOR_REDIS_URL={redact_url(redis.url)!r}: must start with redis://, rediss://"
        )
    pattern = env.get("ESCALATOR_ENRICH_KEY_PATTERN") or ConnectorSettings.enrich_key_pattern
    if "{customer_id}" not in pattern:
        raise ConfigError(f"ESCALATOR_ENRICH_KEY_PATTERN={pattern!r}: must contain {{customer_id}}")
    connectors = ConnectorSettings(
        ingest_host=env.get("ESCALATOR_INGEST_HOST") or ConnectorSettings.ingest_host,
        ingest_port=_int(env, "ESCALATOR_INGEST_PORT", ConnectorSettings.ingest_port, 1, 65535),
        ingest_token=_secret(env, "ESCALATOR_INGEST_TOKEN"),
        ingest_tokens_file=_file(env, "ESCALATOR_INGEST_TOKENS_FILE"),
        ingest_rate_limit=_int(env, "ESCALATOR_INGEST_RATE_LIMIT", 50, 0, 1_000_000),
        ingest_rate_burst=_int(env, "ESCALATOR_INGEST_RATE_BURST", 200, 1, 10_000_000),
        ingest_batch_max_items=_int(env, "ESCALATOR_INGEST_BATCH_MAX_ITEMS", 10_000, 1, 1_000_000),
        zendesk_webhook_secret=_secret(env, "ESCALATOR_ZENDESK_WEBHOOK_SECRET"),
        zendesk_signature_window_s=_int(
            env, "ESCALATOR_ZENDESK_SIGNATURE_WINDOW_S", 300, 1, 86_400
        ),
        ingest_max_bytes=_int(
            env, "ESCALATOR_INGEST_MAX_BYTES", ConnectorSettings.ingest_max_bytes, 1024, 64_000_000
        ),
        ingest_batch_max_bytes=_int(
            env, "ESCALATOR_INGEST_BATCH_MAX_BYTES", 16_000_000, 1024, 1_000_000_000
        ),
        ingest_delivery_timeout_ms=_int(
            env, "ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS", 5000, 500, 300_000
        ),
        ingest_tags_prefix=env.get("ESCALATOR_INGEST_TAGS_PREFIX")
        or ConnectorSettings.ingest_tags_prefix,
        ingest_tags_ttl_seconds=_int(
            env, "ESCALATOR_INGEST_TAGS_TTL_SECONDS", 30 * 86_400, 60, 3650 * 86_400
        ),
        enrich_key_pattern=pattern,
        enrich_cache_seconds=_int(env, "ESCALATOR_ENRICH_CACHE_SECONDS", 30, 0, 86_400),
        enrich_timeout_ms=_int(env, "ESCALATOR_ENRICH_TIMEOUT_MS", 100, 1, 10_000),
        enrich_retry_seconds=_int(env, "ESCALATOR_ENRICH_RETRY_SECONDS", 5, 1, 3600),
        board_prefix=env.get("ESCALATOR_BOARD_PREFIX") or ConnectorSettings.board_prefix,
        board_stream_maxlen=_int(
            env,
            "ESCALATOR_BOARD_STREAM_MAXLEN",
            ConnectorSettings.board_stream_maxlen,
            10,
            10_000_000,
        ),  # fmt: skip
        webhook_targets_file=_file(env, "ESCALATOR_WEBHOOK_TARGETS_FILE"),
        webhook_signing_key=_secret(env, "ESCALATOR_WEBHOOK_SIGNING_KEY"),
        metrics_host=env.get("ESCALATOR_METRICS_HOST") or ConnectorSettings.metrics_host,
        metrics_port=_int(env, "ESCALATOR_METRICS_PORT", ConnectorSettings.metrics_port, 1, 65535),
    )
    metrics = (env.get("ESCALATOR_METRICS") or "on").lower()
    if metrics not in ("on", "off"):
        raise ConfigError(f"ESCALATOR_METRICS={metrics!r}: must be on or off")
    store = env.get("ESCALATOR_STORE") or Settings.store
    if not store.startswith(("rocksdb://", "memory://")):
        raise ConfigError(f"ESCALATOR_STORE={store!r}: must be rocksdb:// or memory://")
    registry_url = env.get("ESCALATOR_SCHEMA_REGISTRY_URL") or None
    if registry_url and not all(
        part.strip().startswith(("http://", "https://")) for part in registry_url.split(",")
    ):
        raise ConfigError(
            f"ESCALATOR_SCHEMA_REGISTRY_URL={registry_url!r}: must start with http:// or https://"
        )
    auto_register = (env.get("ESCALATOR_SCHEMA_REGISTRY_AUTO_REGISTER") or "on").lower()
    if auto_register not in ("on", "off"):
        raise ConfigError(
            f"ESCALATOR_SCHEMA_REGISTRY_AUTO_REGISTER={auto_register!r}: must be on or off"
        )
    registry = RegistrySettings(
        subject_strategy=_choice(
            env,
            "ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY",
            RegistrySettings.subject_strategy,
            SUBJECT_STRATEGIES,
        ),
        auto_register=auto_register == "on",
        username=env.get("ESCALATOR_SCHEMA_REGISTRY_USERNAME") or None,
        password=_secret(env, "ESCALATOR_SCHEMA_REGISTRY_PASSWORD"),
        ssl_ca_file=_file(env, "ESCALATOR_SCHEMA_REGISTRY_SSL_CA_FILE"),
        ssl_cert_file=_file(env, "ESCALATOR_SCHEMA_REGISTRY_SSL_CERT_FILE"),
        ssl_key_file=_file(env, "ESCALATOR_SCHEMA_REGISTRY_SSL_KEY_FILE"),
        timeout_s=_int(env, "ESCALATOR_SCHEMA_REGISTRY_TIMEOUT_SECONDS", 10, 1, 300),
    )
    if registry.password and not registry.username:
        raise ConfigError(
            "ESCALATOR_SCHEMA_REGISTRY_PASSWORD is set but ESCALATOR_SCHEMA_REGISTRY_USERNAME "
            "is not"
        )
    policy = env.get("ESCALATOR_POLICY_FILE") or None
    if policy and not Path(policy).is_file():
        raise ConfigError(f"ESCALATOR_POLICY_FILE={policy}: no such file")
    return Settings(
        app_id=env.get("ESCALATOR_APP_ID") or Settings.app_id,
        kafka=kafka,
        redis=redis,
        connectors=connectors,
        store=store,
        data_dir=Path(env.get("ESCALATOR_DATA_DIR") or Settings.data_dir),
        partitions=_int(env, "ESCALATOR_PARTITIONS", Settings.partitions, 1, 1024),
        replication=_int(env, "ESCALATOR_REPLICATION", Settings.replication, 1, 16),
        processing_guarantee=_choice(
            env, "ESCALATOR_PROCESSING_GUARANTEE", Settings.processing_guarantee, GUARANTEES
        ),
        policy_file=policy,
        web_host=env.get("ESCALATOR_WEB_HOST") or Settings.web_host,
        web_port=_int(env, "ESCALATOR_WEB_PORT", Settings.web_port, 1, 65535),
        liveness_stall_s=_int(env, "ESCALATOR_LIVENESS_STALL_S", 60, 5, 86_400),
        liveness_restore_s=_int(env, "ESCALATOR_LIVENESS_RESTORE_S", 3600, 5, 7 * 86_400),
        schema_registry_url=registry_url,
        schema_registry=registry,
        tick_ms=_int(env, "ESCALATOR_TICK_MS", Settings.tick_ms, 50, 5000),
        commit_interval_ms=_int(
            env, "ESCALATOR_COMMIT_INTERVAL_MS", Settings.commit_interval_ms, 50, 60_000
        ),
        producer_linger_ms=_int(
            env, "ESCALATOR_PRODUCER_LINGER_MS", Settings.producer_linger_ms, 0, 1000
        ),
        session_timeout_ms=_int(
            env, "ESCALATOR_SESSION_TIMEOUT_MS", Settings.session_timeout_ms, 6_000, 300_000
        ),
        max_event_bytes=_int(
            env, "ESCALATOR_MAX_EVENT_BYTES", Settings.max_event_bytes, 1024, 16_000_000
        ),
        max_clock_skew_ms=_int(
            env, "ESCALATOR_MAX_CLOCK_SKEW_MS", Settings.max_clock_skew_ms, 1000, 86_400_000
        ),
        max_record_bytes=_int(
            env, "ESCALATOR_MAX_RECORD_BYTES", Settings.max_record_bytes, 65_536, 16_000_000
        ),
        metrics_enabled=metrics == "on",
        instance_id=env.get("ESCALATOR_INSTANCE_ID") or "",
    )
