"""`escalator explain` on hand-computed timelines: business hours over a weekend and a DST
change, a pause, the SLA policy match, a matrix climb; and agreement with the backtest."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from streams.cli.main import main
from streams.sla.engine import Engine
from streams.sla.events import event_from_dict
from streams.sla.policy import load_policy, parse_policy
from streams.tools.backtest import backtest_events
from streams.tools.explain import explain_events, explain_state, format_explanation
from streams.tools.generator import generate_history
from streams.tools.history import write_history
from tests.support.engine import run_ticket
from tests.support.office_hours import HISTORY, POLICY


@pytest.fixture
def explained() -> dict[str, Any]:
    policy = parse_policy(POLICY, "test.yaml")
    return explain_events(policy, [event_from_dict(e) for e in HISTORY])


def _texts(step: dict[str, Any]) -> list[str]:
    return [line.strip() for line in step["text"]]


def test_business_hours_over_a_weekend_and_the_dst_change(explained: dict[str, Any]) -> None:
    created = explained["steps"][0]
    assert created["kind"] == "event" and created["at_local"] == "Fri 2026-03-06 16:00 EST"
    (first,) = [c for c in created["clocks"] if c["metric"] == "first_response"]
    # 2 h target, warning at 75% = 1h30m: 1 h on Friday (16-17 EST), 30 m on Monday (EDT)
    assert first["due"]["due_at"] == "2026-03-09T13:30:00.000Z"
    assert first["due"]["breach_at"] == "2026-03-09T14:00:00.000Z"
    assert first["due"]["skipped"] == [
        {
            "from": "2026-03-06T22:00:00.000Z",
            "until": "2026-03-09T13:00:00.000Z",
            "why": "weekend skipped",
            "text": "Fri 2026-03-06 17:00 EST to Mon 2026-03-09 09:00 EDT (weekend skipped)",
        }
    ]
    assert first["text"] == [
        "first_response clock started Fri 2026-03-06 16:00 EST: target 2h of business time"
        " (NORMAL, policy standard)",
        "first_response warning at 75% due Mon 2026-03-09 09:30 EDT: 1h30m of business time"
        " (75% of 2h) from Fri 2026-03-06 16:00 EST; skipped: Fri 2026-03-06 17:00 EST to"
        " Mon 2026-03-09 09:00 EDT (weekend skipped); the clocks changed from EST to EDT in"
        " between; breach due Mon 2026-03-09 10:00 EDT unless it stops",
    ]
    warning, breach = explained["steps"][1:3]
    assert (warning["kind"], warning["at_local"]) == ("deadline", "Mon 2026-03-09 09:30 EDT")
    assert [(a["reason"], a["level"], a["rule"], a["target"]) for a in warning["actions"]] == [
        ("SLA_WARNING", 1, "sla:first_response:warn75", "agents")
    ]
    assert breach["at_local"] == "Mon 2026-03-09 10:00 EDT"
    (escalation,) = breach["actions"]
    assert (escalation["reason"], escalation["from_level"], escalation["level"]) == (
        "FIRST_RESPONSE_BREACH",
        1,
        2,
    )
    assert escalation["text"].startswith(
        "escalation FIRST_RESPONSE_BREACH to team-lead, level 2 (L1 -> L2), HIERARCHICAL:"
        " rule sla:first_response:breach = the first_response target was missed"
    )


def test_a_pause_stops_the_clocks_and_the_climb(explained: dict[str, Any]) -> None:
    steps = {(s["kind"], s["at_local"]): s for s in explained["steps"]}
    pending = steps[("event", "Mon 2026-03-09 10:00 EDT")]
    assert _texts(pending)[2:] == [
        "first_response clock paused at Mon 2026-03-09 10:00 EDT (status PENDING): 2h of"
        " business time counted, 0m left",
        "resolution clock paused at Mon 2026-03-09 10:00 EDT (status PENDING): 2h of business"
        " time counted, 14h left",
    ]
    reply = steps[("event", "Mon 2026-03-09 11:00 EDT")]
    (resolution,) = [c for c in reply["clocks"] if c["metric"] == "resolution"]
    # 16 h target, 2 h counted; 75% = 12 h, so 10 h more from Mon 11:00: 6 h Monday, 4 h
    # Tuesday -> Tue 13:00; the breach 14 h more: 6 h Monday, 8 h Tuesday -> Tue 17:00
    assert resolution["change"] == "resumed"
    assert resolution["text"][-1] == (
        "resolution warning at 75% due Tue 2026-03-10 13:00 EDT: 10h of business time"
        " (75% of 16h) from Mon 2026-03-09 11:00 EDT, 2h counted before; skipped:"
        " Mon 2026-03-09 17:00 EDT to Tue 2026-03-10 09:00 EDT (overnight); breach due"
        " Tue 2026-03-10 17:00 EDT unless it stops"
    )
    # L2 paged at 10:00 may stay unanswered 1 h; the pause 10:00-11:00 does not count
    climb = steps[("deadline", "Mon 2026-03-09 12:00 EDT")]
    (up,) = climb["actions"]
    assert (up["rule"], up["from_level"], up["level"], up["target"]) == (
        "matrix:unanswered",
        2,
        3,
        "support-manager",
    )
    assert "the L2 escalation stayed unanswered for its allowed time (1h" in up["text"]
    end = explained["end"]
    assert end["at"] == "2026-03-09T17:30:00.000Z" and end["level"] == 3
    assert _texts(end)[2] == (
        "first_response: breached at Mon 2026-03-09 13:30 EDT, 4h30m of business time"
    )


def test_the_sla_policy_and_its_match_keys() -> None:
    policy = parse_policy(POLICY, "test.yaml")
    events = [dict(HISTORY[0], customer_tier="vip"), *HISTORY[1:2]]
    data = explain_events(policy, [event_from_dict(e) for e in events])
    created = data["steps"][0]
    assert created["sla_policy"]["policy"] == "vip"
    assert created["sla_policy"]["matched"] == [
        "tier vip in [vip]",
        "channel email in [email, phone]",
    ]
    assert created["text"][1] == (
        "  SLA policy vip: tier vip in [vip], channel email in [email, phone]"
    )
    # 24x7: 50% of 1 h is 30 minutes of plain time
    (first,) = [c for c in created["clocks"] if c["metric"] == "first_response"]
    assert first["due"]["due_at"] == "2026-03-06T21:30:00.000Z"
    assert "calendar 24x7: every hour counts" in first["due"]["text"]
    standard = explain_events(policy, [event_from_dict(HISTORY[0])])["steps"][0]
    assert standard["sla_policy"]["skipped"] == [
        {"policy": "vip", "failed": ["tier standard not in [vip]"]}
    ]


def test_text_and_json_carry_the_same_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    history = tmp_path / "h.jsonl"
    history.write_text("".join(json.dumps(e) + "\n" for e in HISTORY))
    assert main(["explain", "T1", str(history), "--policy", str(policy)]) == 0
    text = capsys.readouterr().out
    assert main(["explain", "T1", str(history), "--policy", str(policy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert text == format_explanation(data)
    assert [line for s in data["steps"] for line in s["text"]] == text.split("\n\n")[1].split("\n")
    assert main(["explain", "T9", str(history), "--policy", str(policy)]) == 2
    assert capsys.readouterr().err == (f"escalator explain: {history}: no events for ticket 'T9'\n")
    assert main(["explain", "T1"]) == 2
    assert "name the history file" in capsys.readouterr().err


def test_explain_fires_what_the_backtest_fires(tmp_path: Path) -> None:
    """The same core, driven the same way: every ticket's escalations, reminders and bumps
    are the backtest's, at the same instants."""
    policy = load_policy()
    events = list(generate_history(agents=6, days=2, seed=7))
    path = tmp_path / "h.jsonl"
    write_history(path, events)
    out = io.StringIO()
    backtest_events([policy], events, [out])
    sent: dict[str, list[tuple[str, str, int]]] = {}
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        ident = record.get("escalation_id") or record.get("reminder_id") or record["action"]
        sent.setdefault(record["ticket_id"], []).append(
            (record["action"], ident, record["fired_at"])
        )
    tickets = sorted({e.ticket_id for e in events})
    latest = max(e.occurred_at for e in events)
    checked = 0
    for ticket in tickets[:60]:
        mine = [e for e in events if e.ticket_id == ticket]
        data = explain_events(policy, mine, latest)
        told = [
            (a["action"], a.get("escalation_id") or a.get("reminder_id") or a["action"],
             a["fired_at"])
            for s in data["steps"] for a in s["actions"] if a["action"] != "silenced"
        ]  # fmt: skip
        assert sorted(told) == sorted(sent.get(ticket, [])), ticket
        checked += bool(told)
    assert checked >= 10  # tickets that escalated were among those compared


