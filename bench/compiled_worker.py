"""Worker throughput with the mypyc-compiled modules against plain Python (issue #22 item 5),
for bench/pipeline.py --compiled-cost.

Each round drains two copies of the same backlog one after the other, one worker run from the
source tree and one from a compiled copy (scripts/compile-engine), the order alternating
between rounds so that drift of a shared machine's speed falls on both alike. A compiled run
counts only if its worker mapped the compiled engine (/proc/PID/maps): a copy whose modules
failed to load would silently measure plain Python (bench/pipeline.py's mapped_under).
"""

from __future__ import annotations

import statistics
import subprocess
import uuid
from pathlib import Path
from types import ModuleType

from streams.runtime.settings import Settings
from streams.runtime.topics import Topics, ensure_topics

ENGINE_SO = "streams/sla/engine."  # the compiled engine's extension module, by its path


def build(dest: Path, repo: Path) -> Path:
    """The compiled copy in `dest` (scripts/compile-engine); stops the bench where it fails."""
    done = subprocess.run(["bash", str(repo / "scripts" / "compile-engine"), str(dest)])
    if done.returncode != 0:
        raise SystemExit("bench: no compiled copy (scripts/compile-engine failed, see above)")
    return dest


def run(
    settings: Settings, root: Path, history: Path, rounds: int, compiled: Path, bench: ModuleType
) -> None:
    """`rounds` pairs of drains (see module doc); prints each, the medians and their ratio."""
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "compiled": []}
    for i in range(rounds):
        order = ("plain", "compiled") if i % 2 == 0 else ("compiled", "plain")
        for kind in order:
            prefix = f"benchc{uuid.uuid4().hex[:8]}-"
            ensure_topics(settings, Topics(prefix))
            sent, _ = bench.replay(settings, history, Topics(prefix), end_tick=True)
            source = compiled if kind == "compiled" else bench.REPO
            drain = bench.Drain(prefix, f"w{i}-{kind}", sent + settings.partitions, source=source)
            bench.drain(settings, root, [drain])
            engine = any(m.startswith(ENGINE_SO) for m in drain.mapped or [])
            if engine != (kind == "compiled"):
                raise SystemExit(
                    f"bench: the {kind} worker run from {source} "
                    f"{'mapped' if engine else 'did not map'} the compiled engine"
                )
            rate, per_cpu = drain.rates()
            results[kind].append((rate, per_cpu))
            print(f"round {i + 1}/{rounds}: {kind:<8} {rate:>9,.0f} events/s "
                  f"{per_cpu:>9,.0f} events/CPU-s  (peak RSS {drain.peak_mb:,.0f} MB)")  # fmt: skip
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        plain = statistics.median(r[k] for r in results["plain"])
        fast = statistics.median(r[k] for r in results["compiled"])
        print(f"compiled : {label:<16} compiled {fast:>9,.0f}  plain {plain:>9,.0f}  (medians of "
              f"{rounds}); ratio compiled/plain {fast / plain:.3f}, gain {fast / plain - 1:+.1%}"
              f" (Docker ships them at >= +15%)")  # fmt: skip
