from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.sla.events import (
    EventType,
    Priority,
    Status,
    TicketEvent,
    event_from_dict,
    event_to_dict,
)
from streams.tools.generator import (
    CATEGORIES,
    CHANNELS,
    DEFAULT_START,
    GROUP_LEVELS,
    TIERS,
    TRIGGER_TAGS,
    GenerateSummary,
    generate_history,
    generate_to_file,
)
from streams.tools.history import read_history

HOUR = 3_600_000
START = int(DEFAULT_START.timestamp() * 1000)
END = START + 7 * 24 * HOUR


@pytest.fixture(scope="module")
def history() -> list[TicketEvent]:
    return generate_history(agents=50, days=7, seed=42)


@pytest.fixture(scope="module")
def tickets(history: list[TicketEvent]) -> dict[str, list[TicketEvent]]:
    by_ticket: dict[str, list[TicketEvent]] = defaultdict(list)
    for event in history:
        by_ticket[event.ticket_id].append(event)
    return by_ticket


def test_same_seed_same_history_other_seed_differs() -> None:
    a = generate_history(agents=8, days=3, seed=7)
    assert a == generate_history(agents=8, days=3, seed=7)
    b = generate_history(agents=8, days=3, seed=8)
    assert a != b
    assert len(a) > 100 and len(b) > 100


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    one, two = tmp_path / "one.jsonl.gz", tmp_path / "two.jsonl.gz"
    s1 = generate_to_file(one, agents=5, days=2, seed=3)
    s2 = generate_to_file(two, agents=5, days=2, seed=3)
    assert s1 == s2
    assert one.read_bytes() == two.read_bytes()


def test_sorted_unique_and_inside_the_window(history: list[TicketEvent]) -> None:
    keys = [(e.occurred_at, e.event_id) for e in history]
    assert keys == sorted(keys)
    assert len({e.event_id for e in history}) == len(history)
    assert all(START <= e.occurred_at < END for e in history)


def test_per_ticket_events_strictly_increase(tickets: dict[str, list[TicketEvent]]) -> None:
    for ticket_id, events in tickets.items():
        assert events[0].type is EventType.CREATED, ticket_id
        assert sum(e.type is EventType.CREATED for e in events) == 1
        times = [e.occurred_at for e in events]
        assert all(a < b for a, b in zip(times, times[1:], strict=False)), ticket_id
        assert [e.event_id for e in events] == [
            f"{ticket_id}-{i:03d}" for i in range(1, len(events) + 1)
        ]


def test_every_event_validates(history: list[TicketEvent]) -> None:
    for event in history:
        data = event_to_dict(event)
        assert event_from_dict(json.loads(json.dumps(data))) == event


def test_vocabulary(history: list[TicketEvent]) -> None:
    assert {e.channel for e in history if e.channel} == set(CHANNELS)
    assert {e.category for e in history if e.category} == set(CATEGORIES)
    assert {e.customer_tier for e in history if e.customer_tier} == set(TIERS)
    assert {e.group for e in history if e.group} == set(GROUP_LEVELS)
    for event in history:
        if event.group is not None:
            assert event.support_level == GROUP_LEVELS[event.group]
    created = [e for e in history if e.type is EventType.CREATED]
    assert all(e.status is Status.NEW and e.priority and e.customer_id for e in created)
    share = Counter(e.priority for e in created)
    assert 0.45 < share[Priority.NORMAL] / len(created) < 0.65
    assert 0.02 < share[Priority.URGENT] / len(created) < 0.12
    assert len({e.customer_id for e in created}) < len(created)  # repeat customers


def test_every_event_type_and_status_appears(history: list[TicketEvent]) -> None:
    # acknowledgements answer escalations, which the generator (upstream of the engine) never sees
    assert {e.type for e in history} == set(EventType) - {EventType.ESCALATION_ACKNOWLEDGED}
    changed_to = {e.status for e in history if e.type is EventType.STATUS_CHANGED}
    assert {Status.PENDING, Status.ON_HOLD, Status.OPEN} <= changed_to
    assert {e.status for e in history if e.status} == set(Status)


def test_every_trigger_tag_appears(history: list[TicketEvent]) -> None:
    tags = Counter(t for e in history for t in e.tags_added)
    assert set(TRIGGER_TAGS) <= set(tags)
    created = sum(e.type is EventType.CREATED for e in history)
    # trigger tags are rare (the surge adds system_crash on top)
    for tag in TRIGGER_TAGS:
        if tag != "system_crash":
            assert tags[tag] < 0.04 * created, tag
    assert any(e.type is EventType.TAGS_CHANGED and e.tags_added for e in history)
    assert any(e.tags_removed for e in history)


