"""The hand-written TicketBoard body (schemas.board_wire) is byte for byte fastavro's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.board_wire import ticket_board_body
from schemas.codec import AvroCodec, codec_for
from schemas.records import ticket_board_from_avro, ticket_board_to_avro
from streams.sla.board import BoardEntry, BoardRecord, BoardView, Bumped, Fired, Left, WarningEntry

text = st.text(max_size=40)
word = st.sampled_from(["HIERARCHICAL", "AUTOMATIC", "sales-manager", "SLA_WARNING", "é日本"])
level = st.integers(-(2**31), 2**31 - 1)
ms = st.integers(-(2**63), 2**63 - 1) | st.integers(0, 4_102_444_800_000)  # any long; epoch ms
small = st.integers(0, 1000)


def fired(ticket_id: str) -> st.SearchStrategy[Fired]:
    return st.builds(Fired, text, st.just(ticket_id), word, level, level, word, word, word, ms, ms)


@st.composite
def records(draw: st.DrawFn) -> BoardRecord:
    ticket_id = draw(text)
    entry = st.builds(
        BoardEntry, st.just(ticket_id), text, word, level, word, word, word, ms, ms, small,
        st.none() | word, st.none() | ms,
    )  # fmt: skip
    warning = st.builds(WarningEntry, st.just(ticket_id), text, word, word, ms, ms, small)
    view = BoardView(ticket_id, draw(st.booleans()), draw(st.none() | entry),
                     draw(st.none() | warning))  # fmt: skip
    bumps = st.lists(st.builds(Bumped, text, word, word, word, ms), max_size=3)
    return BoardRecord(
        view,
        tuple(draw(st.lists(fired(ticket_id), max_size=3))),
        tuple(draw(bumps)),
        draw(st.none() | st.builds(Left, text, ms)),
    )


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("ESCALATOR_SCHEMA_REGISTRY_URL", raising=False)  # ids.json's ids
        return codec_for("TicketBoard")


@settings(max_examples=300, deadline=None)
@given(record=records())
def test_the_body_is_fastavros_bytes(codec: AvroCodec, record: BoardRecord) -> None:
    framed = codec.frame(ticket_board_body(record))
    assert framed == codec.encode(ticket_board_to_avro(record))
    assert ticket_board_from_avro(codec.decode(framed)) == record
