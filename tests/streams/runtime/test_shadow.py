"""The shadow policy in the processor (no Kafka): its own state in the same store, its records
on shadow-escalations, production untouched, and the production/shadow diff metrics."""

from __future__ import annotations

import marshal
from typing import Any

import pytest

from schemas.codec import codec_for
from streams.runtime.processor import SHADOW_KEYS, Out, decode_shadow
from streams.runtime.worker_metrics import PRODUCTION, SHADOW, ShadowDiff
from streams.sla.policy import Policy, load_policy, parse_policy
from streams.tools.generator import generate_history
from tests.support.events import HOUR, T0, event
from tests.support.metrics import scrape, value
from tests.support.policies import candidate_text
from tests.support.processor import CODEC_NAMES, TOPICS, index_of, send
from tests.support.shadow import build, run
from tests.support.stores import DictStore


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)


@pytest.fixture(scope="module")
def codecs() -> dict[str, Any]:
    return {name: codec_for(name) for name in CODEC_NAMES}


@pytest.fixture(scope="module")
def candidate() -> Policy:
    return parse_policy(candidate_text())


def records(codecs: dict[str, Any], outs: list[Out], topic: str) -> list[tuple[str, int]]:
    """(escalation id, fired_at) of the escalations on a topic, whatever else it holds."""
    decoded = [decode_shadow(codecs, o.value) for o in outs if o.topic == topic and o.value]
    return [(r["escalation_id"], r["fired_at"]) for name, r in decoded if name == "Escalation"]


