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
from pathlib import Path
from types import ModuleType

from streams.runtime.settings import Settings

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
    runs = bench.alternating(
        settings, root, history, rounds, {"plain": bench.REPO, "compiled": compiled}
    )
    for kind, drains in runs.items():
        for drain in drains:
            engine = any(m.startswith(ENGINE_SO) for m in drain.mapped or [])
            if engine != (kind == "compiled"):
                raise SystemExit(
                    f"bench: the {kind} worker run from {drain.source} "
                    f"{'mapped' if engine else 'did not map'} the compiled engine"
                )
    results = {kind: [d.rates() for d in drains] for kind, drains in runs.items()}
    for label, k in (("events/s (wall)", 0), ("events/CPU-s", 1)):
        plain = statistics.median(r[k] for r in results["plain"])
        fast = statistics.median(r[k] for r in results["compiled"])
        print(f"compiled : {label:<16} compiled {fast:>9,.0f}  plain {plain:>9,.0f}  (medians of "
              f"{rounds}); ratio compiled/plain {fast / plain:.3f}, gain {fast / plain - 1:+.1%}"
              f" (Docker ships them at >= +15%)")  # fmt: skip
