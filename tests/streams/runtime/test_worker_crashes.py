"""The exactly-once event-time worker, killed at any message and restarted from what it
committed, against the backtest of the same history and a run that never stopped: no
escalation lost or repeated, each at the instant the backtest fires it; every partition's
committed records as the undisturbed run's, in the same order, and its changelog restoring the
same states, whatever order the partitions' messages arrive in, with a shadow policy or not.

No broker: the worker's transactions go to a producer that keeps what each commit makes
visible and drops what a kill leaves open (an aborted transaction), and a restarted worker
restores its stores from the committed changelog, as it would from Kafka's, and reads each
partition again from its committed offset. tests/integration/test_pipeline.py kills a worker
on the real broker for one history; this drives many interleavings and kill points quickly."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.worker_digest import WALL_MS, Message, messages
from schemas.codec import codec_for
from schemas.records import ticket_event_to_avro
from streams.runtime.alerts import AlertsProcess
from streams.runtime.alerts import Stats as AlertsStats
from streams.runtime.processor import TICK_HEADER, SteadyClock, build_processor, encode_tick
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import Topics
from streams.runtime.worker import Partitions, Worker, changelog_topic
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import OpsAlerts, Policy, load_policy, parse_policy
from streams.sla.queues import ClosedWindow, PartitionClock, QueueStat, QueueWindows, alerts_of
from streams.tools import backtest
from streams.tools.backtest import backtest_events
from streams.tools.generator import generate_to_file
from streams.tools.partitioner import ticket_partition
from tests.support.histories import arrived_late, history_fired
from tests.support.policies import alerts_policy, candidate_text

PARTITIONS = 3
TOPICS = Topics("crash-")


@dataclass
class Broker:
    """What the worker's transactions made visible: records per (topic, partition) in commit
    order, and the committed offsets of ticket-events. A record produced in a transaction that
    never commits is never seen, as under read_committed."""

    changelog: str
    records: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    committed: dict[int, TopicPartition] = field(default_factory=dict)

    def changelog_of(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        return self.records.get((self.changelog, partition), [])

    @property
    def offsets(self) -> dict[int, int]:
        return {p: tp.offset for p, tp in self.committed.items()}

    def committed_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        """What consumer.committed() answers: offset and metadata, or no offset."""
        return [self.committed.get(p, TopicPartition(TOPICS.ticket_events, p)) for p in partitions]


class TransactionalProducer:
    """The worker's transactional calls against a Broker; a kill drops the open transaction."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.open: list[tuple[str, int, bytes, bytes | None]] = []
        self.offsets: list[TopicPartition] = []

    def begin_transaction(self) -> None:
        assert not self.open

    def produce(self, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
        self.open.append((topic, partition, key, value))

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group: Any, timeout: float
    ) -> None:
        self.offsets = offsets

    def commit_transaction(self, timeout: float) -> None:
        for topic, partition, key, value in self.open:
            self.broker.records.setdefault((topic, partition), []).append((key, value))
        self.broker.committed.update((tp.partition, tp) for tp in self.offsets)
        self.open, self.offsets = [], []

    def poll(self, timeout: float) -> int:
        return 0


def worker_settings(tmp_path: Path, partitions: int = PARTITIONS) -> Settings:
    return load_settings(
        {"ESCALATOR_DATA_DIR": str(tmp_path), "ESCALATOR_STORE": "memory://",
         "ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ESCALATOR_PARTITIONS": str(partitions)}
    )  # fmt: skip


def started(
    settings: Settings, broker: Broker, shadow: Policy | None = None, policy: Policy | None = None
) -> Worker:
    """An event-time worker that owns every partition, its stores restored from the broker's
    changelog and its due index rebuilt from them, as after an assignment; `shadow`: the
    candidate policy it also runs (--shadow-policy); `policy`: the default one's otherwise."""
    processor = build_processor(settings, policy or load_policy(), TOPICS, True, shadow)
    for lane in [processor] if processor.shadow is None else [processor, processor.shadow]:
        lane.clock = SteadyClock(lambda: WALL_MS, lambda: 0.0)  # emitted_at is fixed
    worker = Worker(settings, processor, TOPICS, event_time=True)
    worker.consumer.close()  # never read: the test hands the worker its messages
    worker.producer = TransactionalProducer(broker)  # type: ignore[assignment]
    everything = list(range(settings.partitions))
    worker.savepoint = processor.savepoint()
    worker._resume_from(broker.committed_offsets(everything))  # as an assignment begins
    for p in everything:
        store = worker.state.open(p)
        for key, value in broker.changelog_of(p):
            store.load(key, value)
    for _ in processor.rebuilding(Partitions(worker.state, everything), everything):
        pass
    worker._set_owned(everything)
    worker.rebalancing = False
    return worker


