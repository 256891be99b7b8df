"""The Avro binary body of a TicketBoard record (schemas/TicketBoard.avsc), written by hand.

The worker writes one per escalation, warning or close (about a third of its events), and
fastavro's generic writer spent 15 us on each, matching every field and union branch against
the schema; this writes the fixed layout straight from the BoardRecord in a third of that.
`AvroCodec.frame` adds the wire header; tests/schemas/test_board_wire.py holds it to
fastavro's bytes for the same record, so a change to the schema that this misses fails there.
"""

from __future__ import annotations

from typing import Final

from streams.sla.board import BoardRecord

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


def ticket_board_body(record: BoardRecord) -> bytes:
    """The Avro binary encoding of `record` under TicketBoard.avsc: the same bytes as
    fastavro's of schemas.records.ticket_board_to_avro(record). One flat pass (a call per
    field costs more than its encoding): `seen(x) or _long(x)` is _long(x), and
    `seen(s) or _word(s)` is _word(s), without the call when x or s was seen."""
    seen = _SEEN.get
    view = record.view
    parts = [_str(view.ticket_id), _TRUE if view.resolved else _FALSE]
    add = parts.append
    e = view.entry
    if e is None:
        add(_NULL)
    else:
        p, c = e.priority, e.climbs_at
        parts += (
            _SOME, _str(e.escalation_id), seen(e.kind) or _word(e.kind),
            seen(e.level) or _long(e.level), seen(e.target) or _word(e.target),
            seen(e.reason) or _word(e.reason), seen(e.rule) or _word(e.rule),
            seen(e.due_at) or _long(e.due_at), seen(e.fired_at) or _long(e.fired_at),
            seen(e.open_escalations) or _long(e.open_escalations),
            _NULL if p is None else _SOME + (seen(p) or _word(p)),
            _NULL if c is None else _SOME + (seen(c) or _long(c)),
        )  # fmt: skip
    w = view.warning
    if w is None:
        add(_NULL)
    else:
        parts += (
            _SOME, _str(w.escalation_id), seen(w.target) or _word(w.target),
            seen(w.rule) or _word(w.rule), seen(w.due_at) or _long(w.due_at),
            seen(w.fired_at) or _long(w.fired_at),
            seen(w.open_warnings) or _long(w.open_warnings),
        )  # fmt: skip
    fired = record.fired
    if fired:
        add(_long(len(fired)))
        for f in fired:
            parts += (
                _str(f.escalation_id), seen(f.kind) or _word(f.kind),
                seen(f.level) or _long(f.level), seen(f.from_level) or _long(f.from_level),
                seen(f.target) or _word(f.target), seen(f.reason) or _word(f.reason),
                seen(f.rule) or _word(f.rule), seen(f.due_at) or _long(f.due_at),
                seen(f.fired_at) or _long(f.fired_at),
            )  # fmt: skip
    add(_NULL)
    if record.bumps:
        add(_long(len(record.bumps)))
        for b in record.bumps:
            parts += (_str(b.escalation_id), _word(b.old_priority), _word(b.new_priority),
                      _word(b.reason), _long(b.fired_at))  # fmt: skip
    add(_NULL)
    left = record.left
    add(_NULL if left is None else _SOME + _str(left.escalation_id) + _long(left.at))
    return b"".join(parts)
