"""The backtest report as one self-contained HTML page (`escalator backtest --html FILE`).

Inline SVG charts and inline CSS, no script and nothing fetched: the page opens offline and
can be mailed or attached to a change request. Charts: escalations per hour by reason, SLA
attainment by policy, and with --compare the what-if diff. Each bar is an SVG rect with
data-* attributes and a <title>, so a reader (or a test) can read what it shows.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from streams.sla.durations import HOUR
from streams.sla.events import format_ts
from streams.sla.report import BacktestReport, Comparison

PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#17becf",
)  # fmt: skip
WIDTH = 960
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child, td.text { text-align: left; }
svg.chart { border: 1px solid #ddd; background: #fafafa; display: block; margin: 8px 0; }
svg text { font: 11px sans-serif; fill: #333; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""


def _color(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _legend(colors: dict[str, str]) -> str:
    items = "".join(
        f'<span><i style="background:{c}"></i>{escape(name)}</span>' for name, c in colors.items()
    )
    return f'<div class="legend">{items}</div>'


def per_hour_chart(report: BacktestReport) -> str:
    """Stacked bars: escalations fired in each hour of the history, by reason."""
    cells: dict[int, dict[str, int]] = defaultdict(dict)
    for (hour, reason), n in sorted(report.per_hour.items()):
        cells[hour][reason] = n
    reasons = sorted({reason for _, reason in report.per_hour})
    colors = _color(reasons)
    if not cells:
        return '<p class="empty">no escalations</p>'
    first, last = min(cells), max(cells)
    hours = (last - first) // HOUR + 1
    height, top, left, bottom = 260, 10, 48, 40
    plot_w, plot_h = WIDTH - left - 10, height - top - bottom
    peak = max(sum(c.values()) for c in cells.values())
    step = plot_w / hours
    bar = max(step * 0.9, 0.5)
    parts = [
        f'<svg class="chart" id="chart-per-hour" width="{WIDTH}" height="{height}"'
        f' data-hours="{hours}" data-peak="{peak}">',
        f'<text x="4" y="{top + 10}">{peak}</text>',
        f'<text x="4" y="{top + plot_h}">0</text>',
        f'<text x="{left}" y="{height - 8}">{escape(format_ts(first)[:13])}h UTC</text>',
        f'<text x="{WIDTH - 170}" y="{height - 8}">{escape(format_ts(last)[:13])}h UTC</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - 10}" y2="{top + plot_h}"'
        ' stroke="#999"/>',
    ]
    for hour in sorted(cells):
        x = left + (hour - first) // HOUR * step
        y = float(top + plot_h)
        for reason in reasons:
            n = cells[hour].get(reason, 0)
            if not n:
                continue
            h = n / peak * plot_h
            y -= h
            label = f"{format_ts(hour)[:13]}h: {n} {reason}"
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{bar:.2f}" height="{h:.2f}"'
                f' fill="{colors[reason]}" data-hour="{format_ts(hour)}"'
                f' data-reason="{escape(reason)}" data-count="{n}">'
                f"<title>{escape(label)}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts) + _legend(colors)


def attainment_chart(reports: list[BacktestReport]) -> str:
    """Horizontal bars: the share of decided SLA clocks met, per policy and metric, one bar per
    backtested policy file."""
    rows = sorted({key for report in reports for key in report.attainment})
    files = [report.policy_source for report in reports]
    colors = _color(files)
    row_h, left, top = 18 * len(reports) + 8, 260, 10
    height = top + row_h * len(rows) + 24
    plot_w = WIDTH - left - 70
    parts = [
        f'<svg class="chart" id="chart-attainment" width="{WIDTH}" height="{height}"'
        f' data-rows="{len(rows)}">'
    ]
    for i, (policy, metric) in enumerate(rows):
        y0 = top + i * row_h
        parts.append(f'<text x="4" y="{y0 + 13}">{escape(policy)} / {escape(metric)}</text>')
        for j, report in enumerate(reports):
            cell = report.attainment.get((policy, metric))
            rate = None if cell is None else cell.rate
            y = y0 + j * 18
            shown = "-" if rate is None else f"{rate:.1%}"
            label = f"{policy} / {metric} ({report.policy_source}): {shown} met"
            if cell is not None:
                label += f" ({cell.met} met, {cell.missed} missed, {cell.open} open)"
            parts.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{(rate or 0) * plot_w:.2f}"'
                f' height="14" fill="{colors[report.policy_source]}"'
                f' data-policy="{escape(policy)}" data-metric="{escape(metric)}"'
                f' data-file="{escape(report.policy_source)}" data-rate="{shown}">'
                f"<title>{escape(label)}</title></rect>"
                f'<text x="{left + (rate or 0) * plot_w + 4:.2f}" y="{y + 11}">{shown}</text>'
            )
    parts.append("</svg>")
    return "".join(parts) + (_legend(colors) if len(reports) > 1 else "")


def compare_chart(diff: Comparison) -> str:
    """Grouped bars: escalations by reason under each policy file, and the tickets whose
    escalations differ."""
    reasons = list(diff.by_reason)
    colors = _color([diff.base, diff.other])
    peak = max([1, *(max(a, b) for a, b in diff.by_reason.values())])
    row_h, left, top = 44, 230, 10
    height = top + row_h * len(reasons) + 10
    plot_w = WIDTH - left - 80
    parts = [
        f'<svg class="chart" id="chart-compare" width="{WIDTH}" height="{height}"'
        f' data-rows="{len(reasons)}">'
    ]
    for i, reason in enumerate(reasons):
        y0 = top + i * row_h
        parts.append(f'<text x="4" y="{y0 + 18}">{escape(reason)}</text>')
        for j, (name, n) in enumerate(
            zip((diff.base, diff.other), diff.by_reason[reason], strict=True)
        ):
            y = y0 + j * 18
            width = n / peak * plot_w
            parts.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{width:.2f}" height="14"'
                f' fill="{colors[name]}" data-reason="{escape(reason)}"'
                f' data-file="{escape(name)}" data-count="{n}">'
                f"<title>{escape(f'{reason}: {n} under {name}')}</title></rect>"
                f'<text x="{left + width + 4:.2f}" y="{y + 11}">{n}</text>'
            )
    parts.append("</svg>")
    return "".join(parts) + _legend(colors)


def _table(headers: list[str], rows: list[list[Any]], css_id: str) -> str:
    if not rows:
        return f'<p class="empty" id="{css_id}">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<table id="{css_id}"><tr>{head}</tr>{body}</table>'


def _hours(ms: object) -> str:
    return "-" if not isinstance(ms, int) else f"{ms / HOUR:.2f}h"


def _report_section(index: int, report: BacktestReport) -> str:
    data = report.to_dict()
    summary = [
        ["events", data["events"]],
        ["tickets", data["tickets"]],
        ["escalations", data["escalations"]],
        ["priority bumps", data["priority_bumps"]],
        ["reminders", data["reminders"]],
        ["queue ops alerts", len(report.ops_alerts)],
    ]
    csat = [
        [r["policy"], r["queue"], r["surveys"], f"{r['mean']:.2f}", f"{r['satisfied']:.1%}"]
        for r in report.csat_rows()
    ]
    answers = [
        [f"L{r['level']}", r["answered"], _hours(r["p50_ms"]), _hours(r["p90_ms"]),
         r["unanswered"]]
        for r in report.answer_rows()
    ]  # fmt: skip
    alerts = [
        [a["window_end"], a["kind"], a["queue"], a["message"]] for a in report.alert_rows()[:200]
    ]
    return "".join(
        [
            f'<section id="report-{index}"><h2>{escape(report.policy_source)}</h2>',
            _table(["", "count"], summary, f"summary-{index}"),
            "<h3>CSAT by SLA policy and queue</h3>",
            _table(["policy", "queue", "surveys", "mean", "satisfied"], csat, f"csat-{index}"),
            "<h3>Time to answer an escalation, by level</h3>",
            _table(
                ["level", "answered", "p50", "p90", "never answered"], answers, f"answers-{index}"
            ),  # fmt: skip
            "<h3>Queue ops alerts over the history</h3>",
            _table(["window end", "alert", "queue", "message"], alerts, f"alerts-{index}"),
            "</section>",
        ]
    )


def render_report(reports: list[BacktestReport], diff: Comparison | None = None) -> str:
    """The whole page: charts first, then each report's tables."""
    title = "Escalator backtest: " + " vs ".join(r.policy_source for r in reports)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<h2>Escalations per hour by reason ({escape(reports[0].policy_source)})</h2>",
        per_hour_chart(reports[0]),
        "<h2>SLA attainment by policy (met / decided)</h2>",
        attainment_chart(reports),
    ]
    if diff is not None:
        parts += [
            "<h2>What-if: escalations by reason</h2>",
            f'<p id="compare-summary">{len(diff.differing):,} of {diff.tickets:,} tickets'
            f" escalate differently ({diff.only_base:,} only under {escape(diff.base)},"
            f" {diff.only_other:,} only under {escape(diff.other)}); {len(diff.moved):,}"
            " escalations sent by both at different times</p>",
            compare_chart(diff),
        ]
    parts += [_report_section(i, report) for i, report in enumerate(reports)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
