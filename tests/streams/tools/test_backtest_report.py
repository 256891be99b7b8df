"""The backtest report: CSAT by policy and queue, time to answer each escalation level, the
queue ops alerts over the history, and the whole report as JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from streams.sla.events import TicketEvent, event_from_dict
from streams.sla.policy import parse_policy
from streams.tools.backtest import backtest_events, run_backtest
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history
from tests.support.alerts import expected_alerts
from tests.support.office_hours import MATRIX
from tests.support.policies import alerts_policy

POLICY = (
    """
version: 1
sla_policies:
  - name: vip
    match: {tier: [vip]}
    targets: {first_response: 1h}
    warn_at: [0.5]
  - name: standard
    targets: {first_response: 2h}
    warn_at: [0.5]
"""
    + MATRIX
)
DAY = "2026-03-02T"


def ev(n: int, ticket: str, kind: str, at: str, **fields: Any) -> TicketEvent:
    return event_from_dict(
        {"event_id": f"e{n}", "ticket_id": ticket, "type": kind, "occurred_at": DAY + at,
         **fields}
    )  # fmt: skip


def history() -> list[TicketEvent]:
    # V1 (vip, 24x7 1 h): warning 00:30, breach -> L2 at 01:00, agent reply 01:20.
    # S1 (standard, 2 h): warning 01:00, breach -> L2 at 02:00, climbs to L3 at 03:00 (1 h
    # unanswered); the L3 escalation is acknowledged at 03:45; the L2 one never is.
    return sorted(
        [
            ev(1, "V1", "CREATED", "00:00:00Z", customer_tier="vip", channel="email",
               category="billing", priority="NORMAL"),
            ev(2, "V1", "AGENT_REPLIED", "01:20:00Z"),
            ev(3, "V1", "RESOLVED", "02:00:00Z"),
            ev(4, "V1", "CSAT_RECEIVED", "02:30:00Z", csat=2),
            ev(5, "S1", "CREATED", "00:00:00Z", channel="chat", category="it",
               priority="NORMAL"),
            ev(7, "S2", "CREATED", "00:10:00Z", channel="chat", category="it"),
            ev(8, "S2", "AGENT_REPLIED", "00:20:00Z"),
            ev(9, "S2", "RESOLVED", "00:30:00Z"),
            ev(10, "S2", "CSAT_RECEIVED", "00:40:00Z", csat=5),
            ev(11, "S2", "CSAT_RECEIVED", "00:41:00Z", csat=4),
        ],
        key=lambda e: e.occurred_at,
    )  # fmt: skip


def run(extra: list[TicketEvent] | None = None) -> Any:
    policy = parse_policy(POLICY, "p.yaml")
    (report,) = backtest_events([policy], [*history(), *(extra or [])])
    return report


def test_csat_by_policy_and_queue() -> None:
    assert run().csat_rows() == [
        {"policy": "standard", "queue": "chat/it", "surveys": 2, "mean": 4.5, "satisfied": 1.0},
        {"policy": "vip", "queue": "email/billing", "surveys": 1, "mean": 2.0, "satisfied": 0.0},
        {"policy": "standard", "queue": "*", "surveys": 2, "mean": 4.5, "satisfied": 1.0},
        {"policy": "vip", "queue": "*", "surveys": 1, "mean": 2.0, "satisfied": 0.0},
    ]


def test_time_to_answer_each_escalation_level() -> None:
    policy = parse_policy(POLICY, "p.yaml")
    out = io.StringIO()
    backtest_events([policy], history(), [out], until=parse_until("03:00:00Z"))
    l3 = next(
        json.loads(line)["escalation_id"]
        for line in out.getvalue().splitlines()
        if json.loads(line).get("level") == 3
    )
    ack = ev(12, "S1", "ESCALATION_ACKNOWLEDGED", "03:45:00Z", attributes={"escalation_id": l3})
    report = run([ack])
    # V1's L2 answered by the reply after 20 min; S1's L3 acknowledged after 45 min; S1's L2
    # was not the one acknowledged. Warnings are heads-ups: they wait for no answer.
    assert report.answer_rows() == [
        {"level": 2, "answered": 1, "unanswered": 1, "p50_ms": 20 * 60_000, "p90_ms": 20 * 60_000},
        {"level": 3, "answered": 1, "unanswered": 0, "p50_ms": 45 * 60_000, "p90_ms": 45 * 60_000},
    ]
    text = report.format()
    assert "  L2: 1 answered (p50=20.0m p90=20.0m), 1 never answered" in text
    assert "  L3: 1 answered (p50=45.0m p90=45.0m), 0 never answered" in text


def parse_until(at: str) -> int:
    return ev(0, "x", "CREATED", at).occurred_at


def test_escalations_per_hour_by_reason() -> None:
    report = run([ev(12, "S1", "AGENT_REPLIED", "03:45:00Z")])
    hours = [
        (h["hour"][11:16], h["reason"], h["escalations"]) for h in report.to_dict()["per_hour"]
    ]
    assert hours == [
        ("00:00", "SLA_WARNING", 1),  # V1 at 00:30
        ("01:00", "FIRST_RESPONSE_BREACH", 1),  # V1 at 01:00
        ("01:00", "SLA_WARNING", 1),  # S1 at 01:00
        ("02:00", "FIRST_RESPONSE_BREACH", 1),  # S1 at 02:00
        ("03:00", "ESCALATION_OVERDUE", 1),  # S1 climbs at 03:00
    ]


def test_ops_alerts_over_the_history_equal_the_alerts_core(tmp_path: Path) -> None:
    """The report's alerts are the ones the live-alerts integration test expects from
    `escalator alerts` on the same history: the same windows, rules and ids."""
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=40, days=2, seed=11)
    _, policy = alerts_policy(tmp_path)
    expected = expected_alerts(path, policy)
    (report,) = backtest_events([policy], lambda: read_history(path, numbered=True))
    got = {a.alert_id: a for a in report.ops_alerts}
    assert got == expected
    assert len({a.kind for a in got.values()}) == 3 and len(got) >= 10
    rows = report.to_dict()["ops_alerts"]
    assert [r["alert_id"] for r in rows] == [
        a.alert_id for a in sorted(got.values(), key=lambda a: (a.window_end, a.queue, a.kind))
    ]


def test_format_json_is_the_whole_report_with_the_compare(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(_dict(e)) + "\n" for e in history()))
    base = parse_policy(POLICY, "base.yaml")
    other = parse_policy(POLICY.replace("first_response: 2h", "first_response: 4h"), "other.yaml")
    out, err = io.StringIO(), io.StringIO()
    run_backtest(base, path, other=other, stdout=out, stderr=err, fmt="json")
    data = json.loads(out.getvalue())
    first, second = data["reports"]
    assert (first["policy"], second["policy"]) == ("base.yaml", "other.yaml")
    assert first["events"] == 10 and first["tickets"] == 3
    assert first["by_reason"] == {"FIRST_RESPONSE_BREACH": 2, "SLA_WARNING": 2}
    assert {(r["policy"], r["metric"], r["met"], r["missed"]) for r in first["attainment"]} == {
        ("standard", "first_response", 1, 1),
        ("vip", "first_response", 0, 1),
    }
    assert first["csat"][0]["queue"] == "chat/it" and first["answer_times"][0]["level"] == 2
    # 4 h instead of 2 h: S1 (created 00:00, never answered, history ends 02:30) only warns
    diff = data["compare"]
    assert diff["differing"] == [
        {"ticket_id": "S1", "removed": "[FIRST_RESPONSE_BREACH@L2]", "added": "[]"}
    ]
    assert diff["by_reason"]["FIRST_RESPONSE_BREACH"] == {"base": 2, "other": 1}
    assert "backtest: 10 events" in err.getvalue()


def _dict(event: TicketEvent) -> dict[str, Any]:
    from streams.sla.events import event_to_dict

    return event_to_dict(event)
