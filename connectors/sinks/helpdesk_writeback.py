"""`escalator sink helpdesk`: escalations and priority bumps written back to the ticket in
Zendesk or Freshdesk, so agents see them where they work.

(connectors.sources.helpdesk maps the other direction: help-desk webhooks in, ticket events out.)

It is the webhook sink with another `dispatch` (connectors.sinks.webhook): the same
read_committed consumer, offsets committed only after a record is written or parked, the
same retries with backoff and full jitter, `Retry-After` on 429, circuit and backlog limit,
and parking on `webhook-dlq` (target `helpdesk-zendesk` or `helpdesk-freshdesk`).

Per record, the documented APIs:

- Zendesk: `GET /api/v2/tickets/{id}.json` (its tags), then one
  `PUT /api/v2/tickets/{id}.json` with `{"ticket": {"comment": {"body", "public": false},
  "tags": [...], "priority"}}`: the internal note, the tags and (for a bump) the priority in
  one update. Basic auth `{email}/token:{api_token}`.
- Freshdesk: `GET /api/v2/tickets/{id}` (its tags), `GET /api/v2/tickets/{id}/conversations`
  (its notes, 100 a page), `POST /api/v2/tickets/{id}/notes` with `{"body", "private": true}`
  unless a note carries the marker already, then `PUT /api/v2/tickets/{id}` with
  `{"tags": [...], "priority": 1-4}`. Basic auth `{api_key}:X`.

Idempotent per escalation id: the write adds the tag `escalator-<id>` (`escalator-bump-<id>`
for a bump: a bump shares its escalation's id), and a ticket that already carries it is left
alone. Zendesk's single PUT makes that exact. On Freshdesk the note and the tag are two
requests: the note ends with the marker in brackets, so after a crash between the two the
note found among the ticket's conversations is not written again, and only the tag is.

SLA warnings are heads-ups to the owner, not escalations: they are not written back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from confluent_kafka import Message

from connectors.sinks.webhook import Outcome, WebhookSink
from connectors.sinks.webhook_targets import ESCALATIONS, PRIORITY_BUMPS, Target
from streams.runtime.settings import ConfigError, Settings, _secret
from streams.runtime.topics import Topics
from streams.sla.actions import Reason
from streams.sla.events import format_ts

Desk = Literal["zendesk", "freshdesk"]
DESKS: Final = ("zendesk", "freshdesk")
# Freshdesk's priority codes (1 low, 2 medium, 3 high, 4 urgent); Zendesk takes the names.
FRESHDESK_PRIORITY: Final = {"LOW": 1, "NORMAL": 2, "HIGH": 3, "URGENT": 4}


@dataclass(frozen=True)
class HelpdeskConfig:
    """Where to write and how to authenticate (the secret stays out of repr)."""

    desk: Desk
    base_url: str  # e.g. https://acme.zendesk.com
    authorization: str  # the Authorization header value
    target: Target  # retry, backoff, circuit and concurrency settings; its name labels metrics

    def __repr__(self) -> str:
        return f"HelpdeskConfig({self.desk}, {self.base_url})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HelpdeskConfig:
        """From ESCALATOR_HELPDESK_* and the desk's credentials (or their _FILE variants,
        mounted from a Secret); a missing or wrong value raises one ConfigError naming it."""
        env = os.environ if env is None else env
        desk = env.get("ESCALATOR_HELPDESK_KIND", "")
        if desk not in DESKS:
            raise ConfigError(f"ESCALATOR_HELPDESK_KIND={desk!r}: must be zendesk or freshdesk")
        url = (env.get("ESCALATOR_HELPDESK_URL") or "").rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.password:
            raise ConfigError(
                f"ESCALATOR_HELPDESK_URL={url!r}: must be the desk's http(s) base URL, "
                "e.g. https://acme.zendesk.com, with no password in it"
            )
        if desk == "zendesk":
            email = env.get("ESCALATOR_ZENDESK_EMAIL", "")
            token = _secret(env, "ESCALATOR_ZENDESK_API_TOKEN")
            if not email or not token:
                raise ConfigError(
                    "Zendesk needs ESCALATOR_ZENDESK_EMAIL and ESCALATOR_ZENDESK_API_TOKEN "
                    "(or ESCALATOR_ZENDESK_API_TOKEN_FILE)"
                )
            user = f"{email}/token:{token}"
        else:
            key = _secret(env, "ESCALATOR_FRESHDESK_API_KEY")
            if not key:
                raise ConfigError(
                    "Freshdesk needs ESCALATOR_FRESHDESK_API_KEY "
                    "(or ESCALATOR_FRESHDESK_API_KEY_FILE)"
                )
            user = f"{key}:X"
        try:
            target = Target(
                name=f"helpdesk-{desk}",
                url=url,
                topics=[ESCALATIONS, PRIORITY_BUMPS],
                max_attempts=int(env.get("ESCALATOR_HELPDESK_MAX_ATTEMPTS", "8")),
                backoff_cap_s=float(env.get("ESCALATOR_HELPDESK_BACKOFF_CAP_S", "60")),
                backoff_base_s=float(env.get("ESCALATOR_HELPDESK_BACKOFF_BASE_S", "0.5")),
            )
        except ValueError as exc:
            first = str(exc).splitlines()
            raise ConfigError(f"ESCALATOR_HELPDESK_*: {' '.join(first[:3])}") from None
        auth = "Basic " + base64.b64encode(user.encode()).decode()
        return cls(desk, url, auth, target)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Call:
    """One request to the help desk."""

    method: str
    path: str
    body: dict[str, Any] | None = None


def marker(base: str, escalation_id: str) -> str:
    """The tag that says this record is on the ticket already."""
    return f"escalator-bump-{escalation_id}" if base == PRIORITY_BUMPS else (
        f"escalator-{escalation_id}"
    )  # fmt: skip


def note(base: str, record: Mapping[str, Any]) -> str:
    """The internal note agents read, ending with its marker in brackets."""
    tag = marker(base, record["escalation_id"])
    if base == PRIORITY_BUMPS:
        return (
            f"Escalator raised the priority from {record['old_priority']} to "
            f"{record['new_priority']} ({record['reason']}, escalation {record['escalation_id']})."
            f" [{tag}]"
        )
    return (
        f"Escalator: escalated to level {record['level']} ({record['target']}), reason "
        f"{record['reason']}, rule {record['rule']}, due {format_ts(int(record['due_at']))}, "
        f"escalation {record['escalation_id']}. [{tag}]"
    )


CONVERSATIONS_PAGE = 100  # Freshdesk's largest page
CONVERSATIONS_PAGES = 50  # a ticket with more than 5,000 notes is not searched further


def conversations_of(response: bytes) -> list[Any]:
    """A page of a Freshdesk ticket's conversations (ValueError if the answer is no list)."""
    page = json.loads(response)
    if not isinstance(page, list):
        raise ValueError("the conversations answer is not a list")
    return page


