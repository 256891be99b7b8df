"""Reading Prometheus metrics in tests: a processor's exposition as samples, and one series
scraped from a process's /metrics."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.processor import TicketProcessor
from streams.runtime.worker_metrics import metrics_exposition

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(proc: TicketProcessor, lag: Any = list) -> Samples:
    text = metrics_exposition(proc, lag)().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def metric(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == name and not labels:
            return float(value)
        if (
            series.startswith(name + "{")
            and ",".join(sorted(series[len(name) + 1 : -1].split(","))) == want
        ):
            return float(value)
    return 0.0
