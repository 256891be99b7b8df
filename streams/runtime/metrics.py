"""Prometheus metrics shared by every Escalator process, and a tiny /metrics + /healthz server.

Naming follows Prometheus conventions: `escalator_` prefix, base units in names,
`_total` on counters, and only bounded labels (never a ticket or customer id).
Each component declares its own metrics next to the code that counts them; this
module holds what all of them share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge
from prometheus_client import generate_latest as _generate_latest

from streams.runtime.settings import ConfigError, ConnectorSettings

try:
    VERSION = version("escalator")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0+unknown"

BUILD_INFO = Gauge(
    "escalator_build_info",
    "1 per running Escalator process; component is worker, ingest, sink-redis, sink-webhook, ...",
    ["component", "version"],
)


def mark_component(component: str) -> None:
    """Announce this process on /metrics (the worker-absent alert looks for it)."""
    BUILD_INFO.labels(component=component, version=VERSION).set(1)


def generate_latest(registry: CollectorRegistry = REGISTRY) -> bytes:
    return _generate_latest(registry)


Page = Callable[[], tuple[int, bytes]]  # (status, JSON body)


class MetricsServer:
    """/metrics and /healthz on a background thread, for processes without a web server.

    `healthy` decides /healthz: 200 {"status":"ok"} when it returns True, else 503.
    `render` replaces the registry's exposition; `pages` adds JSON pages (the worker's /readyz).
    """

    def __init__(
        self,
        host: str,
        port: int,
        healthy: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
        render: Callable[[], bytes] | None = None,
        pages: dict[str, Page] | None = None,
    ) -> None:
        server = self
        exposition = render or (lambda: generate_latest(registry))
        extra = pages or {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, exposition())
                elif path in extra:
                    status, body = extra[path]()
                    self._send(status, "application/json", body)
                elif path == "/healthz":
                    ok = server.healthy()
                    body = b'{"status":"ok"}' if ok else b'{"status":"unhealthy"}'
                    self._send(200 if ok else 503, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.healthy = healthy
        self.registry = registry
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    @classmethod
    def on_metrics_port(
        cls, connectors: ConnectorSettings, healthy: Callable[[], bool]
    ) -> MetricsServer:
        """Started on ESCALATOR_METRICS_HOST/PORT (a sink's or `escalator alerts`'s); a port it
        cannot listen on is the operator's to fix: ConfigError naming it, no traceback."""
        try:
            server = cls(connectors.metrics_host, connectors.metrics_port, healthy)
        except OSError as exc:
            raise ConfigError(
                f"ESCALATOR_METRICS_PORT={connectors.metrics_port}: cannot listen ({exc.strerror})"
            ) from None
        return server.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
