"""The Faust runtime started the Faust way (`faust -A streams.cli.faust_app worker`), on the real
broker; the runtime-parametrized pipeline tests are in test_pipeline.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.runtime.faust_offsets import BrokerReader
from streams.runtime.faust_runtime import clock_topic, ensure_clock_topic
from streams.runtime.partition_time import encode_partition_time
from streams.tools.demo import free_port
from streams.tools.replay import replay
from tests.support.histories import history
from tests.support.pipeline import REPO, Pipeline, WorkerProcess

pytestmark = pytest.mark.integration


def start_faust_cli(line: Pipeline, name: str, app: str = "streams.cli.faust_app") -> WorkerProcess:
    """`faust -A APP worker` with the pipeline's settings, ESCALATOR_TOPIC_PREFIX and
    ESCALATOR_EVENT_TIME in place of the escalator command's flags."""
    data = line.root / name
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **line.env(),
        "ESCALATOR_PROCESSING_GUARANTEE": "at_least_once",
        "ESCALATOR_TOPIC_PREFIX": line.prefix,
        "ESCALATOR_EVENT_TIME": "on",
        "ESCALATOR_DATA_DIR": str(data),
        "ESCALATOR_WEB_PORT": str(port),
    }
    log = line.root / f"{name}.log"
    cmd = [sys.executable, "-m", "faust", "-A", app, "worker", "-l", "info"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = WorkerProcess(name, proc, log, port)
    line.workers.append(worker)
    return worker


def test_faust_cli_worker_equals_backtest(pipeline: Pipeline, tmp_path: Path) -> None:
    path, expected = history(tmp_path, agents=6, days=2, seed=31)
    worker = start_faust_cli(pipeline, "faust-cli")
    worker.wait_ready()
    sent, bad = replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    assert bad == 0 and sent > 500
    records = pipeline.read("escalations", "Escalation", expect=len(expected), timeout=120)
    seen = Counter(r["escalation_id"] for r in records)
    assert set(seen) == expected
    assert worker.partitions() == [0, 1, 2]


def test_extension_agent_counts_escalations_per_team(pipeline: Pipeline, tmp_path: Path) -> None:
    """streams.cli.faust_team_load: one's own agent and windowed table in Escalator's app."""
    path, expected = history(tmp_path, agents=6, days=2, seed=37)
    worker = start_faust_cli(pipeline, "team-load", app="streams.cli.faust_team_load")
    worker.wait_ready()
    replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    records = pipeline.read("escalations", "Escalation", expect=len(expected), timeout=120)
    unique = {r["escalation_id"]: r for r in records}
    assert set(unique) == expected
    # at-least-once: each copy on the topic is counted, as a consumer of the topic sees it
    wanted = dict(Counter(r["target"] for r in records))
    assert len(wanted) > 1
    url = f"http://127.0.0.1:{worker.web_port}/team-load/"
    deadline = time.monotonic() + 60
    load: dict[str, int] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            load = json.load(response)
        if load == wanted:
            break
        time.sleep(1)
    assert load == wanted


def test_clock_topic_keeps_ticks_an_hour(pipeline: Pipeline) -> None:
    """Ten ticks a second per partition would fill a week-long topic; ticks are kept an hour."""
    ensure_clock_topic(pipeline.settings, pipeline.topics)
    name = clock_topic(pipeline.settings)
    admin = AdminClient(pipeline.settings.kafka.confluent())
    deadline = time.monotonic() + 15
    while True:  # a topic just created may take a moment to show in the metadata
        meta = admin.list_topics(name, timeout=30).topics[name]
        if (meta.error is None and len(meta.partitions) == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert meta.error is None and len(meta.partitions) == 3, meta
    (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)]).values()
    config = {k: v.value for k, v in future.result(30).items()}
    assert config["retention.ms"] == "3600000" and config["segment.ms"] == "600000"


def test_the_broker_reader_finds_where_the_group_resumes_and_reads_a_gap(
    pipeline: Pipeline,
) -> None:
    """What the Faust runtime reads beside Faust's consumer when it skips events."""
    topic = pipeline.topics.ticket_events
    settings = pipeline.settings
    producer = Producer(settings.kafka.confluent())
    for n in range(6):
        producer.produce(topic, key=f"k{n}".encode(), value=f"v{n}".encode(), partition=1,
                         headers=[("h", b"x")])  # fmt: skip
    assert producer.flush(30) == 0
    group = f"{pipeline.prefix}reader-group"
    reader = BrokerReader(settings, topic, group)
    try:
        assert reader.starts([0, 1]) == {0: (0, None), 1: (0, None)}  # the earliest
        committer = Consumer({**settings.kafka.confluent(), "group.id": group})
        clock = encode_partition_time(1_790_000_000_000)
        committer.commit(offsets=[TopicPartition(topic, 0, 3, metadata=clock),
                                  TopicPartition(topic, 1, 2)], asynchronous=False)  # fmt: skip
        committer.close()
        assert reader.starts([0, 1]) == {0: (3, 1_790_000_000_000), 1: (2, None)}
        records = reader.read(1, 2, 5)
        assert [(r.offset, r.key, r.value) for r in records] == [
            (2, b"k2", b"v2"), (3, b"k3", b"v3"), (4, b"k4", b"v4")
        ]  # fmt: skip
        assert records[0].headers == [("h", b"x")] and records[0].timestamp is not None
        assert reader.read(1, 5, 5) == []  # an empty gap: the record at its end stops it
    finally:
        reader.close()
