"""The Avro binary body of a TicketBoard record (schemas/TicketBoard.avsc), written by hand.

The worker writes one per escalation, warning or close (about a third of its events), and
fastavro's generic writer spent 15 us on each, matching every field and union branch against
the schema; this writes the fixed layout straight from the BoardRecord in a third of that.
`AvroCodec.frame` adds the wire header; tests/schemas/test_board_wire.py holds it to
fastavro's bytes for the same record, so a change to the schema that this misses fails there.
"""

from __future__ import annotations

from typing import Final

from streams.sla.board import BoardEntry, BoardRecord, Fired, WarningEntry

_SMALL: Final = [bytes([(n << 1) if n >= 0 else ((-n << 1) - 1)]) for n in range(-64, 64)]
_NULL: Final = b"\x00"  # union branch 0 (null); also an empty array's end
_SOME: Final = b"\x02"  # union branch 1
_FALSE, _TRUE = b"\x00", b"\x01"
# Encoded once: the few strings from the policy (kinds, targets, reasons, rules, priorities),
# and recent numbers (a ticket's escalation instants recur in its next records, as its entry
# or warning; levels and counts in every record)
_SEEN: dict[str | int, bytes] = {}
_SEEN_MAX: Final = 8192


def _long(n: int) -> bytes:
    """An Avro int or long: zigzag, then a little-endian base-128 varint."""
    found = _SEEN.get(n)
    return _keep(n, _varint(n)) if found is None else found


def _word(s: str) -> bytes:
    """A string that recurs across records."""
    found = _SEEN.get(s)
    return _keep(s, _str(s)) if found is None else found


def _keep(key: str | int, encoded: bytes) -> bytes:
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = encoded
    return encoded


def _varint(n: int) -> bytes:
    if -64 <= n < 64:
        return _SMALL[n + 64]
    n = (n << 1) ^ (n >> 63)
    if n >> 35 and not n >> 42:  # an epoch-ms timestamp of these decades: six bytes
        return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14 & 127 | 128,
                      n >> 21 & 127 | 128, n >> 28 & 127 | 128, n >> 35))  # fmt: skip
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _str(s: str) -> bytes:
    data = s.encode()
    n = len(data)
    return (_SMALL[n + 64] if n < 64 else _varint(n)) + data


def _entry(e: BoardEntry) -> bytes:
    return b"".join((
        _SOME, _str(e.escalation_id), _word(e.kind), _long(e.level), _word(e.target),
        _word(e.reason), _word(e.rule), _long(e.due_at), _long(e.fired_at),
        _long(e.open_escalations),
        _NULL if e.priority is None else _SOME + _word(e.priority),
        _NULL if e.climbs_at is None else _SOME + _long(e.climbs_at),
    ))  # fmt: skip


def _warning(w: WarningEntry) -> bytes:
    return b"".join((
        _SOME, _str(w.escalation_id), _word(w.target), _word(w.rule), _long(w.due_at),
        _long(w.fired_at), _long(w.open_warnings),
    ))  # fmt: skip


def _fired(f: Fired) -> bytes:
    return b"".join((
        _str(f.escalation_id), _word(f.kind), _long(f.level), _long(f.from_level),
        _word(f.target), _word(f.reason), _word(f.rule), _long(f.due_at), _long(f.fired_at),
    ))  # fmt: skip


def ticket_board_body(record: BoardRecord) -> bytes:
    """The Avro binary encoding of `record` under TicketBoard.avsc: the same bytes as
    fastavro's of schemas.records.ticket_board_to_avro(record)."""
    view = record.view
    parts = [
        _str(view.ticket_id),
        _TRUE if view.resolved else _FALSE,
        _NULL if view.entry is None else _entry(view.entry),
        _NULL if view.warning is None else _warning(view.warning),
    ]
    if record.fired:
        parts.append(_long(len(record.fired)))
        parts.extend(_fired(f) for f in record.fired)
    parts.append(_NULL)
    if record.bumps:
        parts.append(_long(len(record.bumps)))
        for b in record.bumps:
            parts += (_str(b.escalation_id), _word(b.old_priority), _word(b.new_priority),
                      _word(b.reason), _long(b.fired_at))  # fmt: skip
    parts.append(_NULL)
    left = record.left
    parts.append(_NULL if left is None else _SOME + _str(left.escalation_id) + _long(left.at))
    return b"".join(parts)
