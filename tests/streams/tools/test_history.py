from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from streams.sla.events import EventType, Priority, Status, TicketEvent, event_to_dict
from streams.tools.history import (
    LineError,
    count_lines,
    is_gzip,
    read_history,
    shard_of,
    write_history,
)

T0 = 1_793_610_900_000


def sample_events(n: int = 5) -> list[TicketEvent]:
    out = [
        TicketEvent(
            "T1-001",
            "T1",
            EventType.CREATED,
            T0,
            status=Status.NEW,
            priority=Priority.HIGH,
            channel="email",
            tags_added=("refund",),
            attributes={"language": "es"},
        )
    ]
    for i in range(1, n):
        out.append(TicketEvent(f"T1-{i + 1:03d}", "T1", EventType.AGENT_REPLIED, T0 + i * 1000))
    return out


def line(**fields: object) -> str:
    data: dict[str, object] = {
        "event_id": "e",
        "ticket_id": "t",
        "type": "CREATED",
        "occurred_at": "2026-11-02T09:15:00.000Z",
    }
    data.update(fields)
    return json.dumps(data)


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_write_read_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    events = sample_events()
    assert write_history(path, events) == len(events)
    assert is_gzip(path) == name.endswith(".gz")
    assert list(read_history(path)) == events
    assert list(read_history(str(path))) == events
    assert count_lines(path) == len(events)


def test_gzip_is_detected_by_magic_bytes_not_extension(tmp_path: Path) -> None:
    zipped = tmp_path / "x.gz"
    write_history(zipped, sample_events())
    disguised = tmp_path / "history.jsonl"
    disguised.write_bytes(zipped.read_bytes())
    plain_named_gz = tmp_path / "plain.jsonl.gz"
    plain_named_gz.write_text("\n".join(line(event_id=f"e{i}") for i in range(3)) + "\n")
    assert list(read_history(disguised)) == sample_events()
    assert [e.event_id for e in read_history(plain_named_gz)] == ["e0", "e1", "e2"]  # type: ignore[union-attr]


def test_written_lines_are_canonical_json(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = sample_events(2)
    write_history(path, events)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [event_to_dict(e) for e in events]
    assert '"occurred_at":"2026-11-02T09:15:00.000Z"' in lines[0]


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_history(a, sample_events())
    write_history(b, sample_events())
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()).count(b"\n") == 5


def test_bad_lines_are_reported_and_good_lines_still_come_out(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            [
                line(event_id="ok1"),  # 1
                "",  # 2 blank: skipped
                line(event_id="bad-type", type="FOO"),  # 3
                '{"event_id": "x", "ticket_id": ',  # 4 truncated JSON
                "   ",  # 5 blank: skipped
                line(event_id="bad-level", support_level=9),  # 6
                "[1, 2]",  # 7 not an object
                line(event_id="bad-tag", tags_added=["a", 7]),  # 8
                line(event_id="ok2", type="CLOSED", status="CLOSED"),  # 9
                line(event_id="naive", occurred_at="2026-11-02T09:15:00"),  # 10
                line(event_id="ok3"),  # 11
            ]
        )
        + "\n"
    )
    out = list(read_history(path))
    good = [x for x in out if isinstance(x, TicketEvent)]
    bad = [x for x in out if isinstance(x, LineError)]
    assert [e.event_id for e in good] == ["ok1", "ok2", "ok3"]
    assert [(e.line, e.field) for e in bad] == [
        (3, "type"),
        (4, None),
        (6, "support_level"),
        (7, None),
        (8, "tags_added[1]"),
        (10, "occurred_at"),
    ]
    # file order is kept: errors sit between the events around them
    assert [getattr(x, "event_id", None) or x.line for x in out] == [  # type: ignore[union-attr]
        "ok1",
        3,
        4,
        6,
        7,
        8,
        "ok2",
        10,
        "ok3",
    ]
    assert str(bad[0]) == (
        f"{path}:3: field 'type': 'FOO' is not one of CREATED, ASSIGNED, STATUS_CHANGED, "
        "PRIORITY_CHANGED, TAGS_CHANGED, AGENT_REPLIED, CUSTOMER_REPLIED, TRANSFERRED, "
        "RESOLVED, REOPENED, CLOSED, CSAT_RECEIVED, ESCALATION_ACKNOWLEDGED"
    )
    assert bad[2].reason == "9 is outside 0..4"
    assert "needs a UTC offset" in bad[5].reason
    assert str(bad[3]) == f"{path}:7: expected a JSON object, got array"


