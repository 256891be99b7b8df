"""The fixtures of both help desks (tests/connectors/fixtures/) through their mappings."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sources.helpdesk import Ignored, to_event
from streams.sla.events import EventError
from tests.connectors.helpdesk_cases import PARSERS, TICKETS, cases, update, without_id


def each(kind: str) -> list[Any]:
    return [
        pytest.param(source, case, id=f"{source}-{case['name']}")
        for source in PARSERS
        for case in cases(source, kind)
    ]


@pytest.mark.parametrize(("source", "case"), each("sequence"))
def test_fixture_becomes_expected_event(source: str, case: dict[str, Any]) -> None:
    event = to_event(update(source, case["payload"]), case["previous_tags"])
    assert without_id(event) == case["expected"]
    assert event.event_id.startswith(f"{source}-{TICKETS[source]}-{event.occurred_at}-")


@pytest.mark.parametrize(("source", "case"), each("invalid"))
def test_invalid_payload_names_the_field(source: str, case: dict[str, Any]) -> None:
    with pytest.raises(EventError) as info:
        PARSERS[source](case["payload"])
    assert info.value.field == case["field"]


@pytest.mark.parametrize(("source", "case"), each("ignored"))
def test_notes_are_ignored(source: str, case: dict[str, Any]) -> None:
    result = PARSERS[source](case["payload"])
    assert isinstance(result, Ignored)
    assert result.reason


@pytest.mark.parametrize("source", PARSERS)
def test_event_id_is_stable_for_a_retry_and_differs_for_another_webhook(source: str) -> None:
    sequence = cases(source, "sequence")
    payload = sequence[4]["payload"]
    reordered = dict(reversed(list(payload.items())))  # a retry may serialize keys differently
    first = to_event(update(source, payload), sequence[4]["previous_tags"])
    retry = to_event(update(source, reordered), None)  # the tag memory moved on meanwhile
    assert retry.event_id == first.event_id
    assert retry.tags_added != first.tags_added
    other = to_event(update(source, sequence[5]["payload"]), None)
    assert other.event_id != first.event_id
