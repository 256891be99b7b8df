"""load_settings (streams.runtime.settings): defaults, one-line errors naming the variable,
secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime.settings import ConfigError, KafkaSettings, Settings, load_settings, redact_url


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.partitions == 6 and settings.replication == 1
    assert settings.processing_guarantee == "exactly_once"
    assert settings.kafka.bootstrap == "127.0.0.1:19092"
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.kafka.sasl_mechanism is None and settings.kafka.sasl_password is None
    assert settings.redis.url == "redis://127.0.0.1:16379/0"
    assert settings.store == "rocksdb://" and settings.data_dir == Path("var/worker")
    assert settings.schema_registry_url is None and settings.policy_file is None
    assert (settings.tick_ms, settings.max_event_bytes, settings.web_port) == (100, 1_000_000, 6066)


def test_empty_values_mean_the_default() -> None:
    env = {name: "" for name in ("ESCALATOR_PARTITIONS", "ESCALATOR_PROCESSING_GUARANTEE",
                                 "ESCALATOR_KAFKA_BOOTSTRAP", "ESCALATOR_KAFKA_SASL_PASSWORD",
                                 "ESCALATOR_KAFKA_SSL_CA_FILE", "ESCALATOR_REDIS_URL")}  # fmt: skip
    assert load_settings(env) == Settings()


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "ESCALATOR_APP_ID": "esc-eu",
            "ESCALATOR_PARTITIONS": "12",
            "ESCALATOR_REPLICATION": "3",
            "ESCALATOR_PROCESSING_GUARANTEE": "at_least_once",
            "ESCALATOR_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "ESCALATOR_DATA_DIR": "/data/worker",
            "ESCALATOR_STORE": "memory://",
            "ESCALATOR_TICK_MS": "50",
            "ESCALATOR_PRODUCER_LINGER_MS": "0",
            "ESCALATOR_MAX_EVENT_BYTES": "2048",
            "ESCALATOR_SCHEMA_REGISTRY_URL": "http://registry:8081",
        }
    )
    assert settings.app_id == "esc-eu"
    assert (settings.partitions, settings.replication) == (12, 3)
    assert settings.processing_guarantee == "at_least_once"
    assert settings.kafka.bootstrap == "k1:9092,k2:9092"
    assert settings.data_dir == Path("/data/worker") and settings.store == "memory://"
    assert (settings.tick_ms, settings.max_event_bytes) == (50, 2048)
    assert settings.producer_linger_ms == 0
    assert settings.schema_registry_url == "http://registry:8081"


@pytest.mark.parametrize(
    ("env", "variable", "detail"),
    [
        ({"ESCALATOR_PARTITIONS": "six"}, "ESCALATOR_PARTITIONS", "whole number"),
        ({"ESCALATOR_PARTITIONS": "1.5"}, "ESCALATOR_PARTITIONS", "whole number"),
        ({"ESCALATOR_PARTITIONS": "0"}, "ESCALATOR_PARTITIONS", "between 1 and 1024"),
        ({"ESCALATOR_PARTITIONS": "1025"}, "ESCALATOR_PARTITIONS", "between 1 and 1024"),
        ({"ESCALATOR_REPLICATION": "17"}, "ESCALATOR_REPLICATION", "between 1 and 16"),
        ({"ESCALATOR_WEB_PORT": "70000"}, "ESCALATOR_WEB_PORT", "between 1 and 65535"),
        ({"ESCALATOR_TICK_MS": "10"}, "ESCALATOR_TICK_MS", "between 50 and 5000"),
        ({"ESCALATOR_PRODUCER_LINGER_MS": "-1"}, "ESCALATOR_PRODUCER_LINGER_MS", "between 0"),
        ({"ESCALATOR_MAX_EVENT_BYTES": "1k"}, "ESCALATOR_MAX_EVENT_BYTES", "whole number"),
        (
            {"ESCALATOR_PROCESSING_GUARANTEE": "exactly-once"},
            "ESCALATOR_PROCESSING_GUARANTEE",
            "exactly_once, at_least_once",
        ),
        (
            {"ESCALATOR_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "ESCALATOR_KAFKA_SECURITY_PROTOCOL",
            "SASL_SSL",
        ),
        (
            {"ESCALATOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "ESCALATOR_KAFKA_SASL_USERNAME",
            "SASL_SSL needs",
        ),
        (
            {
                "ESCALATOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "ESCALATOR_KAFKA_SASL_MECHANISM": "GSSAPI",
                "ESCALATOR_KAFKA_SASL_USERNAME": "svc",
            },
            "ESCALATOR_KAFKA_SASL_MECHANISM",
            "SCRAM-SHA-512",
        ),
        ({"ESCALATOR_REDIS_URL": "http://cache:6379"}, "ESCALATOR_REDIS_URL", "redis://"),
        ({"ESCALATOR_STORE": "postgres://db"}, "ESCALATOR_STORE", "rocksdb://"),
    ],
)
def test_config_errors_name_the_variable(env: dict[str, str], variable: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert variable in message, message
    assert detail in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "variable",
    [
        "ESCALATOR_KAFKA_SSL_CA_FILE",
        "ESCALATOR_KAFKA_SSL_CERT_FILE",
        "ESCALATOR_KAFKA_SSL_KEY_FILE",
        "ESCALATOR_REDIS_SSL_CA_FILE",
        "ESCALATOR_POLICY_FILE",
    ],
)
def test_missing_files_name_the_variable(variable: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    with pytest.raises(ConfigError, match=f"^{variable}=.*absent.pem: no such file"):
        load_settings({variable: str(missing)})
    with pytest.raises(ConfigError, match=f"^{variable}="):
        load_settings({variable: str(tmp_path)})  # a directory is not a file


def sasl_env(**extra: str) -> dict[str, str]:
    return {
        "ESCALATOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ESCALATOR_KAFKA_SASL_USERNAME": "svc-escalator",
        **extra,
    }


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    redis_secret = tmp_path / "redis-password"
    redis_secret.write_text("  r3dis  ")
    settings = load_settings(
        sasl_env(
            ESCALATOR_KAFKA_SASL_PASSWORD_FILE=str(secret),
            ESCALATOR_REDIS_PASSWORD_FILE=str(redis_secret),
        )
    )
    assert settings.kafka.sasl_password == "s3cret"
    assert settings.redis.password == "r3dis"
    assert "s3cret" not in repr(settings) and "r3dis" not in repr(settings)


def test_a_direct_secret_wins_over_its_file(tmp_path: Path) -> None:
    settings = load_settings(
        sasl_env(
            ESCALATOR_KAFKA_SASL_PASSWORD="direct",
            ESCALATOR_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "absent"),
        )
    )
    assert settings.kafka.sasl_password == "direct"


@pytest.mark.parametrize(
    "variable", ["ESCALATOR_KAFKA_SASL_PASSWORD_FILE", "ESCALATOR_REDIS_PASSWORD_FILE"]
)
def test_unreadable_secret_file_names_the_variable(variable: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError) as info:
        password = {} if "KAFKA" in variable else {"ESCALATOR_KAFKA_SASL_PASSWORD": "pw"}
        load_settings(sasl_env(**{variable: str(missing)}, **password))
    message = str(info.value)
    assert message.startswith(f"{variable}={missing}: cannot read")
    assert "No such file" in message


def test_sasl_without_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ESCALATOR_KAFKA_SASL_PASSWORD"):
        load_settings(sasl_env())


def test_sasl_ssl_confluent_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        sasl_env(
            ESCALATOR_KAFKA_BOOTSTRAP="broker:9093",
            ESCALATOR_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            ESCALATOR_KAFKA_SASL_PASSWORD="pw",
            ESCALATOR_KAFKA_SSL_CA_FILE=str(ca),
        )
    )
    assert settings.kafka.confluent() == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc-escalator",
        "sasl.password": "pw",
        "ssl.ca.location": str(ca),
    }


def test_sasl_mechanism_defaults_to_plain() -> None:
    settings = load_settings(sasl_env(ESCALATOR_KAFKA_SASL_PASSWORD="pw"))
    assert settings.kafka.sasl_mechanism == "PLAIN"
    assert settings.kafka.confluent()["sasl.mechanism"] == "PLAIN"


def test_ssl_client_certificate_config(tmp_path: Path) -> None:
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(name)
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_file=str(files["ca"]),
        ssl_cert_file=str(files["cert"]),
        ssl_key_file=str(files["key"]),
    )
    conf = kafka.confluent()
    assert conf["security.protocol"] == "ssl"
    assert conf["ssl.certificate.location"] == str(files["cert"])
    assert conf["ssl.key.location"] == str(files["key"])
    assert "sasl.mechanism" not in conf


def test_plaintext_confluent_config() -> None:
    assert KafkaSettings().confluent() == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "plaintext",
    }


def test_a_due_escalation_waits_at_most_a_tick_and_a_commit_interval_of_100_ms() -> None:
    """The detection-latency budget under load (p99 < 500 ms, bench/pipeline.py
    --latency-under-load): a tick and a commit interval each at most 100 ms by default."""
    settings = load_settings({})
    assert settings.tick_ms <= 100 and settings.commit_interval_ms <= 100
    assert load_settings({"ESCALATOR_COMMIT_INTERVAL_MS": "250"}).commit_interval_ms == 250


def test_session_timeout_is_short_by_default_and_bounded() -> None:
    assert load_settings({}).session_timeout_ms == 10_000
    assert load_settings({"ESCALATOR_SESSION_TIMEOUT_MS": "45000"}).session_timeout_ms == 45_000
    with pytest.raises(ConfigError, match="ESCALATOR_SESSION_TIMEOUT_MS=1000: must be between"):
        load_settings({"ESCALATOR_SESSION_TIMEOUT_MS": "1000"})


def test_schema_registry_client_settings(tmp_path: Path) -> None:
    secret = tmp_path / "registry-password"
    secret.write_text("r3g1stry\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    settings = load_settings(
        {
            "ESCALATOR_SCHEMA_REGISTRY_URL": "https://registry:8081",
            "ESCALATOR_SCHEMA_REGISTRY_USERNAME": "escalator",
            "ESCALATOR_SCHEMA_REGISTRY_PASSWORD_FILE": str(secret),
            "ESCALATOR_SCHEMA_REGISTRY_SSL_CA_FILE": str(ca),
            "ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY": "RecordNameStrategy",
            "ESCALATOR_SCHEMA_REGISTRY_AUTO_REGISTER": "off",
        }
    )
    registry = settings.schema_registry
    assert registry.subject_strategy == "RecordNameStrategy" and not registry.auto_register
    assert registry.client_conf("https://registry:8081") == {
        "url": "https://registry:8081",
        "timeout": 10,
        "basic.auth.user.info": "escalator:r3g1stry",
        "ssl.ca.location": str(ca),
    }
    assert "r3g1stry" not in repr(settings)
    assert load_settings({}).schema_registry.subject_strategy == "TopicNameStrategy"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ESCALATOR_SCHEMA_REGISTRY_SUBJECT_STRATEGY": "topic"}, "SUBJECT_STRATEGY"),
        ({"ESCALATOR_SCHEMA_REGISTRY_URL": "registry:8081"}, "URL"),
        ({"ESCALATOR_SCHEMA_REGISTRY_AUTO_REGISTER": "yes"}, "AUTO_REGISTER"),
        ({"ESCALATOR_SCHEMA_REGISTRY_PASSWORD": "pw"}, "PASSWORD"),
        ({"ESCALATOR_SCHEMA_REGISTRY_SSL_CA_FILE": "/absent/ca.pem"}, "SSL_CA_FILE"),
    ],
)
def test_schema_registry_mistakes_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(f"ESCALATOR_SCHEMA_REGISTRY_{variable}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:p@s/s@h/1", "rediss://user:***@h/1"),
        ("redis://user@h/0", "redis://user@h/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("user:pw@k1:9092,k2:9092", "user:***@k1:9092,k2:9092"),
    ],
)
def test_urls_in_log_lines_carry_no_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_wrong_redis_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ESCALATOR_REDIS_URL": "http://board:t0p-s3cret@h/0"})
    assert "t0p-s3cret" not in str(caught.value)
    assert "http://board:***@h/0" in str(caught.value)
