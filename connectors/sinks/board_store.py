"""The live escalation board in Redis: its key layout, its idempotent writes and its reads.

The board is a projection of the ticket-board topic: the worker decides what each ticket shows
(streams.sla.board.follow) and this module only mirrors each record into readable structures.
Key names start with a prefix (ESCALATOR_BOARD_PREFIX, default "escalator:board:", plus the
run's topic prefix, so tests and demos do not collide). For Redis Cluster, put a hash tag in
the prefix (e.g. "escalator:{board}:") so a batch's transaction stays in one slot.

Keys (after the prefix):

- `ticket:<ticket>` (hash): the board entry of an escalated ticket: level, target, reason,
  kind, rule, due_at, fired_at, escalation_id, open_escalations, priority, climbs_at.
- `warning:<ticket>` (hash): the ticket's latest open SLA warning (streams.sla.board
  WarningEntry): a heads-up to the current owner, kept apart from the escalations: it is in
  no `open`, `team:` or `level:` key and counts as no open escalation.
- `warnings` (sorted set): tickets with an open SLA warning by its due_at.
- `open` (sorted set): tickets on the board by due_at of their latest open escalation.
- `due` (sorted set): tickets by climbs_at, when they escalate further if nobody answers.
- `team:<target>` and `level:<n>` (sets): tickets per escalation target (team) and level;
  `teams` and `levels` (sets) name them.
- `events` (capped stream): the records' feed lines (`escalation`, `warning`,
  `priority_bump`, `resolved`) for agent desktops, in the order the sink read them.
- `feed` (sorted set, capped like the stream): the same lines as JSON scored by their event
  time (`at`), so "latest events" is in time order whatever order the sink read its
  partitions in.
- `fired`, `breaches`, `warned` (sorted sets): escalation ids by fired_at (escalations, SLA
  breaches, SLA warnings) over the last 2 hours of the board clock (the latest fired_at), for
  the breach rate.
- `stats` (hash): `escalations`, `warnings`, `bumps`, `resolved`: feed lines counted.
- `applied` (hash): `<topic>:<partition>` -> the offset after the last record applied.
- `sink` (hash): the sink's heartbeat (updated_at, lag, counts).

Writes are idempotent: a batch reads `applied` under WATCH, skips the records at offsets
already applied, and writes the rest and the new offsets in one MULTI/EXEC, which fails and
is redone if another sink wrote in between. So a batch read again after a crash between the
Redis write and the offset commit changes nothing, feed lines and counters included. The
offsets are by topic name: a board fed from a recreated topic starts from an empty board
(delete the prefix's keys).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis

from streams.runtime.settings import Settings
from streams.sla.actions import BREACHES
from streams.sla.board import BoardEntry, BoardRecord, News, WarningEntry

HOUR_MS = 3_600_000
RATE_WINDOW_MS = 2 * HOUR_MS  # fired/breaches keep this much board-clock history
MAX_WATCH_RETRIES = 100
STAT_OF = {"escalation": "escalations", "warning": "warnings", "priority_bump": "bumps"}


@dataclass(frozen=True)
class BoardKeys:
    """Every Redis key of one board."""

    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings, run: str = "") -> BoardKeys:
        return cls(f"{settings.connectors.board_prefix}{run}")

    def ticket(self, ticket_id: str) -> str:
        return f"{self.prefix}ticket:{ticket_id}"

    def team(self, target: str) -> str:
        return f"{self.prefix}team:{target}"

    def level(self, level: int | str) -> str:
        return f"{self.prefix}level:{level}"

    def warning(self, ticket_id: str) -> str:
        return f"{self.prefix}warning:{ticket_id}"

    @property
    def warnings(self) -> str:
        return f"{self.prefix}warnings"

    @property
    def warned(self) -> str:
        return f"{self.prefix}warned"

    @property
    def feed(self) -> str:
        return f"{self.prefix}feed"

    @property
    def open(self) -> str:
        return f"{self.prefix}open"

    @property
    def due(self) -> str:
        return f"{self.prefix}due"

    @property
    def teams(self) -> str:
        return f"{self.prefix}teams"

    @property
    def levels(self) -> str:
        return f"{self.prefix}levels"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def fired(self) -> str:
        return f"{self.prefix}fired"

    @property
    def breaches(self) -> str:
        return f"{self.prefix}breaches"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def applied(self) -> str:
        return f"{self.prefix}applied"

    @property
    def sink(self) -> str:
        return f"{self.prefix}sink"


@dataclass(frozen=True)
class Update:
    """One ticket-board record as read: its coordinates and the record (None: a tombstone,
    the ticket left the worker's store)."""

    topic: str
    partition: int
    offset: int
    ticket_id: str
    record: BoardRecord | None


@dataclass
class Applied:
    """What a batch changed (records at offsets applied before changed nothing)."""

    records: int = 0
    duplicates: int = 0
    tombstones: int = 0
    added: int = 0  # tickets that came onto the board
    removed: int = 0  # tickets that left it
    retries: int = 0  # transactions redone because another writer wrote in between


_INT_FIELDS = frozenset(
    ("level", "due_at", "fired_at", "open_escalations", "climbs_at", "open_warnings")
)


def encode_entry(entry: BoardEntry | WarningEntry) -> dict[str, str]:
    """The `ticket:<id>` hash of an entry (absent optionals are left out)."""
    return {name: str(value) for name, value in asdict(entry).items() if value is not None}


def decode_entry(fields: Mapping[str, str]) -> BoardEntry:
    values: dict[str, Any] = {"priority": None, "climbs_at": None}
    for name, value in fields.items():
        values[name] = int(value) if name in _INT_FIELDS else value
    return BoardEntry(**values)


def decode_warning(fields: Mapping[str, str]) -> WarningEntry:
    return WarningEntry(**{k: int(v) if k in _INT_FIELDS else v for k, v in fields.items()})


def news_fields(news: News) -> dict[str, Any]:
    """A feed line as the stream and the board page show it (without `at`, absent fields)."""
    return {k: v for k in news.__slots__ if k != "at" and (v := getattr(news, k)) is not None}


class BoardWriter:
    """Applies batches of ticket-board records to the board; `client` must decode responses
    (decode_responses=True)."""

    def __init__(self, client: redis.Redis, keys: BoardKeys, stream_maxlen: int = 10_000) -> None:
        self.client = client
        self.keys = keys
        self.stream_maxlen = stream_maxlen

    def apply(self, batch: Sequence[Update]) -> Applied:
        """Write a batch in one transaction; raises redis errors (nothing written then)."""
        if not batch:
            return Applied()
        keys = self.keys
        tickets = sorted({u.ticket_id for u in batch})
        retries = 0
        while True:
            with self.client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(keys.applied)  # type: ignore[no-untyped-call]
                    # Reads go through another connection in one round trip; the WATCH above
                    # still catches another writer of the same partitions.
                    reads = self.client.pipeline(transaction=False)
                    reads.hgetall(keys.applied)
                    for ticket_id in tickets:
                        reads.hgetall(keys.ticket(ticket_id))
                    reads.zrange(keys.fired, -1, -1, withscores=True)
                    reads.zrange(keys.warned, -1, -1, withscores=True)
                    stored, *shown, last_fired, last_warned = reads.execute()
                    tx.multi()
                    applied = self._plan(tx, batch, stored, dict(zip(tickets, shown, strict=True)),
                                         [last_fired, last_warned])  # fmt: skip
                    applied.retries = retries
                    tx.execute()
                    return applied
                except redis.WatchError:
                    retries += 1
                    if retries >= MAX_WATCH_RETRIES:
                        raise

    def _plan(
        self,
        tx: Any,
        batch: Sequence[Update],
        stored: Mapping[str, str],
        shown: dict[str, Mapping[str, str]],
        lasts: list[list[tuple[str, float]]],
    ) -> Applied:
        """Queue the writes of the batch's records not applied yet."""
        keys = self.keys
        applied = Applied()
        done = {k: int(v) for k, v in stored.items()}
        latest: dict[str, BoardRecord | None] = {}
        offsets: dict[str, int] = {}
        feed: dict[str, int] = {}
        clock = max([0] + [int(last[0][1]) for last in lasts if last])
        fired = False
        for update in batch:
            where = f"{update.topic}:{update.partition}"
            if update.offset < offsets.get(where, done.get(where, 0)):
                applied.duplicates += 1
                continue
            offsets[where] = update.offset + 1
            latest[update.ticket_id] = update.record
            if update.record is None:
                applied.tombstones += 1
                continue
            applied.records += 1
            for news in update.record.news():
                fired |= self._news(tx, news, feed)
                if news.fired_at is not None:
                    clock = max(clock, news.fired_at)
        for ticket_id, record in latest.items():
            self._show(tx, ticket_id, shown[ticket_id], record, applied)
        if fired:
            horizon = f"({clock - RATE_WINDOW_MS}"
            for key in (keys.fired, keys.breaches, keys.warned):
                tx.zremrangebyscore(key, "-inf", horizon)
        if feed:
            tx.zadd(keys.feed, feed)
            tx.zremrangebyrank(keys.feed, 0, -self.stream_maxlen - 1)
        if offsets:
            tx.hset(keys.applied, mapping=offsets)
        return applied

    def _news(self, tx: Any, news: News, feed: dict[str, int]) -> bool:
        """Queue a feed line, its counter and its rate entries; True if it fired something."""
        keys = self.keys
        kind = news.type
        fields = news_fields(news)
        tx.xadd(keys.events, fields, maxlen=self.stream_maxlen, approximate=True)
        feed[orjson.dumps({**fields, "at": news.at}, option=orjson.OPT_SORT_KEYS).decode()] = (
            news.at
        )
        tx.hincrby(keys.stats, STAT_OF.get(kind, kind), 1)
        if kind not in ("escalation", "warning") or news.fired_at is None:
            return False
        at = news.fired_at
        tx.zadd(keys.warned if kind == "warning" else keys.fired, {news.escalation_id: at})
        if news.reason in BREACHES:
            tx.zadd(keys.breaches, {news.escalation_id: at})
        return True

    def _show(
        self,
        tx: Any,
        ticket_id: str,
        shown: Mapping[str, str],
        record: BoardRecord | None,
        applied: Applied,
    ) -> None:
        """Queue the writes that move a ticket's entry and warning from what the board holds
        to what `record` shows (a tombstone shows nothing)."""
        keys = self.keys
        entry = None if record is None else record.view.entry
        warning = None if record is None else record.view.warning
        fields = encode_entry(entry) if entry is not None else {}
        if fields != dict(shown):
            self._move(tx, ticket_id, shown, entry, fields, applied)
        tx.delete(keys.warning(ticket_id))
        if warning is None:
            tx.zrem(keys.warnings, ticket_id)
        else:
            tx.hset(keys.warning(ticket_id), mapping=encode_entry(warning))
            tx.zadd(keys.warnings, {ticket_id: warning.due_at})

    def _move(
        self,
        tx: Any,
        ticket_id: str,
        shown: Mapping[str, str],
        entry: BoardEntry | None,
        fields: Mapping[str, str],
        applied: Applied,
    ) -> None:
        keys = self.keys
        old_target, old_level = shown.get("target"), shown.get("level")
        ticket_key = keys.ticket(ticket_id)
        tx.delete(ticket_key)
        if entry is None:
            applied.removed += 1
            tx.zrem(keys.open, ticket_id)
            tx.zrem(keys.due, ticket_id)
            if old_target is not None:
                tx.srem(keys.team(old_target), ticket_id)
            if old_level is not None:
                tx.srem(keys.level(old_level), ticket_id)
            return
        if not shown:
            applied.added += 1
        tx.hset(ticket_key, mapping=dict(fields))
        tx.zadd(keys.open, {ticket_id: entry.due_at})
        if entry.climbs_at is None:
            tx.zrem(keys.due, ticket_id)
        else:
            tx.zadd(keys.due, {ticket_id: entry.climbs_at})
        if old_target != entry.target:
            if old_target is not None:
                tx.srem(keys.team(old_target), ticket_id)
            tx.sadd(keys.team(entry.target), ticket_id)
            tx.sadd(keys.teams, entry.target)
        if old_level != str(entry.level):
            if old_level is not None:
                tx.srem(keys.level(old_level), ticket_id)
            tx.sadd(keys.level(entry.level), ticket_id)
            tx.sadd(keys.levels, entry.level)

    def heartbeat(self, fields: Mapping[str, int | str]) -> None:
        """The sink's liveness and progress, for the board page."""
        values = {**fields, "updated_at": int(time.time() * 1000)}
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.sink, mapping=values)  # type: ignore[arg-type]
            pipe.expire(self.keys.sink, 86_400)
            pipe.execute()

    def open_count(self) -> int:
        return int(self.client.zcard(self.keys.open))


