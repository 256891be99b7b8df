"""Queue-level ops alerts: hopping windows, alert rules, watermark, and the worker's stats."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import codec_for
from schemas.records import ops_alert_id, ticket_event_to_avro
from streams.runtime.processor import TicketProcessor
from streams.runtime.queue_stats import decode_stat, encode_heartbeat, encode_stat
from streams.runtime.topics import Topics
from streams.sla.durations import MINUTE
from streams.sla.engine import Engine
from streams.sla.events import EventType, TicketEvent
from streams.sla.policy import OpsAlerts, PolicyError, load_policy, parse_policy
from streams.sla.queues import (
    AlertKind,
    ClosedWindow,
    PartitionClock,
    QueueStat,
    QueueWindows,
    StatKind,
    alert_id,
    alerts_of,
    queue_name,
)
from tests.support.stores import DictStore

T0 = 1_793_620_800_000  # 2026-11-02 10:00 UTC, a whole hour

C, R, B = StatKind.CREATED, StatKind.RESOLVED, StatKind.BREACHED


def config(**overrides: object) -> OpsAlerts:
    base: dict[str, object] = {
        "window": "5m",
        "hop": "1m",
        "allowed_lateness": "1m",
        "volume_surge": {"factor": 3.0, "baseline_windows": 3, "min_created": 5},
        "backlog_growth": {"min_growth": 5, "ratio": 2.0, "consecutive": 2},
        "breach_rate_spike": {"rate": 0.5, "min_breaches": 3},
    }
    base.update(overrides)
    return OpsAlerts.model_validate(base)


_ids = iter(range(10**9))


def stat(kind: StatKind, minute: float, queue: str = "email/billing") -> QueueStat:
    return QueueStat(queue, kind, T0 + int(minute * MINUTE), f"{kind.value[0]}:{next(_ids)}")


def windows_of(closed: list[ClosedWindow], queue: str) -> list[tuple[int, int, int, int]]:
    return [
        ((w.window_start - T0) // MINUTE, w.created, w.resolved, w.breached)
        for w in closed
        if w.queue == queue
    ]


# --------------------------------------------------------------------------- basics


def test_queue_name() -> None:
    assert queue_name("email", "billing") == "email/billing"
    assert queue_name(None, "billing") == "unknown/billing"
    assert queue_name("chat", None) == "chat/unknown"


def test_alert_id_is_the_schema_function() -> None:
    for kind in AlertKind:
        assert alert_id(kind, "q/x", 1, 2) == ops_alert_id(str(kind), "q/x", 1, 2)
    assert alert_id("VOLUME_SURGE", "q", 1, 2) != alert_id("VOLUME_SURGE", "q", 2, 3)


def test_a_stat_counts_in_every_hopping_window_that_holds_it() -> None:
    qw = QueueWindows(config())
    assert qw.add(stat(C, 2.5))
    assert qw.add(stat(R, 2.5))
    closed = qw.close_until(T0 + 10 * MINUTE)
    # Windows start every minute and last 5: the ones starting at -2..2 hold 2.5; then empties.
    assert windows_of(closed, "email/billing") == [
        (-2, 1, 1, 0), (-1, 1, 1, 0), (0, 1, 1, 0), (1, 1, 1, 0), (2, 1, 1, 0),
        (3, 0, 0, 0), (4, 0, 0, 0), (5, 0, 0, 0),
    ]  # fmt: skip
    assert all(w.window_end - w.window_start == 5 * MINUTE for w in closed)
    assert qw.close_until(T0 + 10 * MINUTE) == []  # nothing closes twice


def test_duplicates_count_once_and_late_stats_are_dropped() -> None:
    qw = QueueWindows(config())
    first = stat(C, 1)
    assert qw.add(first)
    assert not qw.add(first)
    assert qw.duplicates == 1
    qw.close_until(T0 + 6 * MINUTE)
    assert not qw.add(stat(C, 5.9))  # before the last close: its windows may be out already
    assert qw.late == 1
    assert qw.add(stat(C, 6))


def test_windows_close_in_end_then_queue_order_for_all_queues() -> None:
    qw = QueueWindows(config(window="2m", hop="1m"))
    qw.add(stat(C, 0, "phone/it"))
    qw.add(stat(C, 0, "chat/billing"))
    closed = qw.close_until(T0 + 3 * MINUTE)
    assert [(w.window_end, w.queue) for w in closed] == sorted(
        (w.window_end, w.queue) for w in closed
    )
    assert {w.queue for w in closed} == {"phone/it", "chat/billing"}


# --------------------------------------------------------------------------- rules


def test_volume_surge_needs_a_baseline_and_fires_once_per_surge() -> None:
    cfg = config(window="1m", hop="1m")  # tumbling, to count easily
    qw = QueueWindows(cfg)
    for minute in range(0, 6):
        for _ in range(2):
            qw.add(stat(C, minute + 0.5))
    for minute in (6, 7):  # surge: 8 > 3 x 2 and >= 5, for two windows
        for _ in range(8):
            qw.add(stat(C, minute + 0.5))
    closed = qw.close_until(T0 + 10 * MINUTE)
    alerts = [a for a in alerts_of(closed) if a.kind is AlertKind.VOLUME_SURGE]
    assert [(a.window_start - T0) // MINUTE for a in alerts] == [6]
    (surge,) = alerts
    assert surge.observed == 8 and surge.baseline == 2 and surge.threshold == 6
    assert surge.alert_id == alert_id(AlertKind.VOLUME_SURGE, "email/billing",
                                      surge.window_start, surge.window_end)  # fmt: skip
    assert "8 tickets created" in surge.message


def test_volume_surge_baseline_uses_non_overlapping_windows_before() -> None:
    cfg = config(window="2m", hop="1m", volume_surge={"factor": 2.0, "baseline_windows": 2,
                                                       "min_created": 1})  # fmt: skip
    qw = QueueWindows(cfg)
    # minute buckets 0..3 hold 1 each, bucket 4-5 hold 6 each.
    for minute in range(4):
        qw.add(stat(C, minute))
    for minute in (4, 5):
        for _ in range(6):
            qw.add(stat(C, minute))
    alerts = alerts_of(qw.close_until(T0 + 8 * MINUTE))
    first = [a for a in alerts if a.kind is AlertKind.VOLUME_SURGE][0]
    # window [3,5) has 7; the baseline windows are [1,3) and [-1,1): 2 and 1.
    assert (first.window_start - T0) // MINUTE == 3
    assert first.baseline == 1.5 and first.observed == 7


def test_no_surge_alert_for_a_new_queue_without_history() -> None:
    qw = QueueWindows(config(window="1m", hop="1m"))
    for _ in range(50):
        qw.add(stat(C, 0.5))
    assert alerts_of(qw.close_until(T0 + 3 * MINUTE)) == []


def test_backlog_growth_after_consecutive_windows() -> None:
    cfg = config(window="1m", hop="1m")
    qw = QueueWindows(cfg)
    plan = {0: (6, 1), 1: (6, 1), 2: (6, 1), 3: (1, 1), 4: (10, 0), 5: (10, 6)}
    for minute, (created, resolved) in plan.items():
        for _ in range(created):
            qw.add(stat(C, minute + 0.1))
        for _ in range(resolved):
            qw.add(stat(R, minute + 0.2))
    alerts = alerts_of(qw.close_until(T0 + 8 * MINUTE))
    backlog = [a for a in alerts if a.kind is AlertKind.BACKLOG_GROWTH]
    # holds in 0,1,2 (fires at 1, the 2nd in a row), not in 3, in 4 only (5: 10 < 2 x 6)
    assert [(a.window_start - T0) // MINUTE for a in backlog] == [1]
    assert backlog[0].observed == 5 and backlog[0].baseline == 1


def test_breach_rate_spike() -> None:
    qw = QueueWindows(config(window="1m", hop="1m"))
    for _ in range(4):
        qw.add(stat(C, 0.5))
        qw.add(stat(B, 0.6))
    for _ in range(10):
        qw.add(stat(C, 1.5))
    for _ in range(3):
        qw.add(stat(B, 1.6))
    for _ in range(3):
        qw.add(stat(B, 2.5))  # no tickets created: rate counts per at least one
    alerts = alerts_of(qw.close_until(T0 + 4 * MINUTE))
    spikes = [
        (a.window_start - T0) // MINUTE for a in alerts if a.kind is AlertKind.BREACH_RATE_SPIKE
    ]
    assert spikes == [0, 2]  # 4/4 fires; 3/10 does not; 3/0 fires again
    assert alerts[0].observed == 1.0 and alerts[0].threshold == 0.5


def test_queue_windows_survive_pickle_with_their_stats_windows_and_alerts() -> None:
    """`backtest --jobs` sends them between processes; compiled (pyproject's
    compiled-modules), the frozen records pickle by their fields."""
    qw = QueueWindows(config(window="1m", hop="1m"))
    for minute in (0.5, 0.6, 0.7, 1.5):
        qw.add(stat(C, minute))
        qw.add(stat(B, minute + 0.1))
    closed = qw.close_until(T0 + 2 * MINUTE)
    assert alerts_of(closed)  # an alert rides in a closed window
    copy = pickle.loads(pickle.dumps(qw))
    assert copy.history("email/billing") == qw.history("email/billing") == closed
    assert pickle.loads(pickle.dumps(stat(R, 3))).kind is R
    for later in (qw, copy):
        later.add(stat(C, 2.5))
        assert later.add(stat(C, 0.1)) is False  # late in both
    assert copy.close_until(T0 + 4 * MINUTE) == qw.close_until(T0 + 4 * MINUTE)
    assert (copy.added, copy.duplicates, copy.late) == (qw.added, qw.duplicates, qw.late)


def test_a_partition_clock_survives_pickle() -> None:
    clock = PartitionClock([0, 1], 5)
    clock.observe(0, 100)
    copy = pickle.loads(pickle.dumps(clock))
    assert copy.watermark is None and copy.lateness == 5
    for c in (clock, copy):
        c.observe(1, 50)
        assert c.observe(0, 100, 94) is False
    assert copy.watermark == clock.watermark == 45


# --------------------------------------------------------------------------- watermark


def test_partition_clock_is_the_slowest_partition_minus_lateness() -> None:
    clock = PartitionClock([0, 1, 2], lateness=MINUTE)
    assert clock.observe(0, T0 + 10 * MINUTE)
    assert clock.observe(1, T0 + 5 * MINUTE)
    assert clock.watermark is None  # partition 2 has said nothing yet
    assert clock.observe(2, T0 + 7 * MINUTE)
    assert clock.watermark == T0 + 4 * MINUTE
    assert clock.observe(1, T0 + 3 * MINUTE)  # a clock never goes back
    assert clock.watermark == T0 + 4 * MINUTE
    # Late means older than its own partition's clock minus the lateness.
    assert clock.observe(0, T0 + 10 * MINUTE, at=T0 + 9 * MINUTE)
    assert not clock.observe(0, T0 + 10 * MINUTE, at=T0 + 8 * MINUTE)


def test_every_stat_of_a_message_is_judged_against_the_clock_it_carries() -> None:
    """A late ticket event's stats all carry the partition's clock before that event: each
    is late if older than that clock less the lateness, the first one too (it was judged
    against the clock of the partition's previous message, which counted it where the
    next one, a minute newer, was late)."""
    clock = PartitionClock([0], lateness=MINUTE)
    assert clock.observe(0, T0)  # a heartbeat, long before
    assert not clock.observe(0, T0 + 60 * MINUTE, at=T0 + 30 * MINUTE)
    assert not clock.observe(0, T0 + 60 * MINUTE, at=T0 + 31 * MINUTE)
    assert clock.observe(0, T0 + 60 * MINUTE, at=T0 + 59 * MINUTE)
    # and a message never moves the clock back
    assert not clock.observe(0, T0 + 5 * MINUTE, at=T0 + 58 * MINUTE)


# --------------------------------------------------------------------------- property

QUEUES = ["email/billing", "chat/it", "phone/unknown"]
stat_strategy = st.builds(
    lambda q, k, m, i: QueueStat(QUEUES[q], k, T0 + m * 7_000, f"id{i}"),
    st.integers(0, 2),
    st.sampled_from(list(StatKind)),
    st.integers(0, 400),
    st.integers(0, 10**6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stats=st.lists(stat_strategy, min_size=1, max_size=150, unique_by=lambda s: s.id),
    seed=st.integers(0, 10**6),
    hop=st.sampled_from([30_000, 60_000]),
    steps=st.integers(1, 4),
)
def test_any_order_with_duplicates_and_any_closing_gives_the_same_windows(
    stats: list[QueueStat], seed: int, hop: int, steps: int
) -> None:
    cfg = config(
        window=f"{hop * steps // 1000}s", hop=f"{hop // 1000}s",
        volume_surge={"factor": 1.5, "baseline_windows": 2, "min_created": 2},
        backlog_growth={"min_growth": 2, "ratio": 1.5, "consecutive": 2},
        breach_rate_spike={"rate": 0.3, "min_breaches": 1},
    )  # fmt: skip
    end = T0 + 400 * 7_000 + 10 * MINUTE
    reference = QueueWindows(cfg)
    for s in stats:
        assert reference.add(s)
    expected = reference.close_until(end)

    rng = random.Random(seed)
    shuffled = stats + rng.sample(stats, k=len(stats) // 3)  # redeliveries
    rng.shuffle(shuffled)
    live = QueueWindows(cfg)
    got: list[ClosedWindow] = []
    for i, s in enumerate(shuffled):
        live.add(s)
        if rng.random() < 0.2:  # close as far as no stat still to come would be late
            rest = [r.at for r in shuffled[i + 1 :]]
            if rest:
                got.extend(live.close_until(min(rest) - rng.randrange(0, 3 * MINUTE)))
    got.extend(live.close_until(end))
    assert live.late == 0
    assert sorted(got, key=ClosedWindow.key) == expected
    assert sorted(a.alert_id for a in alerts_of(got)) == sorted(
        a.alert_id for a in alerts_of(expected)
    )
    assert len({w.key() for w in got}) == len(got)  # no window closed twice


# --------------------------------------------------------------------------- policy


def test_default_policy_has_ops_alerts() -> None:
    ops = load_policy().ops_alerts
    assert ops.enabled and ops.window == 15 * MINUTE and ops.hop == 5 * MINUTE


def test_ops_alerts_errors_name_line_and_field() -> None:
    text = (Path(__file__).parents[3] / "streams/sla/default_policy.yaml").read_text()
    bad = text.replace("  hop: 5m", "  hop: 4m").replace("min_breaches: 10", "min_breaches: 0")
    with pytest.raises(PolicyError) as info:
        parse_policy(bad, "p.yaml")
    lines = info.value.lines()
    line_of = {n + 1: line for n, line in enumerate(bad.splitlines())}
    assert any("ops_alerts.breach_rate_spike.min_breaches" in line for line in lines), lines
    for line in lines:
        number = int(line.split(":")[1])
        assert line_of[number].strip().startswith(("hop", "min_breaches")), line
    bad = text.replace("  hop: 5m", "  hop: 4m")
    with pytest.raises(PolicyError, match=r"p.yaml:\d+: ops_alerts.hop: hop \(4m\) must divide"):
        parse_policy(bad, "p.yaml")


def test_ops_alerts_section_is_optional() -> None:
    text = (Path(__file__).parents[3] / "streams/sla/default_policy.yaml").read_text()
    cut = text[: text.index("\n# Queue-level ops alerts")]
    assert parse_policy(cut).ops_alerts == OpsAlerts()


# --------------------------------------------------------------------------- worker side


def test_stat_messages_round_trip() -> None:
    s = QueueStat("email/billing", StatKind.BREACHED, T0, "b:abc")
    decoded = decode_stat(encode_stat(s, T0 + 5))
    assert decoded.stat == s and decoded.wm == T0 + 5
    beat = decode_stat(encode_heartbeat(T0))
    assert beat.stat is None and beat.wm == T0
    for bad in (b"", b"[]", b'{"v": 2}', b'{"v": 1, "kind": "x", "wm": 1}', b'{"v":1,"wm":"1"}'):
        with pytest.raises(ValueError):
            decode_stat(bad)


def test_processor_sends_created_resolved_breach_and_heartbeat_stats() -> None:
    codecs = {n: codec_for(n) for n in ("TicketEvent", "Escalation", "PriorityBump",
                                        "Reminder", "DeadLetter")}  # fmt: skip
    topics = Topics("t-")
    proc = TicketProcessor(Engine(load_policy()), topics, codecs, 1_000_000, event_time=True,
                           wall_clock=lambda: T0)  # fmt: skip
    store = DictStore()

    def event(eid: str, etype: EventType, minute: int, **extra: object) -> bytes:
        ev = TicketEvent(event_id=eid, ticket_id="T1", type=etype,
                         occurred_at=T0 - 3 * 86_400_000 + minute * MINUTE, **extra)  # type: ignore[arg-type]  # fmt: skip
        return codecs["TicketEvent"].encode(ticket_event_to_avro(ev))

    def stats(outs: list) -> list:  # type: ignore[type-arg]
        return [decode_stat(o.value) for o in outs if o.topic == topics.queue_stats]

    first = stats(proc.on_event(store, event("e1", EventType.CREATED, 0, channel="chat",
                                             category="it"), b"T1", 2, 10, None))  # fmt: skip
    assert [(m.stat.kind, m.stat.queue, m.stat.id) for m in first if m.stat] == [
        (StatKind.CREATED, "chat/it", "c:e1")
    ]
    assert stats(proc.on_event(store, event("e1", EventType.CREATED, 0), b"T1", 2, 11, None)) == []
    # A day later: its first response (and more) breached; the tick fires and counts them.
    tick = stats(proc.on_tick(store, 2, T0 - 2 * 86_400_000))
    breaches = [m.stat for m in tick if m.stat is not None]
    assert breaches and all(s.kind is StatKind.BREACHED and s.queue == "chat/it" for s in breaches)
    assert [s.at for s in breaches] == sorted(s.at for s in breaches)
    assert tick[-1].stat is None and tick[-1].wm == T0 - 2 * 86_400_000  # heartbeat
    resolved = stats(proc.on_event(store, event("e2", EventType.RESOLVED, 2 * 1440),
                                   b"T1", 2, 12, None))  # fmt: skip
    assert [m.stat.kind for m in resolved if m.stat] == [StatKind.RESOLVED]
