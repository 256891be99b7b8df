"""A real Prometheus server scrapes a running worker; PromQL returns what the test produced.

Prometheus is Debian's package (/usr/bin/prometheus, installed by scripts/setup), started on
loopback with a generated config that scrapes the worker's web port every second and loads
the repository's alert rules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.events import EventType, TicketEvent
from streams.tools.demo import free_port
from tests.support.pipeline import REPO, Pipeline
from tests.support.policies import LIVE_POLICY

pytestmark = pytest.mark.integration

RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
# LIVE_POLICY (first response 1m, warning at 50%) plus an event trigger.
POLICY = (
    LIVE_POLICY
    + """
triggers:
  - name: legal
    when: {tags_added: [legal]}
    actions: [{escalate: {kind: HIERARCHICAL, reason: LEGAL_THREAT, level: 2}}]
"""
)


class PrometheusServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=promql)["result"]
        return result

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """A factory that starts /usr/bin/prometheus scraping one target; killed at teardown."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).is_file():
        pytest.fail("prometheus is not installed: run scripts/setup (Debian package prometheus)")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> PrometheusServer:
        root = tmp_path / "prometheus"
        root.mkdir()
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: escalator-worker\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        port = free_port()
        log = root / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        server = PrometheusServer(proc, port, log)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_prometheus_scrapes_the_escalation_count_of_a_live_worker(
    pipeline: Pipeline, prometheus: Any, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    worker = pipeline.start_worker("w1", event_time=False, policy=policy)
    worker.wait_ready()
    codec = codec_for("TicketEvent", pipeline.settings)
    producer = Producer(idempotent_producer(pipeline.settings))
    created = int(time.time() * 1000) - 55_000  # warned already, first response due in ~5 s
    for i in range(5):
        tags = ("legal",) if i < 2 else ()
        event = TicketEvent(f"e{i}", f"T{i}", EventType.CREATED, created, tags_added=tags)
        producer.produce(pipeline.topics.ticket_events, key=event.ticket_id.encode(),
                         value=codec.encode(ticket_event_to_avro(event)))  # fmt: skip
    producer.produce(pipeline.topics.ticket_events, key=b"T-bad", value=b"not avro")
    assert producer.flush(30) == 0
    # 5 warnings, 5 first-response breaches, 2 legal threats; then nothing for 10 minutes.
    records = pipeline.read("escalations", "Escalation", expect=12, timeout=90, idle=3)
    read_at = time.time()
    count = len(records)
    assert count >= 12

    server = prometheus(f"127.0.0.1:{worker.web_port}")
    fresh = f"max(timestamp(escalator_escalations_total)) > {read_at}"
    deadline = time.monotonic() + 60
    scraped: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # wait for a scrape taken after the escalations were read
        scraped = server.query(f"sum(escalator_escalations_total) and on() ({fresh})")
        if scraped:
            break
        time.sleep(0.5)
    assert scraped, f"no scrape of the worker after the escalations were read:\n{worker.log_text()}"
    assert float(scraped[0]["value"][1]) == count

    by_reason = {
        r["metric"]["reason"]: float(r["value"][1])
        for r in server.query("sum by (reason) (escalator_escalations_total)")
    }
    assert by_reason == {
        reason: float(sum(1 for r in records if r["reason"] == reason))
        for reason in {r["reason"] for r in records}
    }
    [dlq] = server.query('escalator_dlq_events_total{reason="UNDECODABLE"}')
    assert float(dlq["value"][1]) == 1
    [worker_info] = server.query('escalator_build_info{component="worker"}')
    assert worker_info["metric"]["job"] == "escalator-worker"
    [detections] = server.query("sum(escalator_detection_latency_seconds_count)")
    assert float(detections["value"][1]) >= 5  # time-driven: the warnings and the breaches
    [opened] = server.query('sum(escalator_tickets_open{policy="fast"})')
    assert float(opened["value"][1]) == 5
    lag = server.query(f'escalator_consumer_lag{{topic="{pipeline.topics.ticket_events}"}}')
    assert {r["metric"]["partition"] for r in lag} == {"0", "1", "2"}
    [tick] = server.query("time() - escalator_clock_last_tick_timestamp_seconds")
    assert float(tick["value"][1]) < 30  # the clock runs: EscalatorClockStalled stays silent
    # The repository's rules loaded into the real server.
    groups = server.get("/api/v1/rules")["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"EscalatorWorkerAbsent", "EscalatorClockStalled"} <= alerts
