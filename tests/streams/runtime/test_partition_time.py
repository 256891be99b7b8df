"""streams.runtime.partition_time: the clock in a committed offset's metadata."""

from __future__ import annotations

import pytest

from streams.runtime.partition_time import decode_partition_time, encode_partition_time


def test_a_clock_reads_back_from_its_metadata() -> None:
    metadata = encode_partition_time(1_790_000_000_000)
    assert metadata == '{"v":1,"wm":1790000000000}'
    assert decode_partition_time(metadata) == 1_790_000_000_000
    assert decode_partition_time(encode_partition_time(0)) == 0


@pytest.mark.parametrize(
    "metadata",
    [None, "", "abc", "{", "[1]", '{"v":2,"wm":5}', '{"wm":5}', '{"v":1}', '{"v":1,"wm":-1}',
     '{"v":1,"wm":"5"}', '{"v":1,"wm":5.0}', '{"v":true,"wm":5}', "null"],
)  # fmt: skip
def test_metadata_that_is_not_ours_holds_no_clock(metadata: str | None) -> None:
    """No metadata, another tool's, or an offset reset by hand: the worker starts from no
    clock, as before the format existed."""
    assert decode_partition_time(metadata) is None
