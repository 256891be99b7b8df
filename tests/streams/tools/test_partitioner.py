"""streams.tools.partitioner: where the producers put a ticket (the real producer's choice is
checked in tests/integration/test_pipeline.py and test_ingest.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.tools.partitioner import murmur2, ticket_partition


@pytest.mark.parametrize(
    ("key", "signed"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(key: bytes, signed: int) -> None:
    """The values of Kafka's own test of Utils.murmur2 (Java's int, signed)."""
    assert murmur2(key) == signed & 0xFFFFFFFF


@given(st.text(min_size=0, max_size=80), st.integers(1, 1024))
def test_a_ticket_has_one_partition_in_range(ticket_id: str, partitions: int) -> None:
    p = ticket_partition(ticket_id, partitions)
    assert 0 <= p < partitions
    assert p == (murmur2(ticket_id.encode()) & 0x7FFFFFFF) % partitions
    assert ticket_partition(ticket_id, 1) == 0