def test_invalid_json_reports_column(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(line() + "\n" + '{"event_id": "e" "ticket_id": "t"}\n')
    out = list(read_history(path))
    assert isinstance(out[0], TicketEvent)
    error = out[1]
    assert isinstance(error, LineError)
    assert (error.line, error.field) == (2, None)
    assert error.reason.startswith("invalid JSON: ")
    assert "column 18" in error.reason
    assert str(error) == f"{path}:2: {error.reason}"


def test_invalid_utf8_is_a_line_error(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line().encode() + b"\n" + b'{"event_id": "\xff"}\n')
    out = list(read_history(path))
    assert isinstance(out[0], TicketEvent)
    assert isinstance(out[1], LineError) and out[1].reason.startswith("invalid JSON")


def test_bad_lines_in_gzip_and_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(line(event_id="a") + "\n" + line(event_id="b", csat=0) + "\n" + line(event_id="c"))
    out = list(read_history(path))
    assert [type(x).__name__ for x in out] == ["TicketEvent", "LineError", "TicketEvent"]
    assert str(out[1]) == f"{path}:2: field 'csat': 0 is outside 1..5"
    assert count_lines(path) == 3


def test_line_error_str_without_field() -> None:
    assert str(LineError("events.jsonl", 17, None, "invalid JSON: x at column 1")) == (
        "events.jsonl:17: invalid JSON: x at column 1"
    )
    assert str(LineError("events.jsonl", 17, "type", "bad")) == "events.jsonl:17: field 'type': bad"


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_history(tmp_path / "nope.jsonl"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    assert write_history(path, []) == 0
    assert path.read_bytes() == b""
    assert list(read_history(path)) == []
    assert count_lines(path) == 0


def test_every_line_is_read_by_exactly_one_shard(tmp_path: Path) -> None:
    """`backtest --jobs`: each line, event or error, is read by one shard, and an event by
    its ticket's shard, whatever the line's text (escapes, the key twice, no ticket id)."""
    base = event_to_dict(sample_events(1)[0])
    lines = []
    for i, ticket in enumerate(["T1", "T2", "Zoë-7", 'quo"te', "back\\slash", "T3"] * 3):
        lines.append(
            json.dumps({**base, "event_id": f"e{i}", "ticket_id": ticket}, ensure_ascii=False)
        )
    lines += [
        json.dumps({**base, "event_id": "n1", "attributes": {"ticket_id": "X"}}),  # key twice
        json.dumps({**base, "event_id": "n2", "ticket_id": "T4"}).replace('"T4"', '"T\\u0034"'),
        # its own key escaped, another ticket's id under that key in its attributes
        json.dumps(
            {**base, "event_id": "n5", "ticket_id": "T8", "attributes": {"ticket_id": "B"}}
        ).replace('"ticket_id"', '"ticket\\u005fid"', 1),  # fmt: skip
        json.dumps(
            {**base, "event_id": "n3", "ticket_id": "T5"}, ensure_ascii=False, indent=1
        ).replace("\n", " "),  # fmt: skip
        '{"ticket_id": 7, "event_id": "n4"}',  # not a string: an error line
        '{"ticket_id": "T6", broken',  # found by text, then fails to decode: an error line
        '{"attributes": {"ticket_id": "T7"}}',  # no ticket id of its own: an error line
        "[1, 2]",
        "{not json",
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = list(read_history(path, numbered=True))
    for count in (2, 3, 5):
        seen: list[tuple[int, object]] = []
        for index in range(count):
            for line, item in read_history(path, numbered=True, shard=(index, count)):
                seen.append((line, item))
                if not isinstance(item, LineError):
                    assert shard_of(item.ticket_id, count) == index
        assert sorted(seen, key=lambda pair: pair[0]) == whole
    assert sum(isinstance(item, LineError) for _, item in whole) == 5
    assert {item.ticket_id for _, item in whole if not isinstance(item, LineError)} >= {
        "Zoë-7",
        'quo"te',
        "back\\slash",
        "T4",
        "T5",
    }
