"""The worker processor's cost of a shadow policy (`escalator worker --shadow-policy`).

    .venv/bin/python bench/shadow.py [--agents 40] [--days 7] [--seed 7] [--repeat 3]

Runs a generated history through TicketProcessor (event time, a dict store, real Avro codecs,
no Kafka) without a shadow, then with the built-in policy as production and a candidate (the
same policy, standard first responses due twice as fast) as its shadow, and prints events/s
of each and the ratio. The shadow shares the decoded event but runs a second engine and
encodes a second state per event: about half the rate (0.54 measured on 2 shared cores, 0.48
before it shared the decode). With --repeat the runs alternate and the best of each counts.
Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.codec import codec_for  # noqa: E402
from schemas.records import ticket_event_to_avro  # noqa: E402
from streams.runtime.processor import CODECS, TicketProcessor  # noqa: E402
from streams.runtime.topics import Topics  # noqa: E402
from streams.runtime.worker_metrics import WorkerStats  # noqa: E402
from streams.sla.engine import Engine  # noqa: E402
from streams.sla.policy import load_policy, parse_policy  # noqa: E402
from streams.tools.generator import generate_history  # noqa: E402

SLOWER = "first_response: {URGENT: 1h, HIGH: 2h, NORMAL: 4h, LOW: 8h}"
FASTER = "first_response: {URGENT: 30m, HIGH: 1h, NORMAL: 2h, LOW: 4h}"


def run(raws: list[tuple[bytes, bytes, int]], shadow: bool, end: int) -> tuple[float, int]:
    """Seconds to process the history, and the records sent."""
    codecs = {name: codec_for(name) for name in CODECS}
    policy = load_policy()
    default = Path(__file__).resolve().parents[1] / "streams" / "sla" / "default_policy.yaml"
    candidate = parse_policy(default.read_text().replace(SLOWER, FASTER))
    names = [s.name for s in policy.sla_policies]
    proc = TicketProcessor(
        Engine(policy), Topics(), codecs, 1_000_000, event_time=True, wall_clock=lambda: end,
        metrics=WorkerStats(names, live=False),
        shadow=Engine(candidate) if shadow else None,
        shadow_metrics=WorkerStats(names, live=False) if shadow else None,
    )  # fmt: skip
    store: dict[bytes, bytes] = {}

    class Store:
        get, items = store.get, store.items

        def put(self, key: bytes, value: bytes) -> None:
            store[key] = value

        def delete(self, key: bytes) -> None:
            store.pop(key, None)

    target = Store()
    sent = 0
    started = time.perf_counter()
    for offset, (raw, key, at) in enumerate(raws):
        sent += len(proc.on_event(target, raw, key, 0, offset, at))
    sent += len(proc.on_tick(target, 0, end))
    return time.perf_counter() - started, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    history = generate_history(agents=args.agents, days=args.days, seed=args.seed)
    codec = codec_for("TicketEvent")
    raws = [(codec.encode(ticket_event_to_avro(e)), e.ticket_id.encode(), e.occurred_at)
            for e in history]  # fmt: skip
    end = max(at for _, _, at in raws) + 3_600_000
    best = {False: float("inf"), True: float("inf")}
    sent = {}
    for _ in range(args.repeat):
        for shadow in (False, True):
            seconds, sent[shadow] = run(raws, shadow, end)
            best[shadow] = min(best[shadow], seconds)
    n = len(raws)
    print(f"{n:,} events, one partition, event time, best of {args.repeat}")
    print(f"  production only:     {n / best[False]:>10,.0f} events/s  ({sent[False]:,} records)")
    print(f"  with a shadow policy: {n / best[True]:>9,.0f} events/s  ({sent[True]:,} records)")
    print(f"  ratio (shadow / production only): {best[False] / best[True]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