def partitioned(path: Path) -> list[list[Message]]:
    """The history as ticket-events, each partition's messages in order, ending in a tick at
    the history's last instant (so what falls due by then fires, as in the backtest)."""
    every = messages(path, PARTITIONS)
    return [[m for m in every if m.partition() == p] for p in range(PARTITIONS)]


def arrivals(lanes: list[list[Message]], start: dict[int, int], rnd: Random) -> Iterator[Message]:
    """Each partition's messages from its offset in `start`, in order, partitions interleaved
    at random in runs of 1-40, as a consumer fetches them."""
    pos = {p: start.get(p, 0) for p in range(len(lanes))}
    while True:
        left = [p for p, at in pos.items() if at < len(lanes[p])]
        if not left:
            return
        p = rnd.choice(left)
        run = lanes[p][pos[p] : pos[p] + rnd.randint(1, 40)]
        pos[p] += len(run)
        yield from run


def run(
    settings: Settings,
    lanes: list[list[Message]],
    rnd: Random,
    kills: int,
    commit_every: int,
    shadow: Policy | None = None,
    workers: list[Worker] | None = None,
    stop_before: frozenset[tuple[int, int]] = frozenset(),
    policy: Policy | None = None,
) -> tuple[Broker, int]:
    """Drive the lanes to the end through workers killed at `kills` random messages, each
    followed by a new one; returns what they committed and how many messages were read twice
    (`workers` gets each worker started). A worker about to read a message of `stop_before`
    (partition, offset) commits and dies first, so the next one starts right at it."""
    broker = Broker(changelog_topic(settings))
    total = sum(len(lane) for lane in lanes)
    kill_at = sorted(rnd.sample(range(1, total), kills))
    stops = set(stop_before)
    read = 0
    while True:
        worker = started(settings, broker, shadow, policy)
        if workers is not None:
            workers.append(worker)
        for i, msg in enumerate(arrivals(lanes, broker.offsets, rnd), 1):
            if (msg.partition(), msg.offset()) in stops:
                stops.discard((msg.partition(), msg.offset()))
                worker._commit()
                break
            worker._handle(msg)  # type: ignore[arg-type]
            read += 1
            if kill_at and read == kill_at[0]:
                kill_at.pop(0)
                break  # SIGKILL: its open transaction never commits
            if i % commit_every == 0:
                worker._commit()
        else:
            worker._commit()
            return broker, read - total


@dataclass(frozen=True)
class History:
    """A generated history as the worker reads it, and what the backtest fires for it."""

    settings: Settings = field(repr=False)
    lanes: list[list[Message]] = field(repr=False)
    fired: dict[str, int] = field(repr=False)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    tmp = tmp_path_factory.mktemp("crashes")
    path, fired = history_fired(tmp, agents=4, days=3, seed=23)
    settings = worker_settings(tmp / "data")
    return History(settings, partitioned(path), fired)


CANDIDATE = parse_policy(candidate_text(), "candidate.yaml")


@pytest.fixture(scope="module")
def undisturbed(history: History) -> dict[bool, Broker]:
    """What a worker that never stopped commits, without and with a shadow policy."""
    runs = {}
    for shadow in (False, True):
        runs[shadow], again = run(history.settings, history.lanes, Random(0), 0, 50,
                                  CANDIDATE if shadow else None)  # fmt: skip
        assert again == 0
    assert (TOPICS.shadow_escalations, 0) in runs[True].records
    return runs


def escalations(broker: Broker) -> tuple[dict[str, int], int]:
    """fired_at by escalation id, and the number of escalation records, as committed."""
    codec = codec_for("Escalation", load_settings({}), TOPICS)
    fired: dict[str, int] = {}
    records = 0
    for (topic, _), values in broker.records.items():
        if topic == TOPICS.escalations:
            for _, value in values:
                assert value is not None
                record = codec.decode(value)
                fired[record["escalation_id"]] = record["fired_at"]
                records += 1
    return fired, records


