"""`escalator worker --shadow-policy` on the real broker: the candidate's records on
shadow-escalations (read_committed) are what `escalator backtest --policy CANDIDATE` sends for
the same events, while production's escalations stay those of the production policy; a worker
killed mid-stream resumes both from the changelog, each exactly once."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from schemas.codec import codec_for
from streams.cli.main import main
from streams.runtime.processor import SHADOW_RECORDS, decode_shadow
from streams.tools.generator import generate_to_file
from streams.tools.replay import replay, tail
from tests.support.pipeline import Pipeline
from tests.support.policies import candidate_text

pytestmark = pytest.mark.integration


def backtest(path: Path, policy: str, out: Path) -> dict[str, int]:
    """`escalator backtest --policy POLICY --out OUT`: each escalation's fired_at by id."""
    assert main(["backtest", str(path), "--policy", policy, "--out", str(out)]) == 0
    lines = map(json.loads, out.read_text().splitlines())
    return {r["escalation_id"]: r["fired_at"] for r in lines if r["action"] == "escalation"}


def read_shadow(line: Pipeline, expect: int) -> list[tuple[str, dict[str, object]]]:
    """Every committed shadow-escalations record, decoded by its schema id."""
    codecs = {name: codec_for(name, line.settings) for name in SHADOW_RECORDS}
    consumer = Consumer({**line.settings.kafka.confluent(), "group.id": f"{line.prefix}shadow",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    topic = line.topics.shadow_escalations
    consumer.assign([TopicPartition(topic, p, -2) for p in range(line.partitions)])
    out: list[tuple[str, dict[str, object]]] = []
    ended: set[int] = set()
    try:
        for _ in range(600):  # ~60 s at most
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                ended.add(msg.partition() or 0)
                if len(ended) == line.partitions and len(out) >= expect:
                    break
                continue
            out.append(decode_shadow(codecs, msg.value()))
    finally:
        consumer.close()
    return out


def test_shadow_output_equals_the_backtest_of_the_candidate(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=6, days=2, seed=17)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_text())
    production = backtest(path, "default", tmp_path / "production.jsonl")
    shadow = backtest(path, str(candidate), tmp_path / "shadow.jsonl")
    assert len(shadow) > 50 and shadow != production  # the candidate differs from production

    first = pipeline.start_worker("w1", shadow_policy=candidate)
    first.wait_ready()
    result: dict[str, tuple[int, int]] = {}
    thread = threading.Thread(target=lambda: result.setdefault("replay", replay(
        pipeline.settings, path, pipeline.topics, rate=250, end_tick=True)))  # fmt: skip
    thread.start()
    time.sleep(1.5)
    assert thread.is_alive(), "replay finished before the crash: slow it down"
    first.kill()  # SIGKILL mid-stream: the shadow's states come back from the changelog too
    worker = pipeline.start_worker("w1", shadow_policy=candidate)
    worker.wait_ready()
    thread.join(60)
    sent, bad = result["replay"]
    assert bad == 0 and sent > 500

    live = pipeline.read("escalations", "Escalation", expect=len(production), idle=1.0)
    assert {r["escalation_id"]: r["fired_at"] for r in live} == production
    assert len(live) == len(production)
    records = read_shadow(pipeline, len(shadow))
    fired = [r for name, r in records if name == "Escalation"]
    assert {r["escalation_id"]: r["fired_at"] for r in fired} == shadow
    assert len(fired) == len(shadow)  # each once
    assert {name for name, _ in records} > {"Escalation"}  # its bumps or reminders too
    # `escalator tail shadow-escalations` reads them as lines, whatever their type
    lines = io.StringIO()
    count = tail(pipeline.settings, "shadow-escalations", pipeline.topics, from_beginning=True,
                 idle_timeout=2.0, out=lines)  # fmt: skip
    assert count == len(records) and lines.getvalue().count("SHADOW ") == count
    assert sum(f" id={e}" in lines.getvalue() for e in shadow) == len(shadow)

    # /metrics: the shadow's escalations counted (since the restart: a process's counters), and
    # the tickets only one side escalated.
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    counted = sum(s.value for s in samples if s.name == "escalator_shadow_escalations_total")
    assert 0 < counted <= len(shadow)
    only = {s.labels["side"]: s.value for s in samples
            if s.name == "escalator_shadow_only_tickets"}  # fmt: skip
    assert set(only) == {"production", "shadow"} and only["shadow"] > 0