def test_shadow_equals_the_candidate_run_alone_and_production_is_untouched(
    codecs: dict[str, Any], candidate: Policy
) -> None:
    history = generate_history(agents=6, days=2, seed=7)
    end = max(e.occurred_at for e in history) + HOUR
    production = load_policy()
    alone = run(build(codecs, production, None, end), DictStore(), codecs, history, end)
    as_production = run(build(codecs, candidate, None, end), DictStore(), codecs, history, end)
    store = DictStore()
    both = run(build(codecs, production, candidate, end), store, codecs, history, end,
               restart_at=len(history) // 2)  # fmt: skip

    # Production: the very same messages, in the same order, as without a shadow.
    assert [o for o in both if o.topic != TOPICS.shadow_escalations] == alone
    # The shadow: what the candidate sends as production, every type, on one topic.
    shadow = [o for o in both if o.topic == TOPICS.shadow_escalations]
    kept = {TOPICS.escalations, TOPICS.priority_bumps, TOPICS.reminders}
    assert [o.value for o in shadow] == [o.value for o in as_production if o.topic in kept]
    expected = records(codecs, as_production, TOPICS.escalations)
    assert records(codecs, both, TOPICS.shadow_escalations) == expected
    # The candidate differs: the comparison is not empty on either side.
    assert set(expected) != set(records(codecs, alone, TOPICS.escalations))
    # Its own state: every ticket twice in the store, once under the shadow keys.
    shadow_keys = {k[len(SHADOW_KEYS) :] for k in store.data if k.startswith(SHADOW_KEYS)}
    assert shadow_keys and shadow_keys == {k for k in store.data if not k.startswith(b"\0")}


def test_a_ticket_id_under_the_shadow_keys_goes_to_the_dlq(codecs: dict[str, Any]) -> None:
    proc = build(codecs, load_policy(), load_policy(), T0)
    store = DictStore()
    outs = send(proc, store, codecs, event("\0shadow:A", "e1", T0))
    assert [o.topic for o in outs] == [TOPICS.dlq] and not store.data


def test_diff_counts_tickets_escalated_by_one_side_only() -> None:
    diff = ShadowDiff()
    diff.escalated(0, b"A", PRODUCTION)
    diff.escalated(0, b"A", PRODUCTION)  # a second escalation of the same ticket
    diff.escalated(0, b"B", SHADOW)
    diff.escalated(1, b"C", SHADOW)
    assert diff.only == {PRODUCTION: 1, SHADOW: 2}
    diff.escalated(0, b"B", PRODUCTION)  # both now: in neither count, and stays so
    diff.escalated(0, b"B", SHADOW)
    assert diff.only == {PRODUCTION: 1, SHADOW: 1}
    diff.left(0, b"A")  # production removed the ticket
    assert diff.only == {PRODUCTION: 0, SHADOW: 1}
    diff.forget([1])  # partition 1 revoked
    assert diff.only == {PRODUCTION: 0, SHADOW: 0}
    diff.escalated(0, b"A", SHADOW)  # a ticket that left counts afresh
    assert diff.only == {PRODUCTION: 0, SHADOW: 1}


def test_metrics_show_shadow_escalations_and_the_diff(
    codecs: dict[str, Any], candidate: Policy
) -> None:
    history = generate_history(agents=6, days=2, seed=7)
    end = max(e.occurred_at for e in history) + HOUR
    proc = build(codecs, load_policy(), candidate, end)
    outs = run(proc, DictStore(), codecs, history, end)
    samples = scrape(proc)
    shadow = [decode_shadow(codecs, o.value) for o in outs
              if o.topic == TOPICS.shadow_escalations and o.value]  # fmt: skip
    fired = [r for name, r in shadow if name == "Escalation"]
    assert len(fired) < len(shadow)  # bumps or reminders too
    counted = sum(v for (name, _), v in samples.items()
                  if name == "escalator_shadow_escalations_total")  # fmt: skip
    assert counted == len(fired) > 0
    by_ticket: dict[str, set[str]] = {}
    for o in outs:
        if o.topic == TOPICS.escalations:
            by_ticket.setdefault(o.key.decode(), set()).add("production")
    for r in fired:
        by_ticket.setdefault(r["ticket_id"], set()).add("shadow")
    for side in ("production", "shadow"):
        want = sum(1 for sides in by_ticket.values() if sides == {side})
        assert value(samples, "escalator_shadow_only_tickets", side=side) == want
    assert value(samples, "escalator_shadow_only_tickets", side="shadow") > 0


def test_without_a_shadow_policy_its_states_are_skipped_then_deleted(
    codecs: dict[str, Any], candidate: Policy
) -> None:
    history = generate_history(agents=4, days=1, seed=3)
    end = max(e.occurred_at for e in history) + HOUR
    store = DictStore()
    run(build(codecs, load_policy(), candidate, end), store, codecs, history, end)
    tickets = {k for k in store.data if not k.startswith(SHADOW_KEYS)}
    assert len(store.data) == 2 * len(tickets)
    # Restarted without the shadow: production's index holds its own tickets only ...
    alone, restored = build(codecs, load_policy(), None, end), DictStore(store.data)
    assert alone.rebuild(restored, [0]) == len(tickets)
    # ... and the shadow's states go with the partition's next message (changelog tombstones).
    assert len(restored.data) == 2 * len(tickets)
    alone.on_tick(restored, 0, end)
    assert set(restored.data) == tickets


def test_a_saved_due_index_holds_the_shadow_lane_too(
    codecs: dict[str, Any], candidate: Policy
) -> None:
    history = generate_history(agents=4, days=1, seed=3)
    end = max(e.occurred_at for e in history) + HOUR
    mid = len(history) // 2
    live, store = build(codecs, load_policy(), candidate, end), DictStore()
    run(live, store, codecs, history[:mid], history[mid].occurred_at)
    saved = marshal.loads(marshal.dumps(live.saved_index(0)))  # as the file holds it
    loaded = build(codecs, load_policy(), candidate, end)
    assert loaded.load_index(0, saved) is not None
    rebuilt = build(codecs, load_policy(), candidate, end)
    rebuilt.rebuild(store, [0])
    assert loaded.shadow is not None and rebuilt.shadow is not None
    assert index_of(loaded, 0) == index_of(rebuilt, 0)
    assert index_of(loaded.shadow, 0) == index_of(rebuilt.shadow, 0)
    assert index_of(loaded.shadow, 0)[0], "the shadow lane has tickets due"
    # without the shadow policy, the index is rebuilt (the shadow's states are then orphans)
    assert build(codecs, load_policy(), None, end).load_index(0, saved) is None
    rest = history[mid:]
    expected = run(rebuilt, DictStore(store.data), codecs, rest, end)
    assert run(loaded, DictStore(store.data), codecs, rest, end) == expected
