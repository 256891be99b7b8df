"""`escalator board`: the live escalation board page and its JSON API.

Serves a static page (streams/tools/board_page/: plain HTML, CSS and JS, no build step, no
external fonts or CDNs) and `/api/board`, which reads the Redis board
(connectors.sinks.board_store) and
asks the worker and the Redis sink how they are. The page polls the API every 2 seconds.

SLA warnings are heads-ups to the ticket's current owner, not escalations: the page shows
them in a panel of their own and counts none of them as an open escalation or at a level.
"Latest events" is in event time order (the board's `feed`), not in the order the sink read.

Countdowns: the board holds, per ticket, `climbs_at`, when its open escalation climbs to the
next matrix level unless an agent answers (streams.sla.board). "Closest to breach" lists the
tickets by it. They count down from the board clock, the latest fired_at on the board: on a
live (wall-clock) pipeline that is now; when the board is far from now (a replayed history,
the demo) the page says so and counts from the board clock instead, which keeps the numbers
meaningful for data from the past.

Health: Redis answers; the sink's heartbeat on the board is fresh (and its /healthz, if a URL
is given); the worker's /readyz and /metrics answer. What cannot be reached shows as down and
what is not configured as unknown; the page never fails because of it.

Shadow policy: when the worker runs one, its /metrics holds the shadow's escalations by reason
and level beside production's, and the tickets only one side escalated; the page shows them in
a panel of their own, read from that same scrape (nothing of the shadow goes to Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from connectors.sinks.board_store import BoardKeys, BoardReader
from streams.runtime.settings import Settings

PAGE_DIR = resources.files("streams.tools") / "board_page"  # package data, also when installed
STATIC = {"/": "index.html", "/board.css": "board.css", "/board.js": "board.js"}
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
LIVE_WITHIN_MS = 15 * 60_000  # a board clock this close to now is a live pipeline
SINK_STALE_MS = 10_000  # a heartbeat older than this: the sink is down
HOUR_S = 3600.0
# Worker figures shown on the page: sample name -> label (summed over labels).
WORKER_FIGURES = {
    "escalator_events_processed_total": "events processed",
    "escalator_escalations_total": "escalations sent",
    "escalator_dlq_events_total": "events dead-lettered",
    "escalator_consumer_lag": "consumer lag",
    "escalator_tickets_open": "open tickets",
    "escalator_tickets_at_risk": "tickets at risk",
    "escalator_tickets_breached": "tickets breached",
}
BREACHES_METRIC = "escalator_sla_breaches_total"
# The shadow policy (`escalator worker --shadow-policy`) against production, from the same scrape.
ESCALATIONS = {"escalator_escalations_total": "production",
               "escalator_shadow_escalations_total": "shadow"}  # fmt: skip
SHADOW_ONLY = "escalator_shadow_only_tickets"
EMPTY_BOARD: dict[str, Any] = {
    "open": 0, "by_level": {}, "by_team": {}, "tickets": [], "closest": [], "clock": None,
    "last_hour": {}, "totals": {}, "sink": {}, "recent": [],
    "warnings": {"open": 0, "tickets": []},
}  # fmt: skip


@dataclass
class BoardConfig:
    keys: BoardKeys
    worker_url: str | None = None  # e.g. http://127.0.0.1:6066 (its /readyz and /metrics)
    sink_url: str | None = None  # e.g. http://127.0.0.1:9108 (its /healthz)
    limit: int = 500


@dataclass
class BreachRate:
    """SLA breaches per hour from the worker's counter, over the last hour of wall time."""

    samples: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, at: float, total: float) -> float | None:
        samples = self.samples
        if samples and total < samples[-1][1]:
            samples.clear()  # the worker restarted: its counter started again
        samples.append((at, total))
        while samples and at - samples[0][0] > HOUR_S:
            samples.popleft()
        span = at - samples[0][0]
        if span < 60:
            return None
        return (total - samples[0][1]) * HOUR_S / span