def restored(broker: Broker) -> dict[int, dict[bytes, bytes]]:
    """What a restore of each changelog partition holds: the last value of each key."""
    stores: dict[int, dict[bytes, bytes | None]] = {}
    for (topic, p), values in broker.records.items():
        if topic == broker.changelog:
            stores[p] = dict(values)
    return {p: {k: v for k, v in kept.items() if v is not None} for p, kept in stores.items()}


def outputs(broker: Broker) -> dict[tuple[str, int], list[tuple[bytes, bytes | None]]]:
    """Every record but the changelog's, whose number depends on the commits (a transaction
    sends each ticket's last state once)."""
    return {tp: values for tp, values in broker.records.items() if tp[0] != broker.changelog}


def test_an_undisturbed_worker_fires_what_the_backtest_fires(
    history: History, undisturbed: dict[bool, Broker]
) -> None:
    assert len(history.fired) > 100
    for broker in undisturbed.values():  # a shadow policy changes nothing of production's
        fired, records = escalations(broker)
        assert fired == history.fired and records == len(history.fired)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kills=st.integers(1, 4),
    commit_every=st.sampled_from([1, 7, 60, 400]),
    shadow=st.booleans(),
)
def test_a_worker_killed_anywhere_commits_what_an_undisturbed_one_does(
    history: History,
    undisturbed: dict[bool, Broker],
    seed: int,
    kills: int,
    commit_every: int,
    shadow: bool,
) -> None:
    """With a shadow policy too: its escalations and states, kept in production's stores and
    transactions, survive the same kills."""
    broker, again = run(history.settings, history.lanes, Random(seed), kills, commit_every,
                        CANDIDATE if shadow else None)  # fmt: skip
    assert again >= kills  # each kill loses at least the message it was handling
    fired, records = escalations(broker)
    assert fired == history.fired and records == len(history.fired)  # once, at the instants
    expected = undisturbed[shadow]
    assert outputs(broker) == outputs(expected)  # every topic and partition, in order
    assert restored(broker) == restored(expected)
    assert broker.offsets == expected.offsets


HOUR_MS = 3_600_000
LATE = 1_790_000_000_000  # the partition's clock when the late event comes


@pytest.mark.parametrize("restart", [False, True])
def test_a_restart_keeps_the_clock_that_silences_a_late_event(
    tmp_path: Path, restart: bool
) -> None:
    """An event more than the backfill horizon (24 h) behind its partition's clock pages
    nobody. A worker restarted just before it resumes the clock committed with the offset
    (streams.runtime.partition_time) and silences it too: without that, it started from no
    clock and escalated a 30-hour-old legal threat to level 5."""
    settings = worker_settings(tmp_path)
    codec = codec_for("TicketEvent", settings, TOPICS)
    events = [
        TicketEvent("a-1", "A", EventType.CREATED, LATE - 2 * HOUR_MS, channel="email"),
        TicketEvent("a-2", "A", EventType.AGENT_REPLIED, LATE),
        TicketEvent(
            "b-1",
            "B",
            EventType.CREATED,
            LATE - 30 * HOUR_MS,
            channel="email",
            tags_added=("legal",),
        ),
    ]
    lane = [Message(codec.encode(ticket_event_to_avro(e)), e.ticket_id.encode(), 0, offset, None)
            for offset, e in enumerate(events)]  # fmt: skip
    broker = Broker(changelog_topic(settings))
    worker = started(settings, broker)
    for msg in lane:
        if restart and msg.offset() == 2:
            worker._commit()
            worker = started(settings, broker)
            assert broker.committed[0].metadata == f'{{"v":1,"wm":{LATE}}}'
        worker._handle(msg)  # type: ignore[arg-type]
    worker._commit()
    assert escalations(broker) == ({}, 0)
    silenced = worker.processor.counters.silenced  # type: ignore[attr-defined]
    assert sum(silenced.values()) >= 1


def lanes_of(events: list[TicketEvent], settings: Settings) -> list[list[Message]]:
    """The events in arrival order on ticket-events, each in its ticket's partition as the
    producers put it (murmur2), then an end tick on each partition at the history's end."""
    codec = codec_for("TicketEvent", settings, TOPICS)
    lanes: list[list[Message]] = [[] for _ in range(settings.partitions)]
    for e in events:
        p = ticket_partition(e.ticket_id, settings.partitions)
        value = codec.encode(ticket_event_to_avro(e))
        lanes[p].append(Message(value, e.ticket_id.encode(), p, len(lanes[p]), None))
    end = encode_tick(max(e.occurred_at for e in events))
    for p, lane in enumerate(lanes):
        lane.append(Message(end, None, p, len(lane), [(TICK_HEADER, b"1")]))
    return lanes


