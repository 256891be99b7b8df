"""Worker throughput with the mypyc-compiled modules against plain Python (issue #22 item 5),
for bench/pipeline.py --compiled-cost.

Each round drains two copies of the same backlog one after the other, one worker run from the
source tree and one from a compiled copy (scripts/compile-engine), the order alternating
between rounds so that drift of a shared machine's speed falls on both alike; each round also
measures the ceiling (a bare consumer with fastavro) on its first backlog. A compiled run
counts only if its worker mapped the compiled modules (/proc/PID/maps): a copy whose modules
failed to load would silently measure plain Python (bench/pipeline.py's mapped_under).
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from types import ModuleType

from streams.runtime.settings import Settings

# The library mypyc builds the compiled modules into (a module's own .so is a shim over it,
# which a compiled importer may skip: the engine's is not mapped when the processor imports it)
COMPILED_SO = "__mypyc."


def maps_compiled(mapped: list[str] | None) -> bool:
    """Whether a worker's mapped files (bench/pipeline.py's mapped_under) hold that library."""
    return any(COMPILED_SO in m for m in mapped or [])


def build(dest: Path, repo: Path) -> Path:
    """The compiled copy in `dest` (scripts/compile-engine); stops the bench where it fails."""
    done = subprocess.run(["bash", str(repo / "scripts" / "compile-engine"), str(dest)])
    if done.returncode != 0:
        raise SystemExit("bench: no compiled copy (scripts/compile-engine failed, see above)")
    return dest


def run(
    settings: Settings,
    root: Path,
    history: Path,
    rounds: int,
    compiled: Path,
    bench: ModuleType,
    baseline: Path | None = None,
) -> None:
    """`rounds` pairs of drains (see module doc); prints each, the medians and their ratio.
    With `baseline`, another compiled copy (e.g. of the previous release, whose list of
    compiled modules differs) drains a third copy in each round, and its ratios print too."""
    sources = {"plain": bench.REPO, "compiled": compiled}
    if baseline is not None:
        sources["baseline"] = baseline
    ceilings: list[float] = []
    runs = bench.alternating(settings, root, history, rounds, sources, ceilings)
    for kind, drains in runs.items():
        for drain in drains:
            loaded = maps_compiled(drain.mapped)
            if loaded != (kind != "plain"):
                raise SystemExit(
                    f"bench: the {kind} worker run from {drain.source} "
                    f"{'mapped' if loaded else 'did not map'} compiled modules"
                )
    results = {kind: [d.rates() for d in drains] for kind, drains in runs.items()}
    ceil = statistics.median(ceilings)
    print(f"ceiling  : bare confluent-kafka consumer + fastavro decode: {ceil:>10,.0f} events/s"
          f" (median of {rounds}); ratio to it: " + ", ".join(
              f"{kind} {statistics.median(r[0] for r in rates) / ceil:.3f}"
              for kind, rates in results.items()))  # fmt: skip
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        plain = statistics.median(r[k] for r in results["plain"])
        fast = statistics.median(r[k] for r in results["compiled"])
        print(f"compiled : {label:<16} compiled {fast:>9,.0f}  plain {plain:>9,.0f}  (medians of "
              f"{rounds}); ratio compiled/plain {fast / plain:.3f}, gain {fast / plain - 1:+.1%}"
              f" (Docker ships them at >= +15%)")  # fmt: skip
        if "baseline" in results:
            base = statistics.median(r[k] for r in results["baseline"])
            print(f"baseline : {label:<16} baseline {base:>9,.0f}  (medians of {rounds}); "
                  f"ratio compiled/baseline {fast / base:.3f}, "
                  f"baseline/plain {base / plain:.3f}")  # fmt: skip
