"""A processor with a shadow policy, run over a history without Kafka, and the /metrics it
exposes."""

from __future__ import annotations

from typing import Any

from schemas.codec import codec_for
from streams.runtime.processor import Out, TicketProcessor
from streams.runtime.worker_metrics import PRODUCTION, SHADOW, WorkerStats, metrics_exposition
from streams.sla.engine import Engine
from streams.sla.policy import Policy, load_policy, parse_policy
from streams.tools.generator import generate_history
from tests.support.events import HOUR
from tests.support.policies import candidate_text
from tests.support.processor import CODEC_NAMES, TOPICS, send
from tests.support.stores import DictStore


def build(
    codecs: dict[str, Any], policy: Policy, shadow: Policy | None, now: int
) -> TicketProcessor:
    stats = WorkerStats([s.name for s in policy.sla_policies], live=False)
    shadow_stats = None if shadow is None else WorkerStats([], live=False)
    return TicketProcessor(
        Engine(policy), TOPICS, codecs, 100_000, event_time=True, wall_clock=lambda: now,
        metrics=stats, shadow=None if shadow is None else Engine(shadow),
        shadow_metrics=shadow_stats,
    )  # fmt: skip


def run(proc: TicketProcessor, store: DictStore, codecs: dict[str, Any], history: list[Any],
        end: int, restart_at: int | None = None) -> list[Out]:  # fmt: skip
    outs: list[Out] = []
    for i, e in enumerate(history):
        if i == restart_at:  # a restart: the store as the changelog restores it, a new index
            store = DictStore(store.data)
            proc.rebuild(store, [0])
        outs += send(proc, store, codecs, e, 0, i)
    return outs + proc.on_tick(store, 0, end)


def shadow_exposition() -> tuple[str, int, int, dict[str, float]]:
    """A worker's /metrics after two days of history with the candidate as its shadow policy:
    the text, production's and the shadow's escalation counts, the one-side-only tickets."""
    codecs = {name: codec_for(name) for name in CODEC_NAMES}
    history = generate_history(agents=4, days=2, seed=7)
    end = max(e.occurred_at for e in history) + HOUR
    proc = build(codecs, load_policy(), parse_policy(candidate_text()), end)
    run(proc, DictStore(), codecs, history, end)
    assert proc.shadow is not None and proc.diff is not None
    text = metrics_exposition(proc, list)().decode()
    only = {
        "production": float(proc.diff.only[PRODUCTION]),
        "shadow": float(proc.diff.only[SHADOW]),
    }
    return text, proc.counters.escalations, proc.shadow.counters.escalations, only
