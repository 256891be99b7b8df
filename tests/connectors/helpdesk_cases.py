"""The help-desk webhook fixtures (tests/connectors/fixtures/<source>.json), shared by the
mapping unit tests and the ingest integration test.

Each file holds one ticket's webhooks in order (``sequence``: payload, the tag set remembered
from the step before, the expected event without its id), webhooks that are valid but no event
(``ignored``) and invalid ones with the field the error must name (``invalid``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.sources.freshdesk import parse_freshdesk
from connectors.sources.helpdesk import HelpdeskUpdate
from connectors.sources.zendesk import parse_zendesk
from streams.sla.events import TicketEvent, event_to_dict

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARSERS = {"zendesk": parse_zendesk, "freshdesk": parse_freshdesk}
TICKETS = {"zendesk": "35436", "freshdesk": "4711"}  # the ticket of each fixture sequence


def cases(source: str, kind: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / f"{source}.json").read_text("utf-8"))
    result: list[dict[str, Any]] = data[kind]
    return result


def without_id(event: TicketEvent) -> dict[str, Any]:
    """The canonical form of an event minus its event id (a payload hash, checked apart)."""
    out = event_to_dict(event)
    del out["event_id"]
    return out


def update(source: str, payload: dict[str, Any]) -> HelpdeskUpdate:
    """The parsed webhook, which must be a ticket update (not ignored, no error)."""
    result = PARSERS[source](payload)
    assert isinstance(result, HelpdeskUpdate), result
    return result
