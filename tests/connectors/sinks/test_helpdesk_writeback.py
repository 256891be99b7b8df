"""Write-back to Zendesk and Freshdesk against a local desk that checks the documented request
shapes, the auth and answers rate limits: what is written, once, and what parks."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.sinks.helpdesk_writeback import HelpdeskConfig, HelpdeskSink, note, plan
from connectors.sinks.webhook import Deliverer, Outcome
from streams.runtime.settings import ConfigError, load_settings
from streams.runtime.topics import Topics
from streams.sla.actions import Reason
from tests.connectors.fake_desk import FakeDesk, Ticket
from tests.support.helpdesk import FRESHDESK_KEY, ZENDESK_USER, bump, escalation


def env_for(desk: FakeDesk, tmp_path: Path) -> dict[str, str]:
    if desk.desk == "zendesk":
        token = tmp_path / "zendesk-token"
        token.write_text(ZENDESK_USER[1] + "\n")  # mounted from a Secret: a trailing newline
        return {"ESCALATOR_HELPDESK_KIND": "zendesk", "ESCALATOR_HELPDESK_URL": desk.url,
                "ESCALATOR_ZENDESK_EMAIL": ZENDESK_USER[0],
                "ESCALATOR_ZENDESK_API_TOKEN_FILE": str(token),
                "ESCALATOR_HELPDESK_BACKOFF_BASE_S": "0.01"}  # fmt: skip
    return {"ESCALATOR_HELPDESK_KIND": "freshdesk", "ESCALATOR_HELPDESK_URL": desk.url,
            "ESCALATOR_FRESHDESK_API_KEY": FRESHDESK_KEY,
            "ESCALATOR_HELPDESK_BACKOFF_BASE_S": "0.01"}  # fmt: skip


@pytest.fixture(params=["zendesk", "freshdesk"])
def desk(request: pytest.FixtureRequest) -> Iterator[FakeDesk]:
    user = f"{ZENDESK_USER[0]}/token:{ZENDESK_USER[1]}" if request.param == "zendesk" else (
        f"{FRESHDESK_KEY}:X"
    )  # fmt: skip
    server = FakeDesk(request.param, user, retry_after="3")
    yield server
    server.close()


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def sink(desk: FakeDesk, tmp_path: Path) -> AsyncIterator[tuple[HelpdeskSink, Sleeps]]:
    config = HelpdeskConfig.from_env(env_for(desk, tmp_path))
    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    sink = HelpdeskSink(settings, config, Topics(), "g")
    sleeps = Sleeps()
    async with aiohttp.ClientSession() as session:
        sink.deliverer = Deliverer(session, [config.target], None, sleep=sleeps)
        yield sink, sleeps
    sink.consumer.close()


async def test_escalation_and_bump_are_written_as_documented_and_only_once(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    writer, _ = sink
    esc = escalation("4711")
    desk.tickets["4711"] = Ticket(["vip"])
    assert (await writer.write("escalations", esc)).delivered
    assert (await writer.write("priority-bumps", bump("4711", esc["escalation_id"]))).delivered
    ticket = desk.tickets["4711"]
    eid = esc["escalation_id"]
    assert ticket.tags == ["vip", f"escalator-{eid}", f"escalator-bump-{eid}"]
    assert ticket.priority == ("urgent" if desk.desk == "zendesk" else 4)
    assert len(ticket.notes) == 2
    assert "level 2 (support-manager)" in ticket.notes[0] and eid in ticket.notes[0]
    assert "from NORMAL to URGENT" in ticket.notes[1]
    path = "/api/v2/tickets/4711" + (".json" if desk.desk == "zendesk" else "")
    per_record = [("PUT", path)] if desk.desk == "zendesk" else [
        ("POST", f"{path}/notes"), ("PUT", path),
    ]  # fmt: skip
    assert desk.writes() == per_record * 2
    # Again (a redelivery after a crash): read, see the marker, write nothing.
    assert (await writer.write("escalations", esc)).delivered
    assert (await writer.write("priority-bumps", bump("4711", eid))).delivered
    assert desk.writes() == per_record * 2 and writer.duplicates == 2
    assert len(ticket.notes) == 2


@pytest.mark.parametrize("desk", ["freshdesk"], indirect=True)  # Zendesk: one request
async def test_a_note_written_before_a_crash_is_not_written_again(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    """Freshdesk takes the note and the marker tag in two requests: a crash between them
    leaves the note and no tag. The next attempt finds the note among the conversations
    (past the first page) and writes only the tag."""
    writer, _ = sink
    esc = escalation("77")
    others = [f"an agent's note {n}" for n in range(150)]
    desk.tickets["77"] = Ticket(["vip"], notes=[*others, note("escalations", esc)])
    assert (await writer.write("escalations", esc)).delivered
    ticket = desk.tickets["77"]
    assert ticket.notes[:-1] == others and len(ticket.notes) == 151  # not written again
    assert ticket.tags == ["vip", f"escalator-{esc['escalation_id']}"]
    assert desk.writes() == [("PUT", "/api/v2/tickets/77")]
    pages = [p for m, p, _ in desk.requests if "/conversations" in p]
    assert pages == [f"/api/v2/tickets/77/conversations?per_page=100&page={n}" for n in (1, 2)]


async def test_a_429_waits_its_retry_after_and_a_5xx_is_retried(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    writer, sleeps = sink
    desk.script = [("GET", 429, ""), ("PUT", 503, "")]
    esc = escalation("12")
    outcome = await writer.write("escalations", esc)
    assert outcome.delivered
    assert sleeps[0] >= 3.0  # Retry-After: 3 (backoff alone would be under 0.02 s)
    assert len(sleeps) == 2 and sleeps[1] < 1.0
    statuses = [(m, s) for m, _, s in desk.requests]
    assert (statuses[0], statuses[1]) == (("GET", 429), ("GET", 200))
    assert ("PUT", 503) in statuses
    assert desk.tickets["12"].tags == [f"escalator-{esc['escalation_id']}"]
    assert len(desk.tickets["12"].notes) == 1


async def test_wrong_credentials_are_rejected_once_and_parked(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    writer, sleeps = sink
    desk.auth = "Basic " + base64.b64encode(b"someone:else").decode()
    parked: list[Outcome] = []

    async def park(msg: Any, escalation_id: Any, target: Any, outcome: Outcome) -> None:
        parked.append(outcome)

    writer._park = park  # type: ignore[method-assign]
    await writer.dispatch(None, "escalations", escalation("7"))  # type: ignore[arg-type]
    assert [(o.status, o.attempts) for o in parked] == [(401, 1)] and not sleeps
    assert "401" in parked[0].error


async def test_sla_warnings_and_bad_ticket_ids(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    writer, _ = sink
    parked: list[Outcome] = []

    async def park(msg: Any, escalation_id: Any, target: Any, outcome: Outcome) -> None:
        parked.append(outcome)

    writer._park = park  # type: ignore[method-assign]
    warning = escalation("8", level=1, reason=Reason.SLA_WARNING)
    await writer.dispatch(None, "escalations", warning)  # type: ignore[arg-type]
    assert desk.requests == [] and writer.skipped == 1  # a heads-up, not an escalation
    await writer.dispatch(None, "escalations", escalation("T-8"))  # type: ignore[arg-type]
    assert desk.requests == [] and len(parked) == 1
    assert "ticket_id 'T-8' is not a" in parked[0].error
    desk.unknown_404 = True
    await writer.dispatch(None, "escalations", escalation("9"))  # type: ignore[arg-type]
    assert parked[1].status == 404 and parked[1].attempts == 1


def test_freshdesk_priority_codes_and_zendesk_names() -> None:
    esc = escalation("5")
    for new, zendesk, freshdesk in (("LOW", "low", 1), ("NORMAL", "normal", 2),
                                    ("HIGH", "high", 3), ("URGENT", "urgent", 4)):  # fmt: skip
        record = bump("5", esc["escalation_id"], new)
        (zd,) = plan("zendesk", "priority-bumps", record, [])
        assert zd.body is not None and zd.body["ticket"]["priority"] == zendesk
        note, put = plan("freshdesk", "priority-bumps", record, ["a"])
        assert note.body is not None and note.body["private"] is True
        assert put.body == {"tags": ["a", f"escalator-bump-{esc['escalation_id']}"],
                            "priority": freshdesk}  # fmt: skip
    assert plan("zendesk", "escalations", esc, [f"escalator-{esc['escalation_id']}"]) == []


def test_config_errors_name_the_variable(tmp_path: Path) -> None:
    cases = [
        ({}, "ESCALATOR_HELPDESK_KIND=''"),
        ({"ESCALATOR_HELPDESK_KIND": "zendesk"}, "ESCALATOR_HELPDESK_URL=''"),
        ({"ESCALATOR_HELPDESK_KIND": "zendesk", "ESCALATOR_HELPDESK_URL": "https://a.zendesk.com"},
         "ESCALATOR_ZENDESK_API_TOKEN"),
        ({"ESCALATOR_HELPDESK_KIND": "freshdesk", "ESCALATOR_HELPDESK_URL": "https://a.fd.com",
          "ESCALATOR_FRESHDESK_API_KEY_FILE": str(tmp_path / "missing")},
         "ESCALATOR_FRESHDESK_API_KEY_FILE="),
    ]  # fmt: skip
    for env, named in cases:
        with pytest.raises(ConfigError, match=re.escape(named)) as raised:
            HelpdeskConfig.from_env(env)
        assert "\n" not in str(raised.value)
    config = HelpdeskConfig.from_env({
        "ESCALATOR_HELPDESK_KIND": "zendesk", "ESCALATOR_HELPDESK_URL": "https://a.zendesk.com/",
        "ESCALATOR_ZENDESK_EMAIL": "a@b.c", "ESCALATOR_ZENDESK_API_TOKEN": "tok",
    })  # fmt: skip
    assert config.authorization == "Basic " + base64.b64encode(b"a@b.c/token:tok").decode()
    assert config.base_url == "https://a.zendesk.com" and "tok" not in repr(config)


async def test_two_records_of_one_ticket_at_once_keep_both_markers(
    desk: FakeDesk, sink: tuple[HelpdeskSink, Sleeps]
) -> None:
    """Tags are replaced by each write: concurrent writes of one ticket take turns."""
    import asyncio

    writer, _ = sink
    esc = escalation("31")
    eid = esc["escalation_id"]
    done = await asyncio.gather(writer.write("escalations", esc),
                                writer.write("priority-bumps", bump("31", eid)))  # fmt: skip
    assert all(o.delivered for o in done)
    assert sorted(desk.tickets["31"].tags) == sorted([f"escalator-{eid}", f"escalator-bump-{eid}"])
    assert writer.busy == {} and writer.users == {}
