"""The worker's adapter logic between Kafka messages and the SLA engine, free of clients.

The worker's loop hands each message here and sends back what comes out; this
module decodes and validates input (rejects go to the DLQ), keeps a due-time
index per partition so clock ticks find due tickets without scanning the table,
and encodes outputs. Kept apart from Kafka so it can be unit-tested directly.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Protocol, cast

import orjson

from schemas.board_wire import ticket_board_body
from schemas.codec import AvroCodec, ErrorKind, codecs_for
from schemas.records import (
    DAY_MS,
    Rejected,
    dead_letter,
    decode_ticket_event,
    escalation_to_avro,
    priority_bump_to_avro,
    reminder_to_avro,
)
from streams.runtime.queue_stats import encode_heartbeat, encode_stat
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics
from streams.runtime.worker_metrics import (
    NEW_TICKET,
    PRODUCTION,
    SHADOW,
    ShadowDiff,
    WorkerStats,
    category,
)
from streams.sla.actions import (
    BREACHES,
    Action,
    Escalation,
    PriorityBump,
    Reminder,
    Silenced,
    SlaOutcome,
)
from streams.sla.board import follow
from streams.sla.engine import Engine
from streams.sla.events import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, Status, TicketEvent
from streams.sla.frozen import fast_constructor
from streams.sla.policy import Policy
from streams.sla.queues import QUEUE_STATS, QueueStat, StatKind, queue_name, stat_id
from streams.sla.state import TicketState

TICK_HEADER = "escalator-tick"  # marks an event-time clock tick inside ticket-events
CLOCK_SLEW_MS = 1000  # how much faster than real time the tick clock may catch up a jump
HEARTBEAT_MS = 1000  # at most one queue-stats heartbeat per partition per second of its clock
REBUILD_STEP = 100  # states read between two yields of TicketProcessor.rebuilding (~1 ms)
COMPACT_SLACK = 1024  # superseded due entries tolerated beyond the live ones before compacting
CACHED_STATES = 20_000  # decoded states kept per worker (about 3.5 KB each)


# The shadow policy's ticket states live in the same store under this key prefix; a ticket id
# is text, and one starting with a NUL byte is refused (see TicketProcessor.on_event).
SHADOW_KEYS = b"\x00shadow:"


class Snapshot(Protocol):
    """What a due index is rebuilt from: every stored (ticket key, state) pair."""

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


class StateStore(Snapshot, Protocol):
    """A key-value store of ticket states (one partition's store in the worker, a dict in tests)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Out:
    """One message to send, always to the partition the input came from."""

    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone (a deleted ticket's changelog record)


def _build_out(topic: str, key: bytes, value: bytes | None) -> Out:
    """Out's constructor in the compiled build (streams.sla.frozen: `native`)."""
    o = Out.__new__(Out)
    o.topic = topic  # type: ignore[misc]
    o.key = key  # type: ignore[misc]
    o.value = value  # type: ignore[misc]
    return o


def _build_stat(queue: str, kind: StatKind, at: int, id: str) -> QueueStat:
    """QueueStat's constructor in the compiled build (streams.sla.frozen: `native`)."""
    s = QueueStat.__new__(QueueStat)
    s.queue = queue  # type: ignore[misc]
    s.kind = kind  # type: ignore[misc]
    s.at = at  # type: ignore[misc]
    s.id = id  # type: ignore[misc]
    return s


# The hot path builds an Out per output and a QueueStat per counted thing: frozen records at
# the cost of mutable ones (streams.sla.frozen).
_new_out = fast_constructor(Out, _build_out)
_new_stat = fast_constructor(QueueStat, _build_stat)
_AT_THEN_ID = attrgetter("at", "id")  # the order of a message's queue stats


@dataclass
class Counters:
    """What the processor did, for metrics and logs."""

    events: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    escalations: int = 0
    bumps: int = 0
    reminders: int = 0
    breaches: int = 0
    queue_stats: int = 0
    silenced: dict[str, int] = field(default_factory=dict)  # by reason: before the horizon
    clock_jumps: int = 0
    aborted: int = 0  # transactions aborted in place and read again (the loop's rewinds)


@dataclass
class Savepoint:
    """The processor's per-partition clocks and its counts as a transaction began
    (TicketProcessor.savepoint): an abort puts them back (rewind)."""

    clocks: list[tuple[dict[int, int], dict[int, int]]]  # per lane: watermark, heartbeats
    counters: Counters

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions the processor forgot since (revoked, or assigned anew): a rewind must
        leave them forgotten, not put back the clocks of an earlier ownership."""
        partitions = list(partitions)
        for lane in self.clocks:
            for saved in lane:
                for p in partitions:
                    saved.pop(p, None)

    def resume_clock(self, partition: int, watermark: int) -> None:
        """A partition assigned anew resumed its committed clock (TicketProcessor.resume_clock):
        a rewind goes back to that, not to no clock."""
        for lane_watermark, _ in self.clocks:
            lane_watermark[partition] = watermark


class SteadyClock:
    """The wall-clock worker's clock: the system clock, but never backwards and never more
    than `slew_ms` a reading ahead of the real time elapsed (the monotonic clock), so a jump
    of the system clock is counted and caught up gradually instead of firing a day of
    deadlines at once."""

    def __init__(
        self,
        wall: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        slew_ms: int = CLOCK_SLEW_MS,
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self.slew_ms = slew_ms
        self.last = -1
        self.last_mono = 0.0
        self.jumps = 0
        self._off = 0  # the system clock is ahead (1) or behind (-1): one jump counted each

    def __call__(self) -> int:
        wall = self.wall()
        mono = self.monotonic()
        last = self.last
        if last < 0:
            self.last, self.last_mono = wall, mono
            return wall
        expected = last + int((mono - self.last_mono) * 1000)
        slew = self.slew_ms
        # min(), abs() spelt out: this runs for every event
        now = wall if wall < expected + slew else expected + slew
        off = 0 if -slew <= wall - expected <= slew else 1 if wall > expected else -1
        if off and off != self._off:
            self.jumps += 1
        self._off = off
        if now < last:
            now = last
        self.last, self.last_mono = now, mono
        return now


STATE_FORMAT = 2  # [2, partition, row]; format 1, {"p": partition, "s": dict}, still reads


def encode_state(partition: int, state: TicketState) -> bytes:
    """A changelog and store value: the state's row (half the bytes of its dict form), copied
    to its exact size: orjson 3.12+ returns bytes whose allocation it never trims (about 16 KB
    for a 700-byte state), and the worker keeps tens of thousands of them in memory
    (ijl/orjson#483, home-assistant/core#181245)."""
    return bytes(memoryview(orjson.dumps([STATE_FORMAT, partition, state.to_row()])))


def decode_state(value: bytes) -> tuple[int, TicketState]:
    data = orjson.loads(value)
    if type(data) is list:
        if data[0] != STATE_FORMAT:
            raise ValueError(f"ticket state format {data[0]!r}, this version reads 1 and 2")
        return data[1], TicketState.from_row(data[2])
    return data["p"], TicketState.from_dict(data["s"])


class StateCache:
    """Decoded ticket states, each valid while the store holds the bytes it was saved as.

    Decoding a stored state costs more than the engine's work on most events; a ticket's
    next event or due time usually finds its state here. A changed value (a restore after a
    rebalance, another writer) no longer equals the cached bytes and is decoded afresh. The
    engine mutates states in place, so an entry is taken out while its state is worked on.
    """

    def __init__(self, limit: int = CACHED_STATES) -> None:
        self.limit = limit
        self.entries: dict[bytes, tuple[bytes, TicketState]] = {}

    def take(self, key: bytes, value: bytes) -> TicketState:
        hit = self.entries.pop(key, None)
        if hit is not None and hit[0] == value:
            return hit[1]
        return decode_state(value)[1]

    def save(self, store: StateStore, key: bytes, partition: int, state: TicketState) -> None:
        value = encode_state(partition, state)
        store.put(key, value)
        self.keep(key, value, state)

    def keep(self, key: bytes, value: bytes, state: TicketState) -> None:
        """Cache a state that `value`, already stored, decodes to."""
        entries = self.entries
        entries[key] = (value, state)
        if len(entries) > self.limit:
            del entries[next(iter(entries))]  # the least recently saved

    def clear(self) -> None:
        self.entries.clear()


class KeySpace:
    """A StateStore's keys under a prefix, seen as a StateStore of their own.

    Why the shadow policy's states share production's per-partition store and changelog
    rather than having a second store: each write goes to the same changelog partition in
    the same transaction, so restore, checkpoints and KIP-447 fencing cover both with no
    change, and a shadow state can never be ahead of or behind production's offsets."""

    __slots__ = ("store", "prefix")

    def __init__(self, store: StateStore, prefix: bytes = SHADOW_KEYS) -> None:
        self.store, self.prefix = store, prefix

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(self.prefix + key)

    def put(self, key: bytes, value: bytes) -> None:
        self.store.put(self.prefix + key, value)

    def delete(self, key: bytes) -> None:
        self.store.delete(self.prefix + key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        n, prefix = len(self.prefix), self.prefix
        for key, value in self.store.items():
            if key.startswith(prefix):
                yield key[n:], value


SHADOW_RECORDS = ("Escalation", "PriorityBump", "Reminder")


def decode_shadow(codecs: dict[str, AvroCodec], value: bytes) -> tuple[str, dict[str, object]]:
    """A shadow-escalations record: its Avro type (told by the schema id in its header, as
    the worker writes the current schema of each) and the decoded record."""
    schema_id = int.from_bytes(value[1:5], "big")
    for name in SHADOW_RECORDS:
        codec = codecs[name]
        if codec.schema_id == schema_id:
            return name, codec.decode(value)
    raise ValueError(f"schema id {schema_id} is none of {', '.join(SHADOW_RECORDS)}")


def encode_tick(now_ms: int) -> bytes:
    return str(now_ms).encode()


def is_tick(headers: object) -> bool:
    """Whether a ticket-events message is an event-time tick
    (see streams.tools.replay.send_ticks)."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, dict) else headers
    return any(name == TICK_HEADER for name, _ in cast(Iterable[tuple[object, object]], pairs))


def decode_tick(value: bytes | None) -> int | None:
    try:
        return int(value or b"")
    except ValueError:
        return None


class TicketProcessor:
    """Per-worker processing of ticket events and clock ticks.

    With `shadow` (a candidate policy's Engine), a second processor over it sees every event
    and tick after production, keeps its states in the same store under SHADOW_KEYS (see
    KeySpace), and its escalations, bumps and reminders go to shadow-escalations; its DLQ
    letters and queue stats are dropped (production sends those). `diff` follows which
    tickets only one side escalated (streams.runtime.worker_metrics.ShadowDiff).
    """

    def __init__(
        self,
        engine: Engine,
        topics: Topics,
        codecs: dict[str, AvroCodec],
        max_event_bytes: int,
        event_time: bool = False,
        wall_clock: Callable[[], int] = lambda: int(time.time() * 1000),
        metrics: WorkerStats | None = None,
        max_skew_ms: int = Settings.max_clock_skew_ms,
        max_record_bytes: int = Settings.max_record_bytes,
        shadow: Engine | None = None,
        shadow_metrics: WorkerStats | None = None,
    ) -> None:
        self.engine = engine
        self.topics = topics
        self.codecs = codecs
        # ticket-board records (see _board) when the codecs have TicketBoard (the worker's do)
        self.board_codec = codecs.get("TicketBoard")
        self.board_topic = topics.board
        self.max_event_bytes = max_event_bytes
        self.max_record_bytes = max_record_bytes
        self.event_time = event_time
        # Event time pages nobody by itself: a wall-clock worker refuses events stamped more
        # than the skew ahead of its clock (an event-time one, a day, as replays may run ahead)
        self.max_future_ms = DAY_MS if event_time else max_skew_ms
        self.clock = SteadyClock(wall_clock)
        self.wall_clock = wall_clock
        tracking = engine.policy.tracking
        self.horizon = tracking.backfill_horizon
        self.closed_retention = tracking.closed_retention
        self.solved_retention = tracking.solved_retention
        self.due: dict[int, list[tuple[int, bytes]]] = {}
        # The one live entry per ticket: the heap keeps superseded ones, skipped when popped.
        self.scheduled: dict[int, dict[bytes, int]] = {}
        self.cache = StateCache()
        self.watermark: dict[int, int] = {}
        self.heartbeats: dict[int, int] = {}  # partition -> clock of its last heartbeat
        self.queue_stats = engine.policy.ops_alerts.enabled
        self.counters = Counters()
        self.metrics = metrics  # labelled counts for /metrics; None when metrics are off
        self.shadow: TicketProcessor | None = None
        self.diff: ShadowDiff | None = None
        if shadow is not None:
            self.shadow = TicketProcessor(
                shadow, topics, codecs, max_event_bytes, event_time, wall_clock,
                shadow_metrics, max_skew_ms, max_record_bytes,
            )  # fmt: skip
            self.shadow.queue_stats = False
            self.shadow.board_codec = None  # nobody shows a candidate policy's board
            self.diff = ShadowDiff()
        self.shadow_kept = {topics.escalations, topics.priority_bumps, topics.reminders}
        # Shadow states found with no shadow policy running: deleted (changelog tombstones in
        # the partition's next transaction), so a shadow started later begins from nothing
        # rather than from states that missed the events in between.
        self.orphans: dict[int, list[bytes]] = {}

    def _drop_orphans(self, store: StateStore, partition: int) -> None:
        for key in self.orphans.pop(partition, ()):
            store.delete(key)

    def _with_shadow(self, out: list[Out], partition: int, shadow_out: list[Out]) -> list[Out]:
        """Production's outputs, then the shadow's actions on shadow-escalations."""
        diff = self.diff
        assert diff is not None
        escalations, kept = self.topics.escalations, self.shadow_kept
        for o in out:
            if o.topic == escalations:
                diff.escalated(partition, o.key, PRODUCTION)
        target = self.topics.shadow_escalations
        for o in shadow_out:
            if o.topic in kept:
                if o.topic == escalations:
                    diff.escalated(partition, o.key, SHADOW)
                out.append(_new_out(target, o.key, o.value))
        return out

    # ------------------------------------------------------------------ index

    def rebuild(self, store: Snapshot, partitions: Iterable[int]) -> int:
        """Rebuild the due index of these partitions from their states after a rebalance."""
        return max(self.rebuilding(store, partitions))  # its counts grow; the last is the total

    def rebuilding(
        self, store: Snapshot, partitions: Iterable[int], step: int = REBUILD_STEP
    ) -> Iterator[int]:
        """rebuild() a step at a time: yields the tickets indexed so far every `step` states
        read, and at the end, so the worker can poll its group between steps (a million tickets
        take about 10 s). The index is complete only once the iterator is exhausted."""
        wanted = set(partitions)
        shadow = self.shadow
        lanes = [self] if shadow is None else [self, shadow]
        for lane in lanes:
            lane.cache.clear()
            for p in wanted:
                lane.due[p] = []
                lane.scheduled[p] = {}
            if lane.metrics is not None:
                lane.metrics.reset(wanted)
        count = 0
        skip = len(SHADOW_KEYS)
        for read, (key, value) in enumerate(store.items(), 1):
            lane = self
            if key.startswith(SHADOW_KEYS):
                if shadow is None:
                    p = decode_state(value)[0]
                    if p in wanted:
                        self.orphans.setdefault(p, []).append(key)
                    continue
                lane, key = shadow, key[skip:]
            p, state = decode_state(value)
            if p in wanted:
                lane._schedule(p, key, state)
                if lane.metrics is not None:
                    lane.metrics.add(p, state)
                count += 1
            if read % step == 0:
                yield count
        for lane in lanes:
            for p in wanted:
                heapq.heapify(lane.due[p])
        yield count

    def saved_index(self, partition: int) -> dict[str, object]:
        """The partition's due index as plain data, saved with a store's checkpoint so that a
        restart from it need not read the store (load_index). Superseded heap entries are left
        out, so the heap is saved compacted and already in heap order."""
        lanes = []
        for lane in self._lanes():
            heap = [(at, key) for key, at in lane.scheduled.get(partition, {}).items()]
            heapq.heapify(heap)
            metrics = lane.metrics
            counts = None if metrics is None else (
                metrics.tickets.get(partition, {}), metrics.keys.get(partition, 0))  # fmt: skip
            lanes.append((heap, counts))
        return {"lanes": lanes, "orphans": list(self.orphans.get(partition, ())),
                "fingerprint": self._fingerprint()}  # fmt: skip

    def load_index(self, partition: int, saved: object) -> int | None:
        """Install a saved_index() of the partition; returns the tickets it indexes, or None
        (nothing changed) when it does not fit this processor: rebuild instead."""
        if not self._fits(saved):
            return None
        index = cast(dict[str, Any], saved)
        lanes, orphans = index["lanes"], index["orphans"]
        tickets = 0
        for (heap, counts), lane in zip(lanes, self._lanes(), strict=True):
            lane.due[partition] = heap
            lane.scheduled[partition] = {key: at for at, key in heap}
            tickets += len(heap)
            if lane.metrics is not None:
                lane.metrics.tickets[partition], lane.metrics.keys[partition] = counts
        self.orphans.pop(partition, None)
        if orphans:
            self.orphans[partition] = orphans
        return tickets

    def _fits(self, saved: object) -> bool:
        """Whether a saved index (read from disk) has the shape and setup of this processor.
        Plain checks, not asserts: they must hold under `python -O` too."""
        try:
            if not isinstance(saved, dict) or saved["fingerprint"] != self._fingerprint():
                return False
            lanes, orphans = saved["lanes"], saved["orphans"]
            if len(lanes) != len(self._lanes()) or not isinstance(orphans, list):
                return False
            return all(
                isinstance(heap, list) and (counts is None) == (lane.metrics is None)
                for (heap, counts), lane in zip(lanes, self._lanes(), strict=True)
            )
        except (KeyError, TypeError, ValueError):
            return False

    def reindex(self, partition: int, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """A changelog record read after a checkpoint whose index was loaded: update the index
        as the rebuild would have indexed the new value rather than the old one."""
        lane = self
        if key.startswith(SHADOW_KEYS):
            if self.shadow is None:
                if new is not None and key not in self.orphans.get(partition, ()):
                    self.orphans.setdefault(partition, []).append(key)
                return
            lane, key = self.shadow, key[len(SHADOW_KEYS) :]
        before = None if old is None else decode_state(old)
        after = None if new is None else decode_state(new)
        if lane.metrics is not None:
            if before is not None and before[0] == partition:
                lane.metrics.removed(partition, before[1])
            if after is not None and after[0] == partition:
                lane.metrics.add(partition, after[1])
        if after is not None and after[0] == partition:
            lane._schedule(partition, key, after[1])
        else:
            lane.scheduled.setdefault(partition, {}).pop(key, None)

    def savepoint(self) -> Savepoint:
        """What the processor keeps outside the stores, as a transaction begins."""
        return Savepoint(
            [(dict(lane.watermark), dict(lane.heartbeats)) for lane in self._lanes()],
            replace(self.counters, rejected=dict(self.counters.rejected),
                    silenced=dict(self.counters.silenced)),
        )  # fmt: skip

    def rewind(self, point: Savepoint, partition: int, undone: dict[bytes, bytes | None],
               kept: Callable[[bytes], bytes | None]) -> None:  # fmt: skip
        """The transaction begun at `point` aborted: the partition's store took back
        `undone` (key -> the value the transaction wrote; `kept(key)`: the value now), so
        its index, clocks and counts go back to what the committed states say."""
        for key, wrote in undone.items():
            self.reindex(partition, key, wrote, kept(key))
        for lane, (watermark, heartbeats) in zip(self._lanes(), point.clocks, strict=True):
            for clocks, saved in ((lane.watermark, watermark), (lane.heartbeats, heartbeats)):
                if partition in saved:
                    clocks[partition] = saved[partition]
                else:
                    clocks.pop(partition, None)
        self.counters = replace(point.counters, rejected=dict(point.counters.rejected),
                                silenced=dict(point.counters.silenced))  # fmt: skip

    def clock_of(self, partition: int) -> int | None:
        """The partition's event-time clock, to commit with its offset (streams.runtime.
        partition_time); None on the wall clock, or before it read anything."""
        return self.watermark.get(partition) if self.event_time else None

    def resume_clock(self, partition: int, watermark: int) -> None:
        """Go on from the clock committed with the offset a partition resumes from, in every
        lane (the shadow reads the same messages, so it had the same clock)."""
        if self.event_time:
            for lane in self._lanes():
                lane.watermark[partition] = watermark

    def _lanes(self) -> list[TicketProcessor]:
        return [self] if self.shadow is None else [self, self.shadow]

    def _fingerprint(self) -> list[object]:
        """What a rebuilt index depends on besides the stored states."""
        return [(lane.closed_retention, lane.solved_retention, lane.metrics is not None)
                for lane in self._lanes()]  # fmt: skip

    def forget(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        if self.shadow is not None and self.diff is not None:
            self.shadow.forget(partitions)
            self.diff.forget(partitions)
        for p in partitions:
            self.orphans.pop(p, None)
            self.due.pop(p, None)
            self.scheduled.pop(p, None)
            self.watermark.pop(p, None)
            self.heartbeats.pop(p, None)
        if self.metrics is not None:
            self.metrics.forget(partitions)

    def _schedule(self, partition: int, key: bytes, state: TicketState) -> None:
        """Index the ticket's next due instant, or its removal once closed long enough."""
        at = state.next_due
        if at is None:
            at = self._leaves_at(state)
        scheduled = self.scheduled.get(partition)
        if scheduled is None:
            scheduled = self.scheduled[partition] = {}
        if at is None:
            scheduled.pop(key, None)
        elif scheduled.get(key) != at:
            scheduled[key] = at
            heap = self.due.get(partition)
            if heap is None:
                heap = self.due[partition] = []
            heapq.heappush(heap, (at, key))
            if len(heap) > 2 * len(scheduled) + COMPACT_SLACK:
                self._compact(partition)

    def _leaves_at(self, state: TicketState) -> int | None:
        """When a ticket with nothing due leaves the store: closed (or deleted) tickets after
        the closed retention, solved ones that never get closed after the solved one."""
        if state.closed:
            return state.clock_at + self.closed_retention
        if state.status is Status.SOLVED:
            return state.status_since + self.solved_retention
        return None

    def _compact(self, partition: int) -> None:
        """Drop superseded heap entries. They leave the heap only when their instant passes,
        weeks ahead for some (an escalation open for 30 days), so a long-running worker's
        heap would otherwise grow with every due-time change."""
        heap = self.due[partition]  # in place: _fire may be iterating over it
        heap[:] = [(at, key) for key, at in self.scheduled[partition].items()]
        heapq.heapify(heap)

    # ------------------------------------------------------------------ input

    def on_event(
        self,
        store: StateStore,
        raw: bytes | None,
        key: bytes | None,
        partition: int,
        offset: int,
        timestamp: int | None,
    ) -> list[Out]:
        if self.orphans:
            self._drop_orphans(store, partition)
        now = self.clock()
        try:
            event = decode_ticket_event(
                raw, now, self.codecs["TicketEvent"], self.max_event_bytes, self.max_future_ms
            )
            if event.ticket_id.startswith("\0"):
                reason = "a ticket id starting with NUL (the shadow policy's key space)"
                raise Rejected(ErrorKind.INVALID_FIELD, reason, "ticket_id")
        except Rejected as exc:
            return [self._reject(raw, key, partition, offset, timestamp, exc, now)]
        out = self._on_event(store, event, raw, key, partition, offset, timestamp, now)
        shadow = self.shadow
        if shadow is None:
            return out
        # The same decoded event (the engine never changes one); the shadow's own clock.
        shadow_out = shadow._on_event(
            KeySpace(store), event, raw, key, partition, offset, timestamp, shadow.clock()
        )
        return self._with_shadow(out, partition, shadow_out)

    def _on_event(
        self,
        store: StateStore,
        event: TicketEvent,
        raw: bytes | None,
        key: bytes | None,
        partition: int,
        offset: int,
        timestamp: int | None,
        now: int,
    ) -> list[Out]:
        ticket_key = event.ticket_id.encode()
        self.counters.events += 1
        out: list[Out] = []
        stats: list[QueueStat] = []
        t = event.occurred_at
        clock = now  # the partition's clock before the event (_clock)
        if self.event_time:
            clock = mark = self.watermark.get(partition, 0)
            if t > mark:
                self.watermark[partition] = mark = t
                heap = self.due.get(partition)
                if heap and heap[0][0] <= t:  # something is due (_fire's own first test)
                    out.extend(self._fire(store, partition, t, now, stats))
            engine_now, quiet = -1, mark - self.horizon
        else:
            engine_now, quiet = now, now - self.horizon
        old = store.get(ticket_key)
        state = None
        if old is not None:
            state = self.cache.take(ticket_key, old)
            if event.event_id in state.seen:
                self.counters.duplicates += 1
                self.cache.keep(ticket_key, old, state)
                if stats:
                    out.extend(self._stats(stats, clock))
                return out
        metrics = self.metrics
        view = NEW_TICKET if metrics is None else metrics.view(state)
        state, actions = self.engine.apply(state, event, engine_now, quiet)
        records = self._records(actions, now) if actions else []
        board = self._board(state, event, actions, ticket_key)
        if board is not None:
            records.append(board)
        value = encode_state(partition, state)
        largest = len(value)
        for o in records:
            if o.value is not None and len(o.value) > largest:
                largest = len(o.value)
        if largest > self.max_record_bytes:
            # the event's effects are dropped with it (the store keeps the state before it),
            # and the event waits on the DLQ: one ticket never stops the partition
            reason = (
                f"ticket {event.ticket_id[:64]!r}: a record of {largest:,} bytes would exceed the"
                f" {self.max_record_bytes:,}-byte record limit"
            )
            exc = Rejected(ErrorKind.OVERSIZED, reason)
            return out + [self._reject(raw, key, partition, offset, timestamp, exc, now)]
        store.put(ticket_key, value)
        self.cache.keep(ticket_key, value, state)
        if metrics is not None:
            metrics.applied(partition, view, state, old is None, event.type, now - t)
        self._schedule(partition, ticket_key, state)
        kind = QUEUE_STATS.get(event.type)
        if kind is not None or actions:
            queue = queue_name(state.channel, state.category)
            if kind is not None:
                stats.append(_new_stat(queue, kind, t, stat_id(kind, event.event_id)))
            if actions:
                self._count(actions, now, queue, stats)
        if records:  # the actions' records, and the board's even without actions
            out.extend(records)
        if self.event_time and state.next_due is not None and state.next_due <= mark:
            out.extend(self._fire(store, partition, mark, now, stats, quiet))  # a late event
        if stats:
            out.extend(self._stats(stats, clock))
        return out

    def _reject(
        self,
        raw: bytes | None,
        key: bytes | None,
        partition: int,
        offset: int,
        timestamp: int | None,
        exc: Rejected,
        now: int,
    ) -> Out:
        kind = exc.kind.value
        self.counters.rejected[kind] = self.counters.rejected.get(kind, 0) + 1
        letter = dead_letter(
            raw, key, self.topics.ticket_events, partition, offset, timestamp,
            exc.kind, exc.reason, exc.field, now,
        )  # fmt: skip
        return Out(self.topics.dlq, key or b"", self.codecs["DeadLetter"].encode(letter))

    def tick_clock(self) -> int:
        """The wall-clock tick's instant (see SteadyClock)."""
        return self.clock()

    def on_tick_message(
        self,
        store: StateStore,
        raw: bytes | None,
        key: bytes | None,
        partition: int,
        offset: int,
        timestamp: int | None,
    ) -> list[Out]:
        """A tick message on ticket-events: honoured by an event-time worker, within the
        valid time range; anything else goes to the DLQ."""
        tick = decode_tick(raw)
        reason = None
        if not self.event_time:
            reason = "a tick message, but this worker runs on the wall clock (ticks: --event-time)"
        elif tick is None:
            reason = "a tick message whose value is not epoch milliseconds"
        elif not MIN_TIMESTAMP_MS <= tick < MAX_TIMESTAMP_MS:
            reason = f"a tick at {tick}, outside 2000-01-01..2199-12-31"
        if reason is not None:
            exc = Rejected(ErrorKind.TIMESTAMP_OUT_OF_RANGE, reason, "tick")
            return [self._reject(raw, key, partition, offset, timestamp, exc, self.clock())]
        return self.on_tick(store, partition, tick)

    def on_tick(self, store: StateStore, partition: int, tick: int | None) -> list[Out]:
        """A clock tick for one partition: fire what is due up to the tick's instant."""
        if tick is None:
            return []
        if self.orphans:
            self._drop_orphans(store, partition)
        out = self._on_tick(store, partition, tick)
        shadow = self.shadow
        if shadow is None:
            return out
        return self._with_shadow(out, partition, shadow._on_tick(KeySpace(store), partition, tick))

    def _on_tick(self, store: StateStore, partition: int, tick: int) -> list[Out]:
        now = self.clock()
        before = self._clock(partition, now)
        if self.event_time:
            tick = max(tick, self.watermark.get(partition, 0))
            self.watermark[partition] = tick
        elif self.metrics is not None:
            self.metrics.tick(tick, now)
        stats: list[QueueStat] = []
        out = self._fire(store, partition, tick, now, stats) + self._stats(stats, before)
        clock = self._clock(partition, now)  # after the tick, for the heartbeat behind the stats
        last = self.heartbeats.get(partition)
        if self.queue_stats and (last is None or clock >= last + HEARTBEAT_MS):
            self.heartbeats[partition] = clock
            out.append(Out(self.topics.queue_stats, b"", encode_heartbeat(clock)))
        return out

    def _fire(
        self,
        store: StateStore,
        partition: int,
        upto: int,
        now: int,
        stats: list[QueueStat],
        quiet: int = -1,
    ) -> list[Out]:
        """Advance every ticket due up to `upto`: in event time each at its due instant
        (nothing before the previous clock is due but behind a late event, then `quiet`),
        on the wall clock as of `upto` with the backfill horizon behind it."""
        event_time = self.event_time
        if not event_time:
            quiet = upto - self.horizon
        heap = self.due.get(partition)
        scheduled = self.scheduled.get(partition, {})
        out: list[Out] = []
        metrics = self.metrics
        while heap and heap[0][0] <= upto:
            due, key = heapq.heappop(heap)
            if scheduled.get(key) != due:
                continue  # superseded by a later entry
            del scheduled[key]
            value = store.get(key)
            if value is None:
                continue
            state = self.cache.take(key, value)
            leaves = None if state.next_due is not None else self._leaves_at(state)
            if leaves is not None and leaves <= upto:
                store.delete(key)
                if self.board_codec is not None and state.board and state.board.published:
                    out.append(Out(self.topics.board, key, None))
                if metrics is not None:
                    metrics.removed(partition, state)
                if self.diff is not None:
                    self.diff.left(partition, key)
                continue
            if state.next_due != due:  # not due after all: keep it, indexed as it is
                self.cache.keep(key, value, state)
                self._schedule(partition, key, state)
                continue
            old = None if metrics is None else category(state)
            if event_time:
                state, actions = self.engine.advance(state, due, quiet, True)
            else:
                state, actions = self.engine.advance(state, upto, quiet)
            board = self._board(state, None, actions, key)
            self.cache.save(store, key, partition, state)
            if metrics is not None:
                metrics.moved(partition, old, category(state))
            self._schedule(partition, key, state)
            if actions:
                queue = queue_name(state.channel, state.category)
                out.extend(self._encode(actions, now, queue, stats))
            if board is not None:
                out.append(board)
        return out

    # ------------------------------------------------------------------ output

    def _clock(self, partition: int, now: int) -> int:
        """The partition's clock: its event-time watermark, or the wall clock."""
        return self.watermark.get(partition, 0) if self.event_time else now

    def _stats(self, stats: list[QueueStat], wm: int) -> list[Out]:
        """queue-stats messages (see streams.runtime.queue_stats) of one input message, in
        event-time
        order. `wm` is the partition's clock before that message: in event time every stat
        of the message is at or after it (what fires was due after it, events are in order),
        so the alerts process never takes a stat of this message as late."""
        if not self.queue_stats or not stats:
            return []
        self.counters.queue_stats += len(stats)
        if len(stats) > 1:
            stats.sort(key=_AT_THEN_ID)
        topic = self.topics.queue_stats
        return [_new_out(topic, s.queue.encode(), encode_stat(s, wm)) for s in stats]

    def _encode(
        self, actions: list[Action], now: int, queue: str, stats: list[QueueStat]
    ) -> list[Out]:
        """Encode and count a ticket's actions (see _records and _count)."""
        out = self._records(actions, now)
        self._count(actions, now, queue, stats)
        return out

    def _records(self, actions: list[Action], now: int) -> list[Out]:
        """The output messages of a ticket's actions."""
        out: list[Out] = []
        for action in actions:
            if isinstance(action, Escalation):
                record = escalation_to_avro(action, now)
                out.append(_new_out(self.topics.escalations, action.ticket_id.encode(),
                                    self.codecs["Escalation"].encode(record)))  # fmt: skip
            elif isinstance(action, PriorityBump):
                record = priority_bump_to_avro(action, now)
                out.append(_new_out(self.topics.priority_bumps, action.ticket_id.encode(),
                                    self.codecs["PriorityBump"].encode(record)))  # fmt: skip
            elif isinstance(action, Reminder):
                record = reminder_to_avro(action, now)
                out.append(_new_out(self.topics.reminders, action.ticket_id.encode(),
                                    self.codecs["Reminder"].encode(record)))  # fmt: skip
        return out

    def _board(
        self, state: TicketState, event: TicketEvent | None, actions: list[Action], key: bytes
    ) -> Out | None:
        """The ticket-board record of a ticket the engine just worked on, if what the board
        shows of it changed: the core decides (streams.sla.board.follow), from the inputs
        it keeps in the ticket's state."""
        codec = self.board_codec
        if codec is None:
            return None
        state.board, record = follow(
            state.board, state.ticket_id, event, actions, self.engine.policy
        )
        if record is None:
            return None
        return _new_out(self.board_topic, key, codec.frame(ticket_board_body(record)))

    def _count(self, actions: list[Action], now: int, queue: str, stats: list[QueueStat]) -> None:
        """Count a ticket's actions; its SLA breach escalations also go into `stats`."""
        if self.metrics is not None and actions:
            self.metrics.actions(actions, now)
        counters = self.counters
        for action in actions:
            if isinstance(action, Escalation):
                counters.escalations += 1
                if action.reason in BREACHES:
                    breach = stat_id(StatKind.BREACHED, action.escalation_id)
                    stats.append(_new_stat(queue, StatKind.BREACHED, action.due_at, breach))
            elif isinstance(action, PriorityBump):
                counters.bumps += 1
            elif isinstance(action, Reminder):
                counters.reminders += 1
            elif isinstance(action, SlaOutcome) and action.breached:
                counters.breaches += 1
            elif isinstance(action, Silenced):
                silenced = counters.silenced
                silenced[action.reason.value] = silenced.get(action.reason.value, 0) + 1


CODECS = ("TicketEvent", "Escalation", "PriorityBump", "Reminder", "DeadLetter", "TicketBoard")


def build_processor(
    settings: Settings,
    policy: Policy,
    topics: Topics,
    event_time: bool,
    shadow: Policy | None = None,
) -> TicketProcessor:
    """The processor every runtime drives (the loop, streams.runtime.worker, and
    streams.runtime.faust_runtime), from the settings; the composition root (streams.cli)
    makes it and gives it to the runtime. `shadow`: a candidate policy run beside
    production (`--shadow-policy`)."""
    codecs = codecs_for(CODECS, settings, topics)
    metrics = shadow_metrics = None
    if settings.metrics_enabled:
        metrics = WorkerStats((s.name for s in policy.sla_policies), live=not event_time)
        if shadow is not None:
            shadow_metrics = WorkerStats((s.name for s in shadow.sla_policies), live=False)
    return TicketProcessor(
        Engine(policy), topics, codecs, settings.max_event_bytes, event_time, metrics=metrics,
        max_skew_ms=settings.max_clock_skew_ms, max_record_bytes=settings.max_record_bytes,
        shadow=None if shadow is None else Engine(shadow), shadow_metrics=shadow_metrics,
    )  # fmt: skip
