"""Custom help-desk statuses mapped to canonical ones by the policy (issue 21, item 5), read by
the Zendesk and Freshdesk webhook mappings, and what the engine makes of them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sources.freshdesk import parse_freshdesk
from connectors.sources.helpdesk import HelpdeskUpdate, to_event
from connectors.sources.ingest import Ingest
from connectors.sources.zendesk import parse_zendesk
from schemas.codec import codec_for
from streams.sla.engine import Engine
from streams.sla.events import EventError, EventType, Status
from streams.sla.policy import parse_policy

POLICY = """\
version: 1
statuses:
  Waiting on Vendor: ON_HOLD
  Awaiting customer: PENDING
  Being worked on: OPEN
sla_policies:
  - name: all
    targets: {resolution: 8h}
escalation_matrix:
  levels: [{level: 1, name: rep, contact: rep}]
  executive: {contact: exec}
"""
STATUSES = parse_policy(POLICY, "p.yaml").statuses


def zendesk(ticket: dict[str, Any], previous: dict[str, Any] | None = None) -> HelpdeskUpdate:
    body = {"ticket": {"id": 7, "updated_at": "2026-11-02T10:00:00Z", **ticket}}
    if previous is not None:
        body["previous"] = previous
    update = parse_zendesk(body, STATUSES)
    assert isinstance(update, HelpdeskUpdate)
    return update


def freshdesk(status: str, old: str | None = None) -> HelpdeskUpdate:
    fw: dict[str, Any] = {"ticket_id": 9, "ticket_status": status,
                          "ticket_updated_at": "2026-11-02T10:00:00Z"}  # fmt: skip
    if old is not None:
        fw["triggered_event"] = f"{{status:{{from:{old},to:{status}}}}}"
    update = parse_freshdesk({"freshdesk_webhook": fw}, STATUSES)
    assert isinstance(update, HelpdeskUpdate)
    return update


def test_zendesk_custom_status_maps_to_its_canonical_status() -> None:
    """Zendesk sends a custom status with its category as `status`: the policy's mapping of
    the custom name wins; an unmapped custom status leaves the category."""
    update = zendesk({"status": "open", "custom_status": "waiting on VENDOR"}, {"status": "open"})
    assert (update.status, update.type) == (Status.ON_HOLD, EventType.STATUS_CHANGED)
    assert zendesk({"status": "pending", "custom_status": "Other"}).status is Status.PENDING
    assert zendesk({"status": "Awaiting customer"}).status is Status.PENDING


def test_zendesk_previous_custom_status_decides_the_change() -> None:
    update = zendesk(
        {"status": "open", "custom_status": "Being worked on"},
        {"status": "open", "custom_status": "Waiting on vendor"},
    )
    assert update.status is Status.OPEN


def test_freshdesk_custom_status_names_map() -> None:
    update = freshdesk("Waiting on Vendor", old="Open")
    assert (update.status, update.type) == (Status.ON_HOLD, EventType.STATUS_CHANGED)
    assert freshdesk("awaiting customer").status is Status.PENDING
    assert freshdesk("Being worked on", old="Closed").type is EventType.REOPENED


def test_without_the_policy_a_custom_status_is_an_error_naming_the_field() -> None:
    payload = {"freshdesk_webhook": {"ticket_id": 9, "ticket_status": "Waiting on Vendor",
                                     "ticket_updated_at": "2026-11-02T10:00:00Z"}}  # fmt: skip
    with pytest.raises(EventError) as info:
        parse_freshdesk(payload)
    assert info.value.field == "freshdesk_webhook.ticket_status"
    with pytest.raises(EventError) as info:
        parse_zendesk({"ticket": {"id": 7, "status": "Waiting on Vendor",
                                  "updated_at": "2026-11-02T10:00:00Z"}})  # fmt: skip
    assert info.value.field == "ticket.status"


def test_a_mapped_pause_status_pauses_the_clock() -> None:
    """End to end: a Freshdesk custom status the policy maps to ON_HOLD pauses resolution."""
    engine = Engine(parse_policy(POLICY, "p.yaml"))
    created = {"freshdesk_webhook": {"ticket_id": 9, "ticket_status": "Open",
                                     "ticket_created_at": "2026-11-02T09:00:00Z",
                                     "ticket_updated_at": "2026-11-02T09:00:00Z"}}  # fmt: skip
    first = parse_freshdesk(created, STATUSES)
    assert isinstance(first, HelpdeskUpdate)
    state, _ = engine.apply(None, to_event(first, None))
    state, _ = engine.apply(state, to_event(freshdesk("Waiting on Vendor", old="Open"), None))
    clock = state.clocks["resolution"]
    assert (state.status, clock.running_since, clock.elapsed) == (Status.ON_HOLD, None, 3_600_000)


class _Sink:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send(self, records: Any) -> None:
        self.records.extend(records)

    async def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


async def test_ingest_maps_the_policys_custom_statuses_on_both_webhooks() -> None:
    """Through the real aiohttp server: the status reaching the worker is the canonical one."""
    codec = codec_for("TicketEvent")
    sink = _Sink()
    ingest = Ingest(sink, codec, None, clock=lambda: 1_793_700_000.0, statuses=STATUSES)
    zendesk_body = {"ticket": {"id": 7, "status": "hold", "custom_status": "Waiting on vendor",
                               "updated_at": "2026-11-02T10:00:00Z"}}  # fmt: skip
    fw = {"ticket_id": 9, "ticket_status": "Awaiting customer",
          "ticket_updated_at": "2026-11-02T10:00:00Z"}  # fmt: skip
    freshdesk_body = {"freshdesk_webhook": fw}
    async with TestClient(TestServer(ingest.app())) as client:
        assert (await client.post("/v1/webhooks/zendesk", json=zendesk_body)).status == 202
        assert (await client.post("/v1/webhooks/freshdesk", json=freshdesk_body)).status == 202
    statuses = [codec.decode(value)["status"] for _, value in sink.records]
    assert statuses == ["ON_HOLD", "PENDING"]


_NAMES = {"waiting on vendor": Status.ON_HOLD, "awaiting customer": Status.PENDING,
          "being worked on": Status.OPEN, "open": Status.OPEN, "pending": Status.PENDING,
          "resolved": Status.SOLVED, "waiting on third party": Status.ON_HOLD}  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(_NAMES)),
    flips=st.lists(st.booleans(), min_size=30, max_size=30),
    pad=st.sampled_from(["", " ", "  "]),
)
def test_any_spelling_of_a_mapped_name_reads_canonical(
    name: str, flips: list[bool], pad: str
) -> None:
    """Case and surrounding blanks never matter; built-in names keep their meaning."""
    cased = (c.upper() if f else c for c, f in zip(name, flips[: len(name)], strict=True))
    spelled = pad + "".join(cased) + pad
    assert freshdesk(spelled).status is _NAMES[name]


@settings(max_examples=50, deadline=None)
@given(name=st.text(st.characters(codec="ascii", categories=["L", "Zs"]), min_size=1))
def test_an_unmapped_name_is_an_error_naming_the_field(name: str) -> None:
    if name.strip().lower() in _NAMES or not name.strip() or name.strip() == "-":
        return
    with pytest.raises(EventError) as info:
        freshdesk(name)
    assert info.value.field == "freshdesk_webhook.ticket_status"
