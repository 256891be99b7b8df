"""Policy file: the default policy loads, and every error names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.sla.actions import Kind, Reason
from streams.sla.durations import DAY, HOUR, MINUTE
from streams.sla.events import Priority, Status
from streams.sla.policy import PolicyError, load_policy, parse_policy

BASE = """\
version: 1
calendars:
  office:
    timezone: Europe/Berlin
    hours:
      mon-fri: "09:00-17:00"
      sat: ["09:00-12:00", "13:00-15:00"]
    holidays: [2026-12-25]
sla_policies:
  - name: gold
    match: {tier: [gold]}
    calendar: office
    targets:
      first_response: 1h
      resolution: {URGENT: 4h, HIGH: 8h, NORMAL: 1d, LOW: 2d}
    warn_at: [0.5, 0.75]
  - name: chat
    match: {channel: [chat], priority: [URGENT, HIGH]}
    targets:
      first_response: {URGENT: 5m, default: 15m}
  - name: rest
    targets:
      first_response: 4h
escalation_matrix:
  levels:
    - {level: 1, name: rep, contact: rep}
    - {level: 2, name: boss, contact: boss}
  executive: {contact: exec}
triggers:
  - name: legal
    when: {tags_added: [legal]}
    actions:
      - escalate: {kind: HIERARCHICAL, reason: LEGAL_THREAT, level: 2}
  - name: pending
    when: {status_for: {status: PENDING, at_least: 2d}}
    actions:
      - remind: {reason: PENDING_TOO_LONG}