def backtest_fired(events: list[TicketEvent], partitions: int) -> dict[str, int]:
    """fired_at by escalation id, as `escalator backtest --arrival-order --partitions N`."""
    return backtest_arrival(events, partitions)[0]


@dataclass(frozen=True)
class Ops:
    """What the queue ops alerts made of a run's queue stats."""

    counted: frozenset[str]  # the stats' ids
    late: int  # dropped: older than their partition's clock less the allowed lateness
    alerts: list[str]  # ids, sorted


class CountingWindows(QueueWindows):
    """The backtest's windows, keeping the id of every stat they count."""

    def __init__(self, config: OpsAlerts) -> None:
        super().__init__(config)
        self.counted: set[str] = set()

    def add(self, stat: QueueStat) -> bool:
        counted = super().add(stat)
        if counted:
            self.counted.add(stat.id)
        return counted


def backtest_arrival(
    events: list[TicketEvent], partitions: int, policy: Policy | None = None
) -> tuple[dict[str, int], dict[str, int], Ops | None]:
    """`escalator backtest --arrival-order --partitions N`: fired_at by escalation id, what
    it silenced (the backfill horizon) by reason, and its queue ops when `policy` has them."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backtest, "QueueWindows", CountingWindows)
        (report,) = backtest_events(
            [policy or load_policy()], events, [out], arrival_order=True, partitions=partitions
        )
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    fired = {r["escalation_id"]: r["fired_at"] for r in records if r["action"] == "escalation"}
    ops = None
    if isinstance(report.ops, CountingWindows):
        alerts = sorted(a.alert_id for a in report.ops_alerts)
        ops = Ops(frozenset(report.ops.counted), report.ops_late, alerts)
    return fired, dict(report.silenced), ops


def alerts_read(broker: Broker, partitions: int, policy: Policy, rnd: Random) -> Ops:
    """What `escalator alerts` makes of the queue stats the worker committed: its own reading
    of each message (AlertsProcess._take), the partitions interleaved at random, the windows
    closed now and then as after a batch, and last at the end ticks' heartbeats."""
    alerts = AlertsProcess.__new__(AlertsProcess)  # no consumer or producer: no broker here
    config = policy.ops_alerts
    alerts.clock = PartitionClock(range(partitions), config.allowed_lateness)
    alerts.windows = QueueWindows(config)
    alerts.stats = AlertsStats()
    committed = [broker.records.get((TOPICS.queue_stats, p), []) for p in range(partitions)]
    lanes = [
        [Message(value or b"", key, p, n, None) for n, (key, value) in enumerate(stats)]
        for p, stats in enumerate(committed)
    ]
    counted: set[str] = set()
    closed: list[ClosedWindow] = []
    for msg in arrivals(lanes, {}, rnd):
        taken = alerts._take(msg)  # type: ignore[arg-type]
        if taken is not None and taken.stat is not None:
            counted.add(taken.stat.id)
        watermark = alerts.clock.watermark
        if watermark is not None and rnd.random() < 0.02:
            closed += alerts.windows.close_until(watermark)
    watermark = alerts.clock.watermark
    assert watermark is not None  # every partition's end tick sent its heartbeat
    closed += alerts.windows.close_until(watermark)
    ids = sorted(a.alert_id for a in alerts_of(closed))
    return Ops(frozenset(counted), alerts.windows.late, ids)


@pytest.fixture(scope="module")
def late_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("late") / "history.jsonl"
    generate_to_file(path, agents=20, days=3, seed=29)
    return path


def worker_fired(
    events: list[TicketEvent], partitions: int, tmp_path: Path, policy: Policy | None = None
) -> tuple[dict[str, int], dict[str, int], Broker]:
    """fired_at by escalation id, as the event-time worker commits them on `partitions`
    partitions, read in a random interleaving of its partitions (`arrivals`), what it
    silenced by reason (escalator_silenced_total), and all it committed."""
    settings = worker_settings(tmp_path, partitions)
    workers: list[Worker] = []
    broker, again = run(settings, lanes_of(events, settings), Random(partitions), 0, 50,
                        workers=workers, policy=policy)  # fmt: skip
    fired, records = escalations(broker)
    assert again == 0 and records == len(fired)
    (worker,) = workers
    return fired, dict(worker.processor.counters.silenced), broker  # type: ignore[attr-defined]


