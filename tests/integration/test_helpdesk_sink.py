"""`escalator sink helpdesk` on the real broker, writing to a local Zendesk: escalations and
bumps in, exactly the expected writes out after a 429 and a 5xx; SLA warnings are not
written; a ticket the desk does not know parks on webhook-dlq."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.codec import codec_for
from streams.runtime.kafka_config import idempotent_producer
from streams.sla.actions import Reason
from streams.tools.demo import free_port
from tests.connectors.fake_desk import FakeDesk, Ticket
from tests.support.helpdesk import ZENDESK_USER, bump, escalation
from tests.support.metrics import metric
from tests.support.pipeline import REPO, Pipeline, WorkerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def committed_to_end(line: Pipeline, group: str) -> bool:
    """Has `group` committed both topics up to their ends (an empty partition needs none)?"""
    consumer = Consumer({**line.settings.kafka.confluent(), "group.id": group,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        parts = [TopicPartition(name, p) for name in (line.topics.escalations,
                 line.topics.priority_bumps) for p in range(line.partitions)]  # fmt: skip
        committed = consumer.committed(parts, timeout=10)
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
        return all(c.offset == end or (end == 0 and c.offset < 0)
                   for c, end in zip(committed, ends, strict=True))  # fmt: skip
    finally:
        consumer.close()


def test_escalations_in_exactly_the_expected_writes_out(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    desk = FakeDesk("zendesk", f"{ZENDESK_USER[0]}/token:{ZENDESK_USER[1]}", retry_after="1")
    desk.unknown_404 = True
    for ticket in ("101", "102", "103"):
        desk.tickets[ticket] = Ticket(["existing"])
    # The 429 goes to a known ticket: the unknown one's 404 must be its only attempt.
    desk.script = [("GET", 429, "/tickets/101"), ("PUT", 502, "")]
    line = Pipeline(kafka_bootstrap, tmp_path)
    line.create_topics()
    escalations = codec_for("Escalation", line.settings)
    bumps = codec_for("PriorityBump", line.settings)
    producer = Producer(idempotent_producer(line.settings))
    records = [escalation("101"), escalation("102", level=3), escalation("103")]
    warning = escalation("101", level=1, reason=Reason.SLA_WARNING)
    unknown = escalation("999")
    for record in [*records, warning, unknown]:
        producer.produce(line.topics.escalations, escalations.encode(record),
                         record["ticket_id"].encode())  # fmt: skip
    raised = bump("102", records[1]["escalation_id"], "HIGH")
    producer.produce(line.topics.priority_bumps, bumps.encode(raised), b"102")
    assert producer.flush(30) == 0

    token = tmp_path / "token"
    token.write_text(ZENDESK_USER[1])
    port = free_port()
    env = {
        **line.env(),
        "ESCALATOR_HELPDESK_KIND": "zendesk",
        "ESCALATOR_HELPDESK_URL": desk.url,
        "ESCALATOR_ZENDESK_EMAIL": ZENDESK_USER[0],
        "ESCALATOR_ZENDESK_API_TOKEN_FILE": str(token),
        "ESCALATOR_HELPDESK_BACKOFF_BASE_S": "0.05",
        "ESCALATOR_METRICS_HOST": "127.0.0.1",
        "ESCALATOR_METRICS_PORT": str(port),
    }
    log = tmp_path / "sink.log"
    cmd = [sys.executable, "-m", "streams.cli", "sink", "helpdesk", "--topic-prefix",
           line.prefix, "--loglevel", "info"]  # fmt: skip
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        sink = WorkerProcess("helpdesk", proc, log, port, ready="sink helpdesk: ready")
        line.workers.append(sink)
        sink.wait_ready(60)
        dead = line.read("webhook-dlq", "WebhookDeadLetter", expect=1, idle=1.0)
        group = f"{line.prefix}escalator-sink-helpdesk"
        wait_for(lambda: committed_to_end(line, group), "all offsets committed", 60, sink)
        assert metric(port, "escalator_webhook_retries_total", target="helpdesk-zendesk") == 2
        sink.stop()
        assert sink.proc.returncode == 0, sink.log_text()

        statuses = [s for _, _, s in desk.requests]
        assert 429 in statuses and 502 in statuses
        puts = sorted(p for m, p in desk.writes())
        assert puts == [f"/api/v2/tickets/{t}.json" for t in ("101", "102", "102", "103")]
        for record in records:
            ticket = desk.tickets[record["ticket_id"]]
            assert f"escalator-{record['escalation_id']}" in ticket.tags
            assert ticket.tags[0] == "existing"
        assert desk.tickets["102"].priority == "high"
        assert len(desk.tickets["101"].notes) == 1  # the warning wrote nothing
        assert [len(desk.tickets[t].notes) for t in ("102", "103")] == [2, 1]
        (parked,) = dead
        assert (parked["target"], parked["status"], parked["attempts"]) == (
            "helpdesk-zendesk", 404, 1,
        )  # fmt: skip
        assert parked["escalation_id"] == unknown["escalation_id"]
    finally:
        line.close()
        desk.close()