"""


def line_of(text: str, fragment: str) -> int:
    """1-based line of the first line containing `fragment`."""
    for number, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in text")


def errors(text: str, source: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source)
    assert str(info.value) == "\n".join(info.value.lines())
    assert info.value.source == source
    return info.value.lines()


def mutate(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


# ----------------------------------------------------------------------------- valid files


def test_base_policy_parses() -> None:
    policy = parse_policy(BASE, "p.yaml")
    assert [s.name for s in policy.sla_policies] == ["gold", "chat", "rest"]
    gold = policy.sla("gold")
    assert gold.targets.target("first_response", Priority.LOW) == HOUR
    assert gold.targets.target("resolution", Priority.NORMAL) == DAY
    assert gold.targets.target("next_response", Priority.NORMAL) is None
    chat = policy.sla("chat")
    assert chat.targets.target("first_response", Priority.URGENT) == 5 * MINUTE
    assert chat.targets.target("first_response", Priority.HIGH) == 15 * MINUTE
    rest = policy.sla("rest")
    assert rest.warn_at == [0.75]
    assert rest.pause_statuses == [Status.PENDING, Status.ON_HOLD]
    assert rest.calendar == "24x7"
    office = policy.calendar("office")
    assert office.timezone == "Europe/Berlin"
    assert office.hours[0] == ((540, 1020),)
    assert office.hours[5] == ((540, 720), (780, 900))
    assert 6 not in office.hours
    assert policy.calendar(None).is_always_open
    assert [t.name for t in policy.event_triggers] == ["legal"]
    assert [t.name for t in policy.timed_triggers] == ["pending"]
    assert policy.matrix.top == 2
    assert policy.matrix.level(9).contact == "boss"
    with pytest.raises(KeyError):
        policy.sla("missing")


def test_default_policy_loads() -> None:
    policy = load_policy()
    assert policy.source.endswith("default_policy.yaml")
    assert [s.name for s in policy.sla_policies] == [
        "vip-enterprise",
        "premium",
        "realtime-channels",
        "standard",
    ]
    matrix = policy.matrix
    assert [lv.contact for lv in matrix.levels] == [
        "frontline-representative",
        "support-manager",
        "account-manager",
        "sales-manager",
        "sales-and-operations-director",
        "stakeholders",
        "senior-management",
    ]
    assert matrix.levels[0].allowed is None  # every ticket starts there: nothing climbs from it
    assert matrix.levels[-1].allowed is None
    assert all(lv.allowed for lv in matrix.levels[1:-1])
    assert [step.contact for step in matrix.functional["billing"]] == [
        "billing-team",
        "billing-lead",
        "head-of-billing",
    ]
    assert [step.contact for step in matrix.functional["payment"]] == ["billing-team"]
    assert matrix.executive.contact == "executive-office"
    assert matrix.support_levels == {
        0: "self-service",
        1: "frontline",
        2: "tier2",
        3: "experts",
        4: "vendor",
    }
    assert {t.name for t in policy.timed_triggers} == {
        "pending-follow-up",
        "escalation-open-30-days",
    }
    tags = {tag for t in policy.event_triggers for tag in t.when.tags_added or ()}
    assert tags == {
        "churn_risk",
        "at_risk",
        "system_crash",
        "legal",
        "cancel",
        "account_closure",
        "refund",
        "privacy",
        "supervisor_request",
    }
    reasons = {a.escalate.reason for t in policy.spec.triggers for a in t.actions if a.escalate}
    assert Reason.CHURN_RISK in reasons and Reason.TOO_MANY_TRANSFERS in reasons
    kinds = {a.escalate.kind for t in policy.spec.triggers for a in t.actions if a.escalate}
    assert Kind.EXECUTIVE in kinds and Kind.FUNCTIONAL in kinds
    assert policy.sla("vip-enterprise").calendar == "24x7"
    assert policy.sla("standard").calendar == "business"


def test_load_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE, "utf-8")
    assert load_policy(path).source == str(path)
    assert load_policy(str(path)).spec == parse_policy(BASE).spec


@pytest.mark.parametrize(
    ("tier", "channel", "priority", "tags", "expected"),
    [
        ("gold", "chat", Priority.URGENT, [], "gold"),  # first match wins
        ("silver", "chat", Priority.URGENT, [], "chat"),
        ("silver", "chat", Priority.LOW, [], "rest"),  # all keys must match
        (None, None, Priority.NORMAL, [], "rest"),
        ("gold", None, Priority.NORMAL, ["x"], "gold"),
    ],
)
def test_first_match_wins(
    tier: str | None, channel: str | None, priority: Priority, tags: list[str], expected: str
) -> None:
    policy = parse_policy(BASE)
    assert policy.match(tier, priority, channel, None, tags).name == expected


def test_match_on_tags_and_category() -> None:
    text = mutate(
        "  - name: rest\n",
        "  - name: tagged\n    match: {tags: [vip, press], category: [billing]}\n"
        "    targets: {resolution: 1h}\n  - name: rest\n",
    )
    policy = parse_policy(text)
    assert policy.match(None, Priority.LOW, None, "billing", ["press"]).name == "tagged"
    assert policy.match(None, Priority.LOW, None, "billing", ["other"]).name == "rest"
    assert policy.match(None, Priority.LOW, None, "it", ["vip"]).name == "rest"


@pytest.mark.parametrize("text", [BASE, None])
def test_normalized_reparses_to_an_equal_spec(text: str | None) -> None:
    policy = parse_policy(text) if text else load_policy()
    normalized = policy.normalized()
    again = parse_policy(normalized, "normalized.yaml")
    assert again.spec == policy.spec
    assert again.normalized() == normalized


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("old", "new", "field", "line_fragment", "message"),
    [
        (
            "first_response: 1h",
            "first_response: 1x",
            "sla_policies[0].targets.first_response",
            "first_response: 1x",
            "'1x' is not a duration",
        ),
        (
            "first_response: 1h",
            "first_response: 60",
            "sla_policies[0].targets.first_response",
            "first_response: 60",
            "a duration is text",
        ),
        (
            "first_response: 1h",
            "first_respons: 1h",
            "sla_policies[0].targets.first_respons",
            "first_respons: 1h",
            "unknown field (check the spelling)",
        ),
        (
            "    warn_at: [0.5, 0.75]",
            "    warn_a: [0.5, 0.75]",
            "sla_policies[0].warn_a",
            "warn_a:",
            "unknown field",
        ),
        (
            "calendar: office",
            "calendar: ofice",
            "sla_policies[0].calendar",
            "calendar: ofice",
            "unknown calendar 'ofice'; known: 24x7, office",
        ),
        (
            "{level: 2, name: boss, contact: boss}",
            "{level: 2, name: boss, contact: boss, calendar: nights}",
            "escalation_matrix.levels[1].calendar",
            "calendar: nights",
            "unknown calendar 'nights'",
        ),
        (
            "Europe/Berlin",
            "Mars/Olympus",
            "calendars.office.timezone",
            "Mars/Olympus",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            '"09:00-17:00"',
            '"09:00-25:00"',
            "calendars.office.hours.mon-fri",
            "09:00-25:00",
            "'25:00' is not a time of day",
        ),
        (
            '"09:00-17:00"',
            '"17:00-09:00"',
            "calendars.office.hours.mon-fri",
            "17:00-09:00",
            "does not end after it starts",
        ),
        (
            '"13:00-15:00"',
            '"1300"',
            "calendars.office.hours.sat[1]",
            "1300",
            "is not an opening span",
        ),
        (
            "mon-fri:",
            "mon-fry:",
            "calendars.office.hours.mon-fry",
            "mon-fry:",
            "is not a day",
        ),
        (
            "[2026-12-25]",
            "[2026-13-25]",
            "calendars.office.holidays[0]",
            "2026-13-25",
            "'2026-13-25' is not a valid value: month must be in 1..12",
        ),
        (
            "[2026-12-25]",
            "[christmas]",
            "calendars.office.holidays[0]",
            "christmas",
            "valid date",
        ),
        (
            "[0.5, 0.75]",
            "[0.75, 0.5]",
            "sla_policies[0].warn_at",
            "warn_at: [0.75, 0.5]",
            "ascending",
        ),
        (
            "[0.5, 0.75]",
            "[0.5, 0.5]",
            "sla_policies[0].warn_at",
            "warn_at: [0.5, 0.5]",
            "ascending and distinct",
        ),
        (
            "[0.5, 0.75]",
            "[0.5, 1.0]",
            "sla_policies[0].warn_at",
            "warn_at: [0.5, 1.0]",
            "1.0 is not a fraction between 0 and 1",
        ),
        (
            "[0.5, 0.75]",
            "[0, 0.75]",
            "sla_policies[0].warn_at",
            "warn_at: [0, 0.75]",
            "not a fraction",
        ),
        (
            "{URGENT: 4h, HIGH: 8h, NORMAL: 1d, LOW: 2d}",
            "{URGENT: 4h, HIGH: 8h}",
            "sla_policies[0].targets.resolution",
            "resolution: {URGENT: 4h, HIGH: 8h}",
            "no target for priority LOW, NORMAL; add it or 'default'",
        ),
        (
            "  - name: rest\n",
            "  - name: rest\n    match: {tier: [bronze]}\n",
            "sla_policies[2].match",
            "match: {tier: [bronze]}",
            "the last SLA policy must match every ticket",
        ),
        (
            "  - name: chat\n",
            "  - name: gold  # again\n",
            "sla_policies[1].name",
            "# again",
            "duplicate name 'gold'",
        ),
        (
            "{level: 2, name: boss",
            "{level: 3, name: boss",
            "escalation_matrix.levels[1].level",
            "level: 3, name: boss",
            "levels are numbered 1, 2, 3...; expected 2",
        ),
        (
            "{level: 1, name: rep, contact: rep}",
            "{level: 1, name: rep, contact: rep, allowed: 30m}",
            "escalation_matrix.levels[0].allowed",
            "level: 1, name: rep",
            "level 1 is where every ticket starts",
        ),
        (
            "when: {tags_added: [legal]}",
            "when: {tags_added: [legal], status_for: {status: PENDING, at_least: 1h}}",
            "triggers[0].when.tags_added",
            "status_for: {status: PENDING",
            "a timed condition (status_for, escalation_open_for) cannot be combined",
        ),
        (
            "when: {status_for: {status: PENDING, at_least: 2d}}",
            "when: {status_for: {status: PENDING, at_least: 2d}, event: [TRANSFERRED]}",
            "triggers[1].when.event",
            "event: [TRANSFERRED]",
            "cannot be combined",
        ),
        (
            "when: {status_for: {status: PENDING, at_least: 2d}}",
            "when: {status_for: {status: PENDING, at_least: 2d}, escalation_open_for: 1d}",
            "triggers[1].when",
            "escalation_open_for: 1d",
            "use one timed condition per trigger",
        ),
        (
            "LEGAL_THREAT, level: 2}",
            "LEGAL_THREAT, level: 3}",
            "triggers[0].actions[0].escalate.level",
            "LEGAL_THREAT, level: 3",
            "the matrix has levels 1..2",
        ),
        (
            "reason: LEGAL_THREAT",
            "reason: LEGAL",
            "triggers[0].actions[0].escalate.reason",
            "reason: LEGAL,",
            "",
        ),
        (
            "when: {tags_added: [legal]}",
            "when: {}",
            "triggers[0].when",
            "when: {}",
            "a trigger needs at least one condition",
        ),
        (
            "- remind: {reason: PENDING_TOO_LONG}",
            "- bump_priority: {to: URGENT, by: 1}",
            "triggers[1].actions[0].bump_priority",
            "bump_priority",
            "give exactly one of 'to' (a priority) or 'by' (steps)",
        ),
        (
            "  executive: {contact: exec}",
            "  stop_climb_on: [acknowledged, replied, solved]\n  executive: {contact: exec}",
            "escalation_matrix.stop_climb_on[1]",
            "stop_climb_on:",
            "Input should be 'acknowledged', 'agent_reply' or 'solved'",
        ),
        (
            "  executive: {contact: exec}",
            "  stop_climb_on: [acknowledged]\n  executive: {contact: exec}",
            "escalation_matrix.stop_climb_on",
            "stop_climb_on:",
            "a solved ticket never climbs: list 'solved'",
        ),
        (
            "  executive: {contact: exec}",
            "  stop_climb_on: [solved, solved]\n  executive: {contact: exec}",
            "escalation_matrix.stop_climb_on[1]",
            "stop_climb_on:",
            "'solved' is listed twice",
        ),
        (
            "  executive: {contact: exec}",
            "  repeat: 10\n  executive: {contact: exec}",
            "escalation_matrix.repeat",
            "repeat: 10",
            "less than or equal to 9",
        ),
        (
            "  executive: {contact: exec}",
            "  repeat: 2\n  executive: {contact: exec}",
            "escalation_matrix.levels[1].allowed",
            "{level: 2, name: boss",
            "with repeat: 2 the last level needs 'allowed'",
        ),
        (
            "  executive: {contact: exec}",
            "  by_metric: {resolution: desk}\n  executive: {contact: exec}",
            "escalation_matrix.by_metric.resolution",
            "by_metric:",
            "unknown chain 'desk'; known: none (add escalation_matrix.chains)",
        ),
        (
            "  executive: {contact: exec}",
            "  chains: {desk: [{contact: d}]}\n  by_kind: {AUTOMATIC: dsk}\n"
            "  executive: {contact: exec}",
            "escalation_matrix.by_kind.AUTOMATIC",
            "by_kind:",
            "unknown chain 'dsk'; known: desk",
        ),
        (
            "  executive: {contact: exec}",
            "  chains: {desk: [{contact: d}]}\n  by_metric: {resolve: desk}\n"
            "  executive: {contact: exec}",
            "escalation_matrix.by_metric.resolve",
            "by_metric:",
            "Input should be 'first_response', 'next_response', 'resolution', 'periodic_update'",
        ),
        (
            "  executive: {contact: exec}",
            "  chains: {desk: []}\n  executive: {contact: exec}",
            "escalation_matrix.chains.desk",
            "chains:",
            "a chain needs at least one step",
        ),
        (
            "    warn_at: [0.5, 0.75]",
            "    warn_at: [0.5, 0.75]\n"
            "    clocks: {resolution: {reset: {status_for: {status: PENDING, at_least: 1h}}}}",
            "sla_policies[0].clocks.resolution.reset",
            "clocks: {resolution",
            "a clock's conditions are checked on each event: status_for and escalation_open_for",
        ),
        (
            "    warn_at: [0.5, 0.75]",
            "    warn_at: [0.5, 0.75]\n    clocks: {next_response: {start: {event: [ASSIGNED]}}}",
            "sla_policies[0].clocks.next_response.start",
            "clocks: {next_response",
            "next_response starts at each reply",
        ),
        (
            "    warn_at: [0.5, 0.75]",
            "    warn_at: [0.5, 0.75]\n    clocks: {resolve: {reset: {event: [TRANSFERRED]}}}",
            "sla_policies[0].clocks.resolve",
            "clocks: {resolve",
            "Input should be 'first_response', 'next_response', 'resolution', 'periodic_update'",
        ),
        (
            "    warn_at: [0.5, 0.75]",
            "    warn_at: [0.5, 0.75]\n    clocks:\n      resolution:\n"
            "        cancel: {event: [MOVED]}",
            "sla_policies[0].clocks.resolution.cancel.event[0]",
            "cancel: {event: [MOVED]}",
            "Input should be 'CREATED'",
        ),
        (
            "  executive: {contact: exec}",
            "  tier_contacts: {vip: {3: vip-team}}\n  executive: {contact: exec}",
            "escalation_matrix.tier_contacts.vip[3]",
            "tier_contacts:",
            "the matrix has levels 1..2",
        ),
        (
            "  executive: {contact: exec}",
            "  by_tier: {vip: account-team}\n  executive: {contact: exec}",
            "escalation_matrix.by_tier.vip",
            "by_tier:",
            "unknown chain 'account-team'",
        ),
        (
            "- remind: {reason: PENDING_TOO_LONG}",
            "- {remind: {reason: PENDING_TOO_LONG}, bump_priority: {by: 1}}",
            "triggers[1].actions[0]",
            "remind: {reason",
            "exactly one of escalate, bump_priority or remind",
        ),
    ],
)
def test_error_names_file_line_and_field(
    old: str, new: str, field: str, line_fragment: str, message: str
) -> None:
    text = mutate(old, new)
    [line] = errors(text)
    assert line.startswith(f"p.yaml:{line_of(text, line_fragment)}: {field}: "), line
    assert message in line


def test_problem_records_path_and_line() -> None:
    text = mutate("first_response: 1h", "first_response: 1x")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    [problem] = info.value.problems
    assert problem.path == ("sla_policies", 0, "targets", "first_response")
    assert problem.line == line_of(text, "first_response: 1x")


def test_missing_required_sections() -> None:
    text = "version: 1\nsla_policies: []\n"
    lines = errors(text)
    assert any(line.startswith("p.yaml:2: sla_policies: ") for line in lines), lines
    assert "p.yaml:1: escalation_matrix: Field required" in lines


def test_missing_field_inside_a_list_is_named() -> None:
    text = mutate("{level: 2, name: boss, contact: boss}", "{level: 2, name: boss}")
    [line] = errors(text)
    assert (
        line
        == f"p.yaml:{line_of(text, 'name: boss')}: escalation_matrix.levels[1].contact: "
        + ("Field required")
    )


def test_bad_per_priority_duration_is_reported_once() -> None:
    text = mutate("NORMAL: 1d, LOW: 2d}", "NORMAL: 1d, LOW: soon}")
    assert errors(text) == [
        f"p.yaml:{line_of(text, 'soon')}: sla_policies[0].targets.resolution.LOW: "
        "'soon' is not a duration; write e.g. '30m', '4h', '1h30m' or '2d'"
    ]


def test_several_errors_are_reported_together() -> None:
    text = mutate("first_response: 1h", "first_respons: 1h\n      next_response: 2x")
    text = text.replace("[0.5, 0.75]", "[0.9, 0.5]")
    lines = errors(text)
    assert len(lines) == 3, lines
    assert any(".first_respons: unknown field" in line for line in lines)
    assert any(".next_response: '2x' is not a duration" in line for line in lines)
    assert any(".warn_at: fractions must be ascending" in line for line in lines)


def test_several_semantic_errors_are_reported_together() -> None:
    text = mutate("calendar: office", "calendar: ofice")
    text = text.replace("{level: 2, name: boss", "{level: 3, name: boss")
    text = text.replace("  - name: rest\n", "  - name: rest\n    match: {tier: [bronze]}\n")
    text = text.replace("Europe/Berlin", "Nowhere/Land")
    lines = errors(text)
    assert len(lines) == 4, lines
    joined = "\n".join(lines)
    for expected in (
        f"p.yaml:{line_of(text, 'calendar: ofice')}: sla_policies[0].calendar: unknown calendar",
        f"p.yaml:{line_of(text, 'level: 3')}: escalation_matrix.levels[1].level: ",
        f"p.yaml:{line_of(text, 'bronze')}: sla_policies[2].match: ",
        f"p.yaml:{line_of(text, 'Nowhere')}: calendars.office.timezone: unknown time zone",
    ):
        assert expected in joined


def test_invalid_yaml_names_the_line_of_the_syntax_error() -> None:
    text = mutate("    calendar: office\n", "    calendar: office: again\n")
    [line] = errors(text)
    assert line.startswith(f"p.yaml:{line_of(text, 'office: again')}: not valid YAML: "), line
    assert "mapping values are not allowed here" in line


def test_tab_indentation_is_a_yaml_error() -> None:
    text = mutate("    warn_at: [0.5, 0.75]\n", "\twarn_at: [0.5, 0.75]\n")
    [line] = errors(text)
    assert line.startswith(f"p.yaml:{line_of(text, 'warn_at')}: not valid YAML"), line


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "", "null\n", "42\n"])
def test_not_a_mapping(text: str) -> None:
    assert errors(text) == ["p.yaml:1: the policy file must be a YAML mapping"]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert info.value.lines() == [f"{missing}: cannot read: No such file or directory"]
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)  # a directory
    assert str(info.value).startswith(f"{tmp_path}: cannot read: ")


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    path.write_text(mutate("first_response: 1h", "first_response: 1x"), "utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    [line] = info.value.lines()
    assert line.startswith(f"{path}:14: sla_policies[0].targets.first_response: ")


def test_unknown_top_level_field() -> None:
    text = BASE + "extra: 1\n"
    assert errors(text) == [
        f"p.yaml:{line_of(text, 'extra')}: extra: unknown field (check the spelling)"
    ]


def test_version_must_be_one() -> None:
    [line] = errors(BASE.replace("version: 1", "version: 2"))
    assert line.startswith("p.yaml:1: version: ")