class BoardApp:
    """The page server's state: the Redis reader, an HTTP session, the breach-rate samples."""

    def __init__(self, settings: Settings, config: BoardConfig) -> None:
        self.config = config
        self.client = settings.redis.client(decode_responses=True)
        self.reader = BoardReader(self.client, config.keys)
        self.breaches = BreachRate()
        self.session: aiohttp.ClientSession | None = None

    def build(self) -> web.Application:
        app = web.Application()
        for path, name in STATIC.items():
            app.router.add_get(path, self._static(name))
        app.router.add_get("/api/board", self.api_board)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5))

    async def _stop(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()
        self.client.close()

    @staticmethod
    def _static(name: str) -> Any:
        path = PAGE_DIR / name
        content_type = CONTENT_TYPES[name[name.rindex(".") :]]

        async def handler(_request: web.Request) -> web.Response:
            return web.Response(
                body=path.read_bytes(),
                content_type=content_type,
                headers={"Cache-Control": "no-cache"},
            )

        return handler

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def api_board(self, _request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        now = int(time.time() * 1000)
        board_task = loop.run_in_executor(None, self.reader.snapshot, self.config.limit)
        worker, sink_check = await asyncio.gather(self._worker(), self._sink_check())
        try:
            board: dict[str, Any] = await board_task
            redis_health = {"status": "up"}
        except Exception as exc:  # Redis down or misconfigured: show it, do not fail
            board = dict(EMPTY_BOARD)
            redis_health = {"status": "down", "error": str(exc)[:200]}
        clock = board["clock"]
        live = clock is None or abs(now - clock) <= LIVE_WITHIN_MS
        board.update(
            now=now,
            clock_mode="wall" if live else "board",
            health={
                "redis": redis_health,
                "sink": self._sink(board["sink"], now, sink_check),
                "worker": worker,
            },
        )
        return web.json_response(board)

    def _sink(self, beat: dict[str, Any], now: int, check: str | None) -> dict[str, Any]:
        """The sink is up when its heartbeat is fresh (and its /healthz agrees, if asked)."""
        if not beat:
            status = "unknown" if check is None else check
            return {"status": status}
        age = now - int(beat.get("updated_at", 0))
        status = "up" if age <= SINK_STALE_MS else "down"
        if check is not None and check != "up":
            status = check
        return {"status": status, "heartbeat_age_ms": age, "lag": beat.get("lag")}

    async def _sink_check(self) -> str | None:
        if not self.config.sink_url:
            return None
        status, _ = await self._get(f"{self.config.sink_url}/healthz")
        return "up" if status == 200 else "down" if status is None else "unhealthy"

    async def _worker(self) -> dict[str, Any]:
        url = self.config.worker_url
        if not url:
            return {"status": "unknown"}
        (ready_status, ready), (metrics_status, text) = await asyncio.gather(
            self._get(f"{url}/readyz"), self._get(f"{url}/metrics")
        )
        if ready_status is None and metrics_status is None:
            return {"status": "down", "url": url}
        out: dict[str, Any] = {
            "status": "up" if ready_status == 200 else "not ready",
            "url": url,
            "metrics_url": f"{url}/metrics",
        }
        if metrics_status == 200 and text:
            figures, breaches = worker_figures(text)
            out["figures"] = figures
            shadow = shadow_figures(text)
            if shadow is not None:
                out["shadow"] = shadow
            if breaches is not None:
                out["breaches_per_hour"] = self.breaches.add(time.monotonic(), breaches)
        return out

    async def _get(self, url: str) -> tuple[int | None, str]:
        assert self.session is not None
        try:
            async with self.session.get(url) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None, ""


def worker_figures(text: str) -> tuple[dict[str, float], float | None]:
    """The figures the page shows from a Prometheus exposition, and the breach counter."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in WORKER_FIGURES or sample.name == BREACHES_METRIC:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    figures = {label: sums[name] for name, label in WORKER_FIGURES.items() if name in sums}
    return figures, sums.get(BREACHES_METRIC)


def shadow_figures(text: str) -> dict[str, Any] | None:
    """Production's and the shadow policy's escalations by reason and level, and the tickets
    only one of them escalated; None when the worker runs no shadow policy."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    only: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            side = ESCALATIONS.get(sample.name)
            if side is not None:
                reason, level = sample.labels["reason"], int(sample.labels["level"])
                row = rows.setdefault(
                    (reason, level), {"reason": reason, "level": level,
                                      "production": 0.0, "shadow": 0.0},
                )  # fmt: skip
                row[side] += sample.value
            elif sample.name == SHADOW_ONLY:
                only[sample.labels["side"]] = sample.value
    if not only:
        return None
    return {"by_reason_level": [rows[k] for k in sorted(rows)], "only": only}


async def serve(
    settings: Settings, config: BoardConfig, host: str, port: int, ready: Any = None
) -> None:
    """Serve until cancelled; `ready(url)` is called once listening."""
    runner = web.AppRunner(BoardApp(settings, config).build(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if ready is not None:
        ready(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
