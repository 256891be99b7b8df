"""The alerting rules deploy/prometheus/alerts.yaml: promtool check and unit tests, chart copy.

promtool comes from Debian's prometheus package (scripts/setup installs it); without it these
tests fail, they never skip. scripts/test runs the same promtool commands as a CI step; running
them here too puts a failure in the junit report next to the other tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.exported_metrics import exported_metric_names, metric_names

REPO_DIR = Path(__file__).resolve().parents[2]
RULES = REPO_DIR / "deploy" / "prometheus" / "alerts.yaml"
RULES_TEST = REPO_DIR / "deploy" / "prometheus" / "alerts_test.yaml"
CHART_COPY = REPO_DIR / "deploy" / "helm" / "escalator" / "files" / "alerts.yaml"
# What the issue asks alerts for: breach rate above target, detection latency p99 above 1 s,
# DLQ growing, consumer lag growing, worker absent, clock stalled.
REQUIRED = {
    "EscalatorBreachRatioHigh",
    "EscalatorDetectionLatencyHigh",
    "EscalatorDeadLettersGrowing",
    "EscalatorConsumerLagGrowing",
    "EscalatorWorkerAbsent",
    "EscalatorClockStalled",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: run scripts/setup (Debian package prometheus)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=300, check=False)


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_summary_a_description_and_a_severity() -> None:
    names = {str(rule["alert"]) for rule in alerts()}
    assert names >= REQUIRED
    for rule in alerts():
        annotations = rule.get("annotations") or {}
        assert isinstance(annotations, dict)
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        labels = rule.get("labels") or {}
        assert isinstance(labels, dict)
        assert labels.get("severity") in ("warning", "critical"), rule["alert"]


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    """Each alert appears in alerts_test.yaml once with expected alerts and once without."""
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULES_TEST.read_text("utf-8"))["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {str(rule["alert"]) for rule in alerts()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_chart_copy_is_identical_to_the_canonical_rules() -> None:
    assert CHART_COPY.read_bytes() == RULES.read_bytes(), (
        f"{CHART_COPY.relative_to(REPO_DIR)} differs from {RULES.relative_to(REPO_DIR)}: "
        f"cp {RULES.relative_to(REPO_DIR)} {CHART_COPY.relative_to(REPO_DIR)}"
    )


def test_rules_use_only_metrics_the_processes_export() -> None:
    exported = exported_metric_names()
    for rule in alerts():
        used = metric_names(str(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], sorted(used - exported))


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (namespace, le) (rate(x_seconds_bucket{a="b"}[5m])))'
        " > 1 and on (pod) absent(y_total offset 1d) or time() - z"
    )
    assert metric_names(expr) == {"x_seconds_bucket", "y_total", "z"}
    grafana = (
        'sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval])) / ${b} + label_values(c, d)'
    )
    assert metric_names(grafana) == {"a_bucket", "c"}