def test_a_state_under_a_policy_the_file_lacks_is_a_clear_error() -> None:
    policy = parse_policy(POLICY, "test.yaml")
    other = parse_policy(POLICY.replace("name: standard", "name: basic"), "other.yaml")
    ticket, _ = run_ticket(Engine(policy), [event_from_dict(HISTORY[0])])
    assert ticket is not None
    with pytest.raises(ValueError, match="under SLA policy 'standard', which other.yaml does not"):
        explain_state(other, ticket, "changelog")


def test_a_long_due_time_names_the_first_closed_spans_and_counts_the_rest() -> None:
    """36 h of office time from Friday 16:00 EST: the weekend and four nights are skipped; the
    text names three and counts the rest, the JSON lists all five."""
    policy = parse_policy(POLICY.replace("resolution: 16h", "resolution: 48h"), "test.yaml")
    created = explain_events(policy, [event_from_dict(HISTORY[0])])["steps"][0]
    (resolution,) = [c for c in created["clocks"] if c["metric"] == "resolution"]
    # 75% of 48 h = 36 h: Fri 1 h, Mon-Thu 4 x 8 h, Fri 3 h -> Fri 2026-03-13 12:00 EDT;
    # the breach, 12 h later in business time: Fri 5 h, Mon 7 h -> Mon 2026-03-16 16:00 EDT
    assert resolution["due"]["due_at"] == "2026-03-13T16:00:00.000Z"
    assert resolution["due"]["breach_at"] == "2026-03-16T20:00:00.000Z"
    assert [s["why"] for s in resolution["due"]["skipped"]] == [
        "weekend skipped", "overnight", "overnight", "overnight", "overnight"
    ]  # fmt: skip
    assert resolution["text"][1] == (
        "resolution warning at 75% due Fri 2026-03-13 12:00 EDT: 36h of business time"
        " (75% of 48h) from Fri 2026-03-06 16:00 EST; skipped: Fri 2026-03-06 17:00 EST to"
        " Mon 2026-03-09 09:00 EDT (weekend skipped); Mon 2026-03-09 17:00 EDT to"
        " Tue 2026-03-10 09:00 EDT (overnight); Tue 2026-03-10 17:00 EDT to"
        " Wed 2026-03-11 09:00 EDT (overnight); and 2 more closed spans; the clocks changed"
        " from EST to EDT in between; breach due Mon 2026-03-16 16:00 EDT unless it stops"
    )
