"""Soak: the pipeline at a steady rate for a long time; its memory must stay flat (figures).

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 100] [--warmup 2]

The chaos run's setup without its faults (bench/chaos.py: a broker and a Redis of its own,
three event-time workers, ingest, the Redis sink and the webhook sink posting to a local
receiver); a generated history sized for the run is posted through ingest at a steady rate.
Every 10 s it samples the resident memory (VmRSS, the process and its children) of each
worker, sink and ingest, and at the end prints each one's first and last sample and the
least-squares slope in MB/h over the samples after the warm-up (restores, caches and
allocator arenas filling up), plus the events sent. A slope near 0 is flat memory; a
process that grows by more than 10 MB/h is flagged.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.*, tests.integration

from bench.chaos import Sender, chaos_setup, log  # noqa: E402
from bench.pipeline import memory_mb  # noqa: E402
from connectors.generator import generate_to_file  # noqa: E402

SAMPLE_S = 10.0
FLAT_MB_PER_H = 10.0


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB/h."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 3600 if var else 0.0


def run_soak(root: Path, minutes: float, rate: float, warmup_min: float) -> list[str]:
    seconds = minutes * 60
    history = root / "history.jsonl"
    agents = max(5, int(rate * seconds / 55))
    summary = generate_to_file(history, agents=agents, days=1, seed=7)
    lines = [raw for raw in history.read_text().splitlines() if raw.strip()]
    rate = len(lines) / seconds
    log(f"history: {summary.tickets:,} tickets, {len(lines):,} events; {rate:.0f} events/s")
    with chaos_setup(root, seed=7) as (_services, _line, _receiver, cluster):
        ingest = cluster.procs["ingest"]
        sender = Sender(f"http://127.0.0.1:{ingest.web_port}", lines, rate)
        sending = threading.Thread(target=sender.run, daemon=True)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cluster.procs}
        started = time.monotonic()
        sending.start()
        while sending.is_alive():
            at = time.monotonic() - started
            for name, proc in cluster.procs.items():
                if proc.proc.poll() is not None:
                    raise SystemExit(f"{name} exited during the soak:\n{proc.log_text()[-2000:]}")
                samples[name].append((at, memory_mb(proc.proc.pid)))
            if len(samples["ingest"]) % 30 == 0:
                log(f"{sender.sent:,} events sent; " + ", ".join(
                    f"{n} {s[-1][1]:.0f} MB" for n, s in samples.items()
                ))  # fmt: skip
            time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started - at)))
        if sender.error:
            raise SystemExit(f"sending failed: {sender.error}")
    out = [
        f"soak     : {minutes:g} min, {sender.sent:,} events through ingest at {rate:.0f}/s;"
        f" RSS sampled every {SAMPLE_S:g} s, slope after {warmup_min:g} min of warm-up"
    ]
    for name, series in samples.items():
        steady = [(t, m) for t, m in series if t >= warmup_min * 60]
        slope = slope_per_hour(steady)
        flag = "flat" if abs(slope) <= FLAT_MB_PER_H else "GROWS" if slope > 0 else "shrinks"
        out.append(
            f"{name:<13}: RSS {series[0][1]:6.0f} MB at start, {steady[0][1] if steady else 0:6.0f}"
            f" after warm-up, {series[-1][1]:6.0f} at the end; slope {slope:+7.1f} MB/h ({flag})"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events a second via ingest")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the slope")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        for text in run_soak(root, args.minutes, args.rate, args.warmup):
            print(text)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
