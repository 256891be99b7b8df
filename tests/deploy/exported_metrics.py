"""Which metric names the code exports, and which ones a PromQL expression uses.

Shared by the alert-rule and dashboard tests, so a rule or a panel can never name a metric
that no process exports. Exported names come from the code itself: every module of the
streams and connectors packages is imported (each component declares its metrics at module
level, in prometheus_client's default REGISTRY), and the worker's scrape-time collector is
run on a processor that has seen an event and a wall-clock tick, as a live worker has.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable
from functools import cache

from prometheus_client import REGISTRY
from prometheus_client.core import Metric

SUFFIXES = {  # the series of a family that has no sample yet (no label values seen)
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}
# PromQL words that look like metric names: aggregations, set operators, modifiers, literals.
KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "and", "or", "unless", "atan2", "by", "without", "on",
    "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan",
}  # fmt: skip
PACKAGES = ("streams", "connectors")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "1m", text)  # Grafana variables ($__rate_interval, ...)
    text = re.sub(r"label_values\(([^,()]*),[^()]*\)", r"(\1)", text)  # Grafana: (metric, label)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def sample_names(family: Metric) -> set[str]:
    """The series names a metric family exposes (counters lose `_total` in family.name)."""
    if family.samples:
        return {sample.name for sample in family.samples}
    return {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}


def _worker_families() -> Iterable[Metric]:
    from schemas.codec import codec_for
    from schemas.records import ticket_event_to_avro
    from streams.runtime.processor import CODECS, TicketProcessor
    from streams.runtime.topics import Topics
    from streams.runtime.worker_metrics import WorkerCollector, WorkerStats
    from streams.sla.engine import Engine
    from streams.sla.events import EventType, TicketEvent
    from streams.sla.policy import load_policy
    from tests.support.stores import DictStore

    policy = load_policy()
    codecs = {name: codec_for(name) for name in CODECS}
    stats = WorkerStats((sla.name for sla in policy.sla_policies), live=True)
    processor = TicketProcessor(Engine(policy), Topics(), codecs, 100_000, metrics=stats)
    store = DictStore()
    processor.rebuild(store, [0])
    now = processor.wall_clock()
    event = TicketEvent("e1", "T1", EventType.CREATED, now)
    raw = codecs["TicketEvent"].encode(ticket_event_to_avro(event))
    processor.on_event(store, raw, b"T1", 0, 0, now)
    processor.on_tick(store, 0, now)
    return WorkerCollector(processor, lambda: [("ticket-events", 0, 0)]).collect()


@cache
def exported_metric_names() -> frozenset[str]:
    """Series names exported by the code: every module's REGISTRY metrics and the worker's."""
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
    names: set[str] = set()
    for family in [*REGISTRY.collect(), *_worker_families()]:
        names |= sample_names(family)
    return frozenset(n for n in names if n.startswith("escalator_"))
