"""The /metrics and /healthz server of the sinks and `escalator alerts`."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from streams.runtime.metrics import MetricsServer
from streams.runtime.settings import ConfigError, ConnectorSettings


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_on_the_metrics_port_healthz_answers_what_the_process_says() -> None:
    healthy = [True]
    connectors = ConnectorSettings(metrics_host="127.0.0.1", metrics_port=0)
    server = MetricsServer.on_metrics_port(connectors, lambda: healthy[0])
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert status(f"{base}/healthz") == 200
        healthy[0] = False
        assert status(f"{base}/healthz") == 503
        assert status(f"{base}/metrics") == 200
    finally:
        server.stop()


def test_a_metrics_port_in_use_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        connectors = ConnectorSettings(metrics_host="127.0.0.1", metrics_port=port)
        with pytest.raises(ConfigError, match=rf"^ESCALATOR_METRICS_PORT={port}: cannot listen"):
            MetricsServer.on_metrics_port(connectors, lambda: True)
