"""`escalator backtest --html`: the report page opened in headless Chromium, its charts read
back from what the browser rendered and checked against the JSON report of the same run."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from streams.sla.policy import load_policy, parse_policy
from streams.tools.backtest import run_backtest
from streams.tools.generator import generate_to_file
from tests.support.browser import screenshot
from tests.support.pipeline import REPO

pytestmark = pytest.mark.integration


def test_report_page_renders_its_charts(browser: WebDriver, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    generate_to_file(history, agents=12, days=2, seed=5)
    base = load_policy()
    text = (REPO / "streams/sla/default_policy.yaml").read_text()
    other = parse_policy(text.replace("warn_at: [0.75]", "warn_at: [0.5]"), "warn-earlier.yaml")
    page = tmp_path / "report.html"
    out = io.StringIO()
    run_backtest(base, history, other=other, stdout=out, stderr=io.StringIO(), fmt="json",
                 html_path=page)  # fmt: skip
    data = json.loads(out.getvalue())
    first = data["reports"][0]
    html = page.read_text()
    assert not re.search(r"https?:|src=|href=|<script", html), "the page must load nothing"

    browser.get(page.as_uri())
    screenshot(browser, "backtest-report.png")
    assert browser.title == f"Escalator backtest: {base.source} vs warn-earlier.yaml"

    # escalations per hour by reason: one rendered bar per (hour, reason) with escalations
    chart = browser.find_element(By.ID, "chart-per-hour")
    assert chart.is_displayed() and chart.size["height"] > 100
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) == len(first["per_hour"]) > 10
    assert sum(int(b.get_attribute("data-count") or 0) for b in bars) == first["escalations"]
    tallest = max(bars, key=lambda b: int(b.get_attribute("data-count") or 0))
    assert tallest.size["height"] > 50 and tallest.size["width"] > 0  # laid out, not just markup
    titles = {b.find_element(By.TAG_NAME, "title").get_attribute("textContent") for b in bars}
    hour = first["per_hour"][0]
    assert f"{hour['hour'][:13]}h: {hour['escalations']} {hour['reason']}" in titles

    # SLA attainment by policy: a bar per (policy, metric) and policy file, labelled with the rate
    chart = browser.find_element(By.ID, "chart-attainment")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) == 2 * len(first["attainment"])
    row = next(r for r in first["attainment"] if r["rate"] is not None and r["rate"] > 0.1)
    (bar,) = [
        b for b in bars
        if (b.get_attribute("data-policy"), b.get_attribute("data-metric"),
            b.get_attribute("data-file")) == (row["policy"], row["metric"], base.source)
    ]  # fmt: skip
    assert bar.get_attribute("data-rate") == f"{row['rate']:.1%}"
    assert bar.size["width"] > 0
    assert f"{row['rate']:.1%}" in chart.text

    # the what-if: escalations by reason under each file, and the tickets that differ
    diff = data["compare"]
    chart = browser.find_element(By.ID, "chart-compare")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) == 2 * len(diff["by_reason"])
    counts = {
        (b.get_attribute("data-reason"), b.get_attribute("data-file")): int(
            b.get_attribute("data-count") or 0
        )
        for b in bars
    }
    for reason, pair in diff["by_reason"].items():
        assert counts[(reason, base.source)] == pair["base"]
        assert counts[(reason, "warn-earlier.yaml")] == pair["other"]
    assert diff["by_reason"]["SLA_WARNING"]["other"] > diff["by_reason"]["SLA_WARNING"]["base"]
    summary = browser.find_element(By.ID, "compare-summary").text
    assert summary.startswith(f"{diff['tickets_differing']:,} of {diff['tickets']:,} tickets")

    # the tables: CSAT by policy and queue, answer times by level
    csat = browser.find_element(By.ID, "csat-0").find_elements(By.TAG_NAME, "tr")
    assert len(csat) == 1 + len(first["csat"])
    answers = browser.find_element(By.ID, "answers-0").text
    assert f"L{first['answer_times'][0]['level']}" in answers