@pytest.mark.parametrize(("seed", "partitions"), [(2, 6), (3, 6), (5, 2), (7, 12)])
def test_an_arrival_order_backtest_fires_what_the_worker_fires_on_its_partitions(
    late_history: Path, tmp_path: Path, seed: int, partitions: int
) -> None:
    """`backtest --arrival-order` keeps a clock per partition, as the worker does, and fires
    the same escalations at the same instants, and silences the same, whatever the
    interleaving of the partitions. Its queue ops alerts count the stats `escalator alerts`
    counts of what the worker sent, drop the same ones as late, by their own partition's
    clock, and raise the same alerts."""
    _, policy = alerts_policy(tmp_path)  # the default policy with small ops alerts
    events = arrived_late(late_history, Random(seed))
    fired, silenced, broker = worker_fired(events, partitions, tmp_path, policy)
    assert len(fired) > 500
    live = alerts_read(broker, partitions, policy, Random(seed))
    assert len(live.counted) > 1000 and live.late > 20 and live.alerts
    assert backtest_arrival(events, partitions, policy) == (fired, silenced, live)


@dataclass(frozen=True)
class LateLanes:
    """A history delivered late as the worker reads it, and what the backtest fires for it."""

    settings: Settings = field(repr=False)
    lanes: list[list[Message]] = field(repr=False)
    fired: dict[str, int] = field(repr=False)
    late: frozenset[tuple[int, int]]  # (partition, offset): over 24 h behind its partition


@pytest.fixture(scope="module")
def late_lanes(tmp_path_factory: pytest.TempPathFactory) -> LateLanes:
    tmp = tmp_path_factory.mktemp("late-lanes")
    generate_to_file(tmp / "history.jsonl", agents=4, days=3, seed=41)
    events = arrived_late(tmp / "history.jsonl", Random(20))
    settings = worker_settings(tmp / "data")
    fired, silenced, _ = backtest_arrival(events, PARTITIONS)
    assert len(fired) > 100 and sum(silenced.values()) == 4  # late past the horizon
    clocks = [0] * PARTITIONS
    offsets = [0] * PARTITIONS
    late = set()
    for e in events:
        p = ticket_partition(e.ticket_id, PARTITIONS)
        if e.occurred_at < clocks[p] - 24 * HOUR_MS:
            late.add((p, offsets[p]))
        clocks[p] = max(clocks[p], e.occurred_at)
        offsets[p] += 1
    assert len(late) > 5
    return LateLanes(settings, lanes_of(events, settings), fired, frozenset(late))


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kills=st.integers(1, 4),
    commit_every=st.sampled_from([1, 7, 60, 400]),
    restart_at_late=st.booleans(),
)
def test_a_worker_killed_anywhere_on_late_events_fires_what_the_backtest_fires(
    late_lanes: LateLanes, seed: int, kills: int, commit_every: int, restart_at_late: bool
) -> None:
    """Late events decide through each partition's clock, which every restart resumes from
    the offsets (streams.runtime.partition_time): killed anywhere, and restarted right before
    each event over 24 h late, the worker still fires exactly what `backtest --arrival-order`
    fires, once, and silences the rest."""
    stops = late_lanes.late if restart_at_late else frozenset()
    broker, again = run(late_lanes.settings, late_lanes.lanes, Random(seed), kills, commit_every,
                        stop_before=stops)  # fmt: skip
    assert again >= kills
    fired, records = escalations(broker)
    assert fired == late_lanes.fired and records == len(late_lanes.fired)


def test_one_clock_for_the_whole_file_fired_deadlines_the_worker_never_fires(
    late_history: Path, tmp_path: Path
) -> None:
    """With one clock, a ticket's deadline fired once other partitions' events passed it,
    before its own partition's late answer arrived; the worker reads the answer first (here
    an SLA warning and a next-response breach the worker never sent)."""
    events = arrived_late(late_history, Random(2))
    fired, _, _ = worker_fired(events, 6, tmp_path)
    one_clock = backtest_fired(events, 1)
    assert set(fired) < set(one_clock)
    assert {k: one_clock[k] for k in fired} == fired