def has_note(page: list[Any], tag: str) -> bool:
    """Whether a page of Freshdesk conversations holds a note ending with `[tag]`."""
    wanted = f"[{tag}]"
    return any(
        isinstance(c, dict) and wanted in f"{c.get('body_text') or ''} {c.get('body') or ''}"
        for c in page
    )


def ticket_path(desk: Desk, ticket_id: str) -> str:
    """The ticket's API path; help-desk ticket ids are numbers (ValueError otherwise)."""
    if not ticket_id.isdigit():
        raise ValueError(f"ticket_id {ticket_id!r} is not a {desk} ticket id (digits)")
    return f"/api/v2/tickets/{ticket_id}" + (".json" if desk == "zendesk" else "")


def tags_of(desk: Desk, response: bytes) -> list[str]:
    """The ticket's tags from the GET answer (ValueError if it has none)."""
    doc = json.loads(response)
    ticket = doc.get("ticket") if desk == "zendesk" else doc
    tags = ticket.get("tags") if isinstance(ticket, dict) else None
    if not isinstance(tags, list):
        raise ValueError("the ticket in the answer has no tags list")
    return [str(t) for t in tags]


def plan(desk: Desk, base: str, record: Mapping[str, Any], tags: Sequence[str]) -> list[Call]:
    """The writes that put `record` on a ticket that has `tags` (none when it is there)."""
    tag = marker(base, record["escalation_id"])
    if tag in tags:
        return []
    path = ticket_path(desk, record["ticket_id"])
    new_tags = [*tags, tag]
    text = note(base, record)
    priority = str(record["new_priority"]) if base == PRIORITY_BUMPS else None
    if desk == "zendesk":
        ticket: dict[str, Any] = {"comment": {"body": text, "public": False}, "tags": new_tags}
        if priority is not None:
            ticket["priority"] = priority.lower()
        return [Call("PUT", path, {"ticket": ticket})]
    update: dict[str, Any] = {"tags": new_tags}
    if priority is not None:
        update["priority"] = FRESHDESK_PRIORITY[priority]
    return [
        Call("POST", f"{path}/notes", {"body": text, "private": True}),
        Call("PUT", path, update),  # the marker last: a crash before it repeats the note
    ]


