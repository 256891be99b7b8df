"""The live escalation board in Redis: its key layout, its idempotent writes and its reads.

What is on the board is decided by the pure core (streams.sla.board): this module only keeps
each ticket's inputs in Redis and mirrors the resulting entry into readable structures.
Key names start with a prefix (ESCALATOR_BOARD_PREFIX, default "escalator:board:", plus the
run's topic prefix, so tests and demos do not collide). For Redis Cluster, put a hash tag in
the prefix (e.g. "escalator:{board}:") so a batch's transaction stays in one slot.

Keys (after the prefix):

- `in:<ticket>` (hash): the ticket's inputs: `e:<escalation_id>` (JSON), `b:<escalation_id>`
  (bumped priority), `closed`, `open`, `answered` (event-time ms); it expires `retention`
  after the ticket leaves the board (a replay older than that would count again).
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
- `events` (capped stream): `escalation`, `warning`, `priority_bump` and `resolved` entries
  for agent desktops, in the order the sink read them.
- `feed` (sorted set, capped like the stream): the same entries as JSON scored by their event
  time (`at`: fired_at, or the closing event's time), so "latest events" is in time order
  whatever order the sink read its partitions in.
- `fired`, `breaches`, `warned` (sorted sets): escalation ids by fired_at (escalations, SLA
  breaches, SLA warnings) over the last 2 hours of the board clock (the latest fired_at), for
  the breach rate.
- `stats` (hash): `escalations`, `warnings`, `bumps`, `resolved`, each counted once per id.
- `sink` (hash): the sink's heartbeat (updated_at, lag, counts).

Writes are idempotent: a batch reads the inputs of the tickets it touches under WATCH, merges
the new records (an id already there is a duplicate and changes nothing), recomputes the entry
and writes everything in one MULTI/EXEC, which fails and is redone if a watched ticket changed
in between. Stream entries and counters are written only for ids that were new in that
transaction, so a replay or a restart never adds them twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis

from streams.runtime.settings import Settings
from streams.sla.actions import BREACHES
from streams.sla.board import BoardEntry, Fired, Lifecycle, TicketInputs, WarningEntry
from streams.sla.policy import Policy

HOUR_MS = 3_600_000
RATE_WINDOW_MS = 2 * HOUR_MS  # fired/breaches keep this much board-clock history
DEFAULT_RETENTION_S = 8 * 86_400  # longer than Kafka's default 7-day topic retention
MAX_WATCH_RETRIES = 100
_LIFE_FIELDS = ("closed", "open", "answered")


@dataclass(frozen=True)
class BoardKeys:
    """Every Redis key of one board."""

    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings, run: str = "") -> BoardKeys:
        return cls(f"{settings.connectors.board_prefix}{run}")

    def inputs(self, ticket_id: str) -> str:
        return f"{self.prefix}in:{ticket_id}"

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
    def sink(self) -> str:
        return f"{self.prefix}sink"


@dataclass(frozen=True)
class BumpRecord:
    """The part of a PriorityBump record the board keeps."""

    ticket_id: str
    escalation_id: str
    old_priority: str
    new_priority: str
    reason: str
    fired_at: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BumpRecord:
        return cls(
            record["ticket_id"], record["escalation_id"], str(record["old_priority"]),
            str(record["new_priority"]), str(record["reason"]), int(record["fired_at"]),
        )  # fmt: skip


@dataclass
class Batch:
    """Records read together; applied in one transaction."""

    escalations: list[Fired] = field(default_factory=list)
    bumps: list[BumpRecord] = field(default_factory=list)
    lifecycles: dict[str, Lifecycle] = field(default_factory=dict)

    def tickets(self) -> list[str]:
        found = {f.ticket_id for f in self.escalations} | {b.ticket_id for b in self.bumps}
        return sorted(found | set(self.lifecycles))

    def __bool__(self) -> bool:
        return bool(self.escalations or self.bumps or self.lifecycles)


@dataclass
class Applied:
    """What a batch changed (duplicates changed nothing)."""

    escalations: int = 0
    escalation_duplicates: int = 0
    bumps: int = 0
    bump_duplicates: int = 0
    lifecycles: int = 0
    added: int = 0  # tickets that came onto the board
    removed: int = 0  # tickets that left it
    retries: int = 0  # transactions redone because a watched ticket changed


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


def decode_inputs(ticket_id: str, fields: Mapping[str, str]) -> TicketInputs:
    inputs = TicketInputs(ticket_id)
    for name, value in fields.items():
        if name.startswith("e:"):
            inputs.escalations[name[2:]] = Fired(**orjson.loads(value))
        elif name.startswith("b:"):
            inputs.bumps[name[2:]] = value
    life = [int(fields[f]) if f in fields else None for f in _LIFE_FIELDS]
    inputs.life = Lifecycle(*life)
    return inputs


def _fired_json(fired: Fired) -> bytes:
    return orjson.dumps(asdict(fired))


class BoardWriter:
    """Applies batches to the board; `client` must decode responses (decode_responses=True)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: BoardKeys,
        policy: Policy,
        stream_maxlen: int = 10_000,
        retention_s: int = DEFAULT_RETENTION_S,
    ) -> None:
        self.client = client
        self.keys = keys
        self.policy = policy
        self.stream_maxlen = stream_maxlen
        self.retention_s = retention_s

    def apply(self, batch: Batch) -> Applied:
        """Write a batch in one transaction; raises redis errors (nothing written then)."""
        tickets = batch.tickets()
        if not tickets:
            return Applied()
        by_ticket_esc: dict[str, list[Fired]] = {}
        for fired in batch.escalations:
            by_ticket_esc.setdefault(fired.ticket_id, []).append(fired)
        by_ticket_bump: dict[str, list[BumpRecord]] = {}
        for bump in batch.bumps:
            by_ticket_bump.setdefault(bump.ticket_id, []).append(bump)
        keys = self.keys
        watched = [k for t in tickets for k in (keys.inputs(t), keys.ticket(t), keys.warning(t))]
        retries = 0
        while True:
            with self.client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(*watched)  # type: ignore[no-untyped-call]
                    # Reads go through another connection in one round trip; the WATCH above
                    # still catches any change made after it, by anyone.
                    reads = self.client.pipeline(transaction=False)
                    for ticket_id in tickets:
                        reads.hgetall(keys.inputs(ticket_id))
                        reads.hgetall(keys.ticket(ticket_id))
                        reads.hgetall(keys.warning(ticket_id))
                    reads.zrange(keys.fired, -1, -1, withscores=True)
                    reads.zrange(keys.warned, -1, -1, withscores=True)
                    raw = reads.execute()
                    tx.multi()
                    applied = Applied(retries=retries)
                    clock = max([0] + [int(last[0][1]) for last in raw[-2:] if last])
                    feed: dict[str, int] = {}
                    for i, ticket_id in enumerate(tickets):
                        clock = max(clock, self._plan(
                            tx, ticket_id, raw[3 * i], raw[3 * i + 1], raw[3 * i + 2],
                            by_ticket_esc.get(ticket_id, ()), by_ticket_bump.get(ticket_id, ()),
                            batch.lifecycles.get(ticket_id), applied, feed,
                        ))  # fmt: skip
                    if applied.escalations:
                        horizon = f"({clock - RATE_WINDOW_MS}"
                        for key in (keys.fired, keys.breaches, keys.warned):
                            tx.zremrangebyscore(key, "-inf", horizon)
                    if feed:
                        tx.zadd(keys.feed, feed)
                        tx.zremrangebyrank(keys.feed, 0, -self.stream_maxlen - 1)
                    tx.execute()
                    return applied
                except redis.WatchError:
                    retries += 1
                    if retries >= MAX_WATCH_RETRIES:
                        raise

    def _plan(
        self,
        tx: Any,
        ticket_id: str,
        stored: Mapping[str, str],
        shown: Mapping[str, str],
        warned: Mapping[str, str],
        escalations: Iterable[Fired],
        bumps: Iterable[BumpRecord],
        life: Lifecycle | None,
        applied: Applied,
        feed: dict[str, int],
    ) -> int:
        """Queue one ticket's writes (feed entries go to `feed`, member -> event time);
        returns the latest fired_at it added (0 if none)."""
        keys = self.keys
        inputs = decode_inputs(ticket_id, stored)
        updates: dict[str, str | bytes] = {}
        clock = 0
        for fired in escalations:
            if not inputs.add_escalation(fired):
                applied.escalation_duplicates += 1
                continue
            applied.escalations += 1
            updates[f"e:{fired.escalation_id}"] = _fired_json(fired)
            clock = max(clock, fired.fired_at)
            if fired.warning:
                tx.zadd(keys.warned, {fired.escalation_id: fired.fired_at})
                tx.hincrby(keys.stats, "warnings", 1)
            else:
                tx.zadd(keys.fired, {fired.escalation_id: fired.fired_at})
                tx.hincrby(keys.stats, "escalations", 1)
            if fired.reason in BREACHES:
                tx.zadd(keys.breaches, {fired.escalation_id: fired.fired_at})
            self._event(tx, feed, fired.fired_at, {
                "type": "warning" if fired.warning else "escalation", "ticket_id": ticket_id,
                "escalation_id": fired.escalation_id, "kind": fired.kind,
                "level": fired.level, "from_level": fired.from_level, "target": fired.target,
                "reason": fired.reason, "rule": fired.rule, "due_at": fired.due_at,
                "fired_at": fired.fired_at,
            })  # fmt: skip
        for bump in bumps:
            if not inputs.add_bump(bump.escalation_id, bump.new_priority):
                applied.bump_duplicates += 1
                continue
            applied.bumps += 1
            updates[f"b:{bump.escalation_id}"] = bump.new_priority
            tx.hincrby(keys.stats, "bumps", 1)
            self._event(tx, feed, bump.fired_at, {
                "type": "priority_bump", "ticket_id": ticket_id,
                "escalation_id": bump.escalation_id, "old_priority": bump.old_priority,
                "new_priority": bump.new_priority, "reason": bump.reason,
                "fired_at": bump.fired_at,
            })  # fmt: skip
        if life is not None and inputs.life.merge(life):
            applied.lifecycles += 1
            merged = inputs.life
            values = (merged.closed_at, merged.open_at, merged.answered_at)
            updates.update({f: str(v) for f, v in zip(_LIFE_FIELDS, values, strict=True)
                            if v is not None})  # fmt: skip
        if not updates:
            return clock
        inputs_key = keys.inputs(ticket_id)
        tx.hset(inputs_key, mapping=updates)
        entry = inputs.entry(self.policy)
        fields = encode_entry(entry) if entry is not None else {}
        if fields != dict(shown):
            self._show(tx, ticket_id, shown, entry, fields, applied, inputs.life, feed)
        warning = inputs.warning()
        warning_fields = encode_entry(warning) if warning is not None else {}
        if warning_fields != dict(warned):
            tx.delete(keys.warning(ticket_id))
            if warning is None:
                tx.zrem(keys.warnings, ticket_id)
            else:
                tx.hset(keys.warning(ticket_id), mapping=warning_fields)
                tx.zadd(keys.warnings, {ticket_id: warning.due_at})
        if entry is None and warning is None:
            tx.expire(inputs_key, self.retention_s)
        else:
            tx.persist(inputs_key)
        return clock

    def _show(
        self,
        tx: Any,
        ticket_id: str,
        shown: Mapping[str, str],
        entry: BoardEntry | None,
        fields: Mapping[str, str],
        applied: Applied,
        life: Lifecycle,
        feed: dict[str, int],
    ) -> None:
        """Queue the writes that move a ticket's board entry from `shown` to `entry`."""
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
            tx.hincrby(keys.stats, "resolved", 1)
            at = life.closed_at or 0  # left the board: closed (the only way out once on it)
            fields_out = {"type": "resolved", "ticket_id": ticket_id,
                          "escalation_id": shown.get("escalation_id", "")}  # fmt: skip
            self._event(tx, feed, at, fields_out)
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

    def _event(self, tx: Any, feed: dict[str, int], at: int, fields: dict[str, Any]) -> None:
        """Queue an entry on the stream (read order) and for the feed (event-time order)."""
        tx.xadd(self.keys.events, fields, maxlen=self.stream_maxlen, approximate=True)
        feed[orjson.dumps({**fields, "at": at}, option=orjson.OPT_SORT_KEYS).decode()] = at

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
