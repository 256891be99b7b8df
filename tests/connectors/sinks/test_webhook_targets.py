"""Webhook targets file, routing, the Slack-compatible message, signatures and backoff."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.sinks.webhook_targets import (
    Target,
    TargetsError,
    backoff,
    load_targets,
    message,
    parse_targets,
    retry_after,
    sign,
    verdict,
    verify,
)
from schemas.records import escalation_to_avro, priority_bump_to_avro
from streams.sla.actions import Escalation, Kind, PriorityBump, Reason
from streams.sla.policy import PolicyError

REPO = Path(__file__).resolve().parents[3]
T0 = 1_790_000_000_000


def escalation(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        escalation_id="e1", ticket_id="T-1", kind=Kind.HIERARCHICAL, level=2, from_level=1,
        target="support_manager", reason=Reason.FIRST_RESPONSE_BREACH, policy="standard",
        rule="matrix.L2", sla_metric="first_response", due_at=T0, fired_at=T0 + 150,
        event_id=None, cycle=0,
    )  # fmt: skip
    base.update(fields)
    return escalation_to_avro(Escalation(**base), emitted_at=T0 + 200)


def bump() -> dict[str, Any]:
    return priority_bump_to_avro(
        PriorityBump("T-1", "HIGH", "URGENT", Reason.LEGAL_THREAT, "e9", T0, "ev1"), T0 + 5
    )


def target(**fields: Any) -> Target:
    return Target(name="t", url="https://hooks.example.invalid/x", **fields)


# --------------------------------------------------------------------------- routing


def test_an_unconditional_target_gets_every_escalation_but_no_bumps() -> None:
    assert target().accepts("escalations", escalation())
    assert not target().accepts("priority-bumps", bump())


@pytest.mark.parametrize(
    ("conditions", "record", "expected"),
    [
        ({"teams": ["billing"]}, {"target": "billing"}, True),
        ({"teams": ["billing"]}, {"target": "support_manager"}, False),
        ({"levels": [1, 3]}, {"level": 3}, True),
        ({"levels": [1, 3]}, {"level": 2}, False),
        ({"min_level": 3}, {"level": 3}, True),
        ({"min_level": 3}, {"level": 2}, False),
        ({"kinds": ["EXECUTIVE"]}, {"kind": Kind.EXECUTIVE}, True),
        ({"kinds": ["EXECUTIVE"]}, {"kind": Kind.FUNCTIONAL}, False),
        ({"reasons": ["LEGAL_THREAT"]}, {"reason": Reason.LEGAL_THREAT}, True),
        ({"reasons": ["LEGAL_THREAT"]}, {"reason": Reason.CHURN_RISK}, False),
        # all given conditions must hold
        ({"teams": ["billing"], "min_level": 2}, {"target": "billing", "level": 1}, False),
        ({"teams": ["billing"], "min_level": 2}, {"target": "billing", "level": 4}, True),
    ],
)
def test_escalation_routing(
    conditions: dict[str, Any], record: dict[str, Any], expected: bool
) -> None:
    assert target(**conditions).accepts("escalations", escalation(**record)) is expected


def test_bumps_go_to_targets_that_list_the_topic_filtered_by_reason_only() -> None:
    both = target(topics=["escalations", "priority-bumps"], teams=["nobody"], min_level=9)
    assert both.accepts("priority-bumps", bump())  # team/level describe escalations only
    assert not both.accepts("escalations", escalation())
    assert not target(topics=["priority-bumps"], reasons=["CHURN_RISK"]).accepts(
        "priority-bumps", bump()
    )


# --------------------------------------------------------------------------- targets file


def test_the_chart_values_examples_are_valid_targets_files() -> None:
    for values in ("deploy/helm/escalator/values.yaml", "deploy/helm/values-production.yaml"):
        data = yaml.safe_load((REPO / values).read_text())["sinks"]["webhook"]["targets"]
        if data:
            names = [t.name for t in parse_targets(yaml.safe_dump({"targets": data}), values)]
            assert names == [t["name"] for t in data]


def test_the_chart_schema_knows_the_same_target_fields() -> None:
    schema = json.loads((REPO / "deploy/helm/escalator/values.schema.json").read_text())
    item = schema["properties"]["sinks"]["properties"]["webhook"]["properties"]["targets"]["items"]
    assert set(item["properties"]) == set(Target.model_fields)
    assert item["additionalProperties"] is False
    assert item["properties"]["kinds"]["items"]["enum"] == [k.value for k in Kind]


def test_a_full_target_parses(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "  - name: billing-slack\n"
        "    url: https://hooks.slack.com/services/T0/B0/x\n"
        "    topics: [escalations, priority-bumps]\n"
        "    teams: [billing]\n"
        "    min_level: 2\n"
        "    kinds: [FUNCTIONAL]\n"
        "    reasons: [LEGAL_THREAT]\n"
        "    timeout_s: 5\n"
        "    max_attempts: 3\n"
        "    backoff_base_s: 0.1\n"
        "    backoff_cap_s: 2\n"
        "    concurrency: 2\n"
    )
    (one,) = load_targets(path)
    assert (one.name, one.teams, one.min_level, one.max_attempts) == (
        "billing-slack",
        ["billing"],
        2,
        3,
    )
    assert one.topics == ["escalations", "priority-bumps"]
    assert (one.timeout_s, one.backoff_base_s, one.backoff_cap_s, one.concurrency) == (5, 0.1, 2, 2)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "targets:\n  - name: a\n    url: ftp://host/x\n",
            "f.yaml:3: targets[0].url: must be an http:// or https:// URL with a host",
        ),
        (
            "targets:\n  - name: a\n    url: https://user:pw@host/x\n",
            "f.yaml:3: targets[0].url: no password in the URL",
        ),
        (
            "targets:\n  - name: a\n    url: http://h\n    levels: [1, two]\n",
            "f.yaml:4: targets[0].levels[1]: Input should be a valid integer",
        ),
        (
            "targets:\n  - name: a\n    url: http://h\n    teamz: [billing]\n",
            "f.yaml:4: targets[0].teamz: unknown field (check the spelling)",
        ),
        (
            "targets:\n  - name: a\n    url: http://h\n    kinds: [SIDEWAYS]\n",
            "f.yaml:4: targets[0].kinds[0]: Input should be 'HIERARCHICAL'",
        ),
        (
            "targets:\n  - name: a\n    url: http://h\n    topics: [ticket-events]\n",
            "f.yaml:4: targets[0].topics[0]: Input should be 'escalations' or 'priority-bumps'",
        ),
        (
            "targets:\n  - name: a\n    url: http://h\n    backoff_base_s: 5\n"
            "    backoff_cap_s: 1\n",
            "f.yaml:2: targets[0]: backoff_cap_s must not be below backoff_base_s",
        ),
        ("targets:\n  - name: a b\n    url: http://h\n", "f.yaml:2: targets[0].name: 'a b': use"),
        ("targets:\n  - url: http://h\n", "f.yaml:2: targets[0].name: Field required"),
        (
            "targets:\n  - {name: a, url: 'http://h'}\n  - {name: a, url: 'http://g'}\n",
            "f.yaml:3: targets[1].name: 'a' is used twice",
        ),
        ("targets: []\n", "f.yaml:1: targets: no targets: add at least one"),
        ("- name: a\n", "f.yaml:1: the webhook targets file must be a YAML mapping"),
        ("targets: [\n", "f.yaml:2: not valid YAML"),
    ],
)
def test_targets_file_errors_name_file_line_and_field(text: str, error: str) -> None:
    with pytest.raises(TargetsError) as caught:
        parse_targets(text, "f.yaml")
    assert not isinstance(caught.value, PolicyError)  # a targets file is no policy file
    assert str(caught.value).startswith(error), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_targets_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match=r"nope.yaml: cannot read: No such file"):
        load_targets(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- message


def test_escalation_message_is_slack_compatible_and_carries_the_record() -> None:
    record = escalation()
    body = message("escalations", record)
    assert body["text"] == (
        "Escalation: ticket T-1 to L2 support_manager (FIRST_RESPONSE_BREACH), "
        "due 2026-09-21 14:13:20 UTC"
    )
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
    fields = {
        f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][1]["fields"]
    }
    assert fields == {
        "*Ticket*": "T-1",
        "*Level*": "L1 → L2",
        "*Target*": "support_manager",
        "*Reason*": "FIRST_RESPONSE_BREACH",
        "*Due*": "2026-09-21 14:13:20 UTC",
        "*Fired*": "2026-09-21 14:13:20 UTC",
    }
    assert body["escalator"] == {"event": "escalation", "schema": "Escalation", "record": record}
    assert json.loads(json.dumps(body)) == body  # plain JSON


def test_bump_message() -> None:
    body = message("priority-bumps", bump())
    assert body["text"] == "Priority of ticket T-1 raised from HIGH to URGENT (LEGAL_THREAT)"
    assert body["escalator"]["event"] == "priority-bump"
    assert body["escalator"]["record"]["escalation_id"] == "e9"


# --------------------------------------------------------------------------- signature


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # Reference value computed independently:
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret-key-0123456789
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"secret-key-0123456789", b'1700000000.{"a":1}', hashlib.sha256)
    assert sign(b"secret-key-0123456789", 1_700_000_000, body) == "v1=" + expected.hexdigest()


def test_verify_checks_key_body_and_replay_window() -> None:
    key, body, now = b"k" * 32, b'{"text":"x"}', time.time()
    ts = int(now)
    good = sign(key, ts, body)
    assert verify(key, str(ts), good, body, now)
    assert verify(key, str(ts), f"v1=00,{good}", body, now)  # several signatures (rotation)
    assert not verify(key, str(ts), good, body + b" ", now)
    assert not verify(b"x" * 32, str(ts), good, body, now)
    assert not verify(key, str(ts - 301), sign(key, ts - 301, body), body, now)
    assert not verify(key, None, good, body, now)
    assert not verify(key, "abc", good, body, now)


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "delivered"), (204, "delivered"), (408, "retry"), (429, "retry"), (500, "retry"),
     (503, "retry"), (400, "reject"), (401, "reject"), (404, "reject"), (301, "reject")],
)  # fmt: skip
def test_verdict(status: int, expected: str) -> None:
    assert verdict(status) == expected


def test_backoff_is_full_jitter_under_an_exponential_bound_and_the_cap() -> None:
    base, cap = 0.5, 8.0
    for failures, bound in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (90, 8.0)]:
        assert backoff(failures, base, cap, rand=lambda: 0.0) == 0.0
        assert backoff(failures, base, cap, rand=lambda: 0.999999) == pytest.approx(bound, rel=1e-5)
        assert 0 <= backoff(failures, base, cap) < bound


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after("7", now) == 7.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert retry_after(date, now) == pytest.approx(30.0)
    assert retry_after(None, now) is None
    assert retry_after("soon", now) is None