class HelpdeskSink(WebhookSink):
    """The webhook sink's loop, writing each record to the help desk instead of posting it."""

    kind = "helpdesk"

    def __init__(
        self,
        settings: Settings,
        config: HelpdeskConfig,
        topics: Topics,
        group: str,
        start: str = "earliest",
    ) -> None:
        super().__init__(settings, [config.target], topics, group, None, start=start)
        self.config = config
        self.skipped = 0  # SLA warnings, not written back
        self.duplicates = 0  # already on the ticket
        # A write replaces the ticket's tags with what it read plus its marker: two records of
        # one ticket at once would lose one marker, so a ticket's writes take turns.
        self.busy: dict[str, asyncio.Lock] = {}
        self.users: dict[str, int] = {}  # records of the ticket holding or awaiting its lock

    async def dispatch(self, msg: Message, base: str, record: Mapping[str, Any]) -> None:
        if base == ESCALATIONS and record["reason"] == Reason.SLA_WARNING:
            self.skipped += 1
            return
        target = self.config.target
        try:
            outcome = await self.write(base, record)
        except Exception as exc:  # a bad ticket id or answer: park it, never stop on it
            outcome = Outcome(False, 0, None, f"cannot write back: {type(exc).__name__}: {exc}")
        if outcome.delivered:
            self.delivered += 1
        else:
            await self._park(msg, record["escalation_id"], target.name, outcome)

    async def write(self, base: str, record: Mapping[str, Any]) -> Outcome:
        """Read the ticket's tags, then apply what is not there yet (one record of a ticket
        at a time)."""
        ticket_id = record["ticket_id"]
        lock = self.busy.setdefault(ticket_id, asyncio.Lock())
        self.users[ticket_id] = self.users.get(ticket_id, 0) + 1
        try:
            async with lock:
                return await self._write(base, record)
        finally:
            self.users[ticket_id] -= 1
            if not self.users[ticket_id]:  # nobody holds or waits for it
                del self.users[ticket_id], self.busy[ticket_id]

    async def _write(self, base: str, record: Mapping[str, Any]) -> Outcome:
        desk = self.config.desk
        got = await self.call(Call("GET", ticket_path(desk, record["ticket_id"])))
        if not got.delivered:
            return got
        calls = plan(desk, base, record, tags_of(desk, got.response))
        if not calls:
            self.duplicates += 1
        elif calls[0].method == "POST":  # Freshdesk: the note may be there from a crash
            found = await self._noted(calls[0].path.removesuffix("/notes"), base, record)
            if isinstance(found, Outcome):
                return found
            if found:
                calls = calls[1:]
        outcome = got
        for call in calls:
            outcome = await self.call(call)
            if not outcome.delivered:
                return outcome
        return outcome

    async def _noted(self, path: str, base: str, record: Mapping[str, Any]) -> bool | Outcome:
        """Whether the ticket's conversations hold this record's note (an Outcome: the read
        failed)."""
        tag = marker(base, record["escalation_id"])
        for page in range(1, CONVERSATIONS_PAGES + 1):
            query = f"?per_page={CONVERSATIONS_PAGE}&page={page}"
            got = await self.call(Call("GET", f"{path}/conversations{query}"))
            if not got.delivered:
                return got
            conversations = conversations_of(got.response)
            if has_note(conversations, tag):
                return True
            if len(conversations) < CONVERSATIONS_PAGE:
                return False
        return False

    async def call(self, call: Call) -> Outcome:
        headers = {"Authorization": self.config.authorization, "Accept": "application/json"}
        body = None
        if call.body is not None:
            body = json.dumps(call.body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        return await self.deliverer.request(
            self.config.target, call.method, self.config.base_url + call.path, body, headers
        )

    def status(self) -> None:
        self.say(
            f"{self.delivered:,} written, {self.duplicates:,} already there, {self.parked:,} "
            f"parked, {self.skipped:,} SLA warnings skipped, "
            f"{self.tracker.in_flight():,} in flight"
        )