def test_escalation_material(tickets: dict[str, list[TicketEvent]]) -> None:
    transfers = Counter(sum(e.type is EventType.TRANSFERRED for e in es) for es in tickets.values())
    assert sum(n for k, n in transfers.items() if k >= 3) >= 5
    reopens = Counter(sum(e.type is EventType.REOPENED for e in es) for es in tickets.values())
    assert reopens[2] >= 3

    long_pending = 0
    for events in tickets.values():
        since = None
        for e in events:
            if e.status is Status.PENDING:
                since = e.occurred_at
            elif e.status is not None and since is not None:
                long_pending += e.occurred_at - since > 48 * HOUR
                since = None
    assert long_pending >= 5

    first_response = []
    for events in tickets.values():
        reply = next((e for e in events if e.type is EventType.AGENT_REPLIED), None)
        if reply is not None:
            first_response.append(reply.occurred_at - events[0].occurred_at)
    slow = sum(t > 4 * HOUR for t in first_response) / len(first_response)
    assert 0.04 < slow < 0.20
    assert sum(t > HOUR for t in first_response) / len(first_response) > slow

    assert any(
        e.type is EventType.PRIORITY_CHANGED and e.priority is Priority.URGENT
        for es in tickets.values()
        for e in es
    )


def test_surge(history: list[TicketEvent]) -> None:
    per_hour = Counter(e.occurred_at // HOUR for e in history if e.type is EventType.CREATED)
    counts = [per_hour.get(h, 0) for h in range(START // HOUR, END // HOUR)]
    assert max(counts) > 5 * statistics.median(counts)
    peak = max(range(len(counts)), key=counts.__getitem__)
    hour_start = START + peak * HOUR
    in_peak = [
        e
        for e in history
        if e.type is EventType.CREATED and hour_start <= e.occurred_at < hour_start + HOUR
    ]
    assert sum(e.category in ("it", "product") for e in in_peak) > 0.6 * len(in_peak)
    assert sum("system_crash" in e.tags_added for e in in_peak) > 0.15 * len(in_peak)


def test_daily_shape(history: list[TicketEvent]) -> None:
    created = [e for e in history if e.type is EventType.CREATED]
    local = [
        datetime.fromtimestamp(e.occurred_at / 1000, UTC) - timedelta(hours=5) for e in created
    ]
    weekday = [d for d in local if d.weekday() < 5]
    weekend = [d for d in local if d.weekday() >= 5]
    assert len(weekend) / 2 < 0.5 * len(weekday) / 5
    day = sum(10 <= d.hour < 15 for d in weekday)
    night = sum(d.hour < 5 for d in weekday)
    assert day > 8 * night


def test_csat(history: list[TicketEvent]) -> None:
    scores = [e.csat for e in history if e.type is EventType.CSAT_RECEIVED]
    assert scores and all(s is not None and 1 <= s <= 5 for s in scores)
    assert set(scores) == {1, 2, 3, 4, 5}
    assert statistics.mean(s for s in scores if s is not None) > 3.3


def test_volume_scales_with_agents() -> None:
    def created(agents: int) -> int:
        history = generate_history(agents=agents, days=3, seed=1)
        return sum(e.type is EventType.CREATED for e in history)

    small, large = created(10), created(40)
    assert 3.0 < large / small < 5.0
    assert 8 * 10 * 3 * 0.5 < small < 12 * 10 * 3 * 1.5


def test_custom_start_and_bad_arguments() -> None:
    start = datetime(2027, 3, 1, 6, 30, tzinfo=UTC)
    history = generate_history(agents=5, days=2, seed=1, start=start)
    start_ms = int(start.timestamp() * 1000)
    assert history and all(start_ms <= e.occurred_at < start_ms + 2 * 24 * HOUR for e in history)
    with pytest.raises(ValueError, match="time zone"):
        generate_history(agents=5, days=2, seed=1, start=datetime(2027, 3, 1))
    with pytest.raises(ValueError, match="agents"):
        generate_history(agents=0, days=2, seed=1)
    with pytest.raises(ValueError, match="days"):
        generate_history(agents=1, days=0, seed=1)


def test_generate_to_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    seen: list[int] = []
    summary = generate_to_file(path, agents=60, days=3, seed=5, progress=seen.append)
    events = generate_history(agents=60, days=3, seed=5)
    assert summary == GenerateSummary(
        tickets=sum(e.type is EventType.CREATED for e in events), events=len(events)
    )
    assert len(seen) >= 2 and sum(seen) == len(events)  # increments
    assert all(n == 10_000 for n in seen[:-1]) and 0 < seen[-1] <= 10_000
    assert list(read_history(path)) == events