class BoardReader:
    """What the board page and the tests read; `client` must decode responses."""

    def __init__(self, client: redis.Redis, keys: BoardKeys) -> None:
        self.client = client
        self.keys = keys

    def entries(self) -> dict[str, BoardEntry]:
        """Every ticket on the board (one the sink removes between the listing and the read is
        left out, not an error: the board is read while the sink writes it)."""
        tickets = [str(t) for t in self.client.zrange(self.keys.open, 0, -1)]
        return {entry.ticket_id: entry for entry in self._entries(tickets)}

    def warnings(self) -> dict[str, WarningEntry]:
        """Every ticket with an open SLA warning (apart from the escalations)."""
        tickets = [str(t) for t in self.client.zrange(self.keys.warnings, 0, -1)]
        return {w.ticket_id: w for w in self._warnings(tickets)}

    def _warnings(self, tickets: list[str]) -> list[WarningEntry]:
        with self.client.pipeline(transaction=False) as pipe:
            for ticket_id in tickets:
                pipe.hgetall(self.keys.warning(ticket_id))
            return [decode_warning(fields) for fields in pipe.execute() if fields]

    def _entries(self, tickets: list[str]) -> list[BoardEntry]:
        with self.client.pipeline(transaction=False) as pipe:
            for ticket_id in tickets:
                pipe.hgetall(self.keys.ticket(ticket_id))
            return [decode_entry(fields) for fields in pipe.execute() if fields]

    def memberships(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """(team -> tickets, level -> tickets) as the sets hold them, without empty ones."""
        keys = self.keys
        teams = sorted(str(t) for t in self.client.smembers(keys.teams))
        levels = sorted((str(v) for v in self.client.smembers(keys.levels)), key=int)
        with self.client.pipeline(transaction=False) as pipe:
            for team in teams:
                pipe.smembers(keys.team(team))
            for level in levels:
                pipe.smembers(keys.level(level))
            sets = pipe.execute()
        by_team = {t: set(s) for t, s in zip(teams, sets[: len(teams)], strict=True) if s}
        by_level = {v: set(s) for v, s in zip(levels, sets[len(teams) :], strict=True) if s}
        return by_team, by_level

    def dump(self) -> dict[str, Any]:
        """The whole board, for tests and debugging: entries, memberships, counters, stream."""
        by_team, by_level = self.memberships()
        return {
            "entries": self.entries(),
            "warnings": self.warnings(),
            "teams": by_team,
            "levels": by_level,
            "due": self.client.zrange(self.keys.due, 0, -1, withscores=True),
            "stats": self.client.hgetall(self.keys.stats),
            "stream": self.client.xlen(self.keys.events),
        }

    def snapshot(self, limit: int = 500, closest: int = 15, recent: int = 25) -> dict[str, Any]:
        """The board page's data: counts, the tickets, the breach rate and the feed."""
        keys = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.teams)
            pipe.smembers(keys.levels)
            pipe.zrevrange(keys.open, 0, limit - 1)
            pipe.zrange(keys.due, 0, closest - 1)
            pipe.zrange(keys.fired, -1, -1, withscores=True)
            pipe.zrange(keys.warned, -1, -1, withscores=True)
            pipe.hgetall(keys.stats)
            pipe.hgetall(keys.sink)
            pipe.zrevrange(keys.feed, 0, recent - 1)
            pipe.zcard(keys.open)
            pipe.zrevrange(keys.warnings, 0, limit - 1)
            pipe.zcard(keys.warnings)
            (teams, levels, listed, soonest, last, last_warned, stats, sink, feed, total,
             warned, warned_total) = pipe.execute()  # fmt: skip
        teams, levels = sorted(teams), sorted(levels, key=int)
        lasts = [int(found[0][1]) for found in (last, last_warned) if found]
        clock = max(lasts) if lasts else None
        hour_ago = f"({clock - HOUR_MS}" if clock is not None else "-inf"
        with self.client.pipeline(transaction=False) as pipe:
            for team in teams:
                pipe.scard(keys.team(team))
            for level in levels:
                pipe.scard(keys.level(level))
            pipe.zcount(keys.fired, hour_ago, "+inf")
            pipe.zcount(keys.breaches, hour_ago, "+inf")
            pipe.zcount(keys.warned, hour_ago, "+inf")
            counts = pipe.execute()
        *sizes, fired_hour, breaches_hour, warned_hour = counts
        by_team = {t: n for t, n in zip(teams, sizes[: len(teams)], strict=True) if n}
        by_level = {v: n for v, n in zip(levels, sizes[len(teams) :], strict=True) if n}
        entries = {e.ticket_id: e for e in self._entries(list(dict.fromkeys(listed + soonest)))}
        return {
            "clock": clock,
            "open": total,
            "by_level": by_level,
            "by_team": dict(sorted(by_team.items(), key=lambda kv: (-kv[1], kv[0]))),
            "tickets": [_entry_json(entries[t]) for t in listed if t in entries],
            "closest": [_entry_json(entries[t]) for t in soonest if t in entries],
            "warnings": {
                "open": warned_total,
                "tickets": [asdict(w) for w in self._warnings(warned)],
            },
            "last_hour": {
                "escalations": fired_hour,
                "breaches": breaches_hour,
                "breach_share": breaches_hour / fired_hour if fired_hour else None,
                "warnings": warned_hour,
            },
            "totals": {k: int(v) for k, v in stats.items()},
            "sink": {k: int(v) if v.lstrip("-").isdigit() else v for k, v in sink.items()},
            "recent": [orjson.loads(member) for member in feed],  # latest event time first
        }


def _entry_json(entry: BoardEntry) -> dict[str, Any]:
    return asdict(entry)
