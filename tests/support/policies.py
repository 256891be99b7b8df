"""Policies tests share: LIVE_POLICY (a breach a minute after creation), the shadow candidate
(the default policy with faster first responses) and the default policy with small ops alerts."""

from __future__ import annotations

from pathlib import Path

from streams.sla.policy import Policy, parse_policy

LIVE_POLICY = """
version: 1
sla_policies:
  - name: fast
    targets: {first_response: 1m, resolution: 1h}
    warn_at: [0.5]
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: lead, contact: team-lead}
  executive: {contact: exec}
"""


# The default policy, and the shadow candidate made of it: standard tickets' first response due
# in half the time.
DEFAULT = Path(__file__).resolve().parents[2] / "streams" / "sla" / "default_policy.yaml"
SLOWER = "first_response: {URGENT: 1h, HIGH: 2h, NORMAL: 4h, LOW: 8h}"
FASTER = "first_response: {URGENT: 30m, HIGH: 1h, NORMAL: 2h, LOW: 4h}"


def candidate_text() -> str:
    text = DEFAULT.read_text()
    assert text.count(SLOWER) == 1
    return text.replace(SLOWER, FASTER)


# Small queues in a two-day history: thresholds scaled down so every rule fires somewhere.
OPS_ALERTS = """
ops_alerts:
  window: 30m
  hop: 10m
  allowed_lateness: 10m
  volume_surge: {factor: 3.0, baseline_windows: 4, min_created: 5}
  backlog_growth: {min_growth: 5, ratio: 2.0, consecutive: 2}
  breach_rate_spike: {rate: 0.5, min_breaches: 4}
"""


def alerts_policy(tmp_path: Path) -> tuple[Path, Policy]:
    text = DEFAULT.read_text()
    text = text[: text.index("\n# Queue-level ops alerts")] + OPS_ALERTS
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path, parse_policy(text, str(path))
