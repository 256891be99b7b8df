"""streams.runtime.partition_time: the clock in a committed offset's metadata."""

from __future__ import annotations

import pytest

from streams.runtime.partition_time import (
    STORED_SUFFIX,
    decode_partition_time,
    encode_partition_time,
)


def test_a_clock_reads_back_from_its_metadata() -> None:
    metadata = encode_partition_time(1_790_000_000_000)
    assert metadata == '{"v":1,"wm":1790000000000}'
    assert decode_partition_time(metadata) == 1_790_000_000_000
    assert decode_partition_time(encode_partition_time(0)) == 0


@pytest.mark.parametrize("after", [STORED_SUFFIX, "ive-st0", "\x00\x7f}"])
def test_what_follows_the_clock_is_not_read(after: str) -> None:
    """confluent-kafka commits metadata with a C string's NUL and reads it back as a C
    string: metadata stored without the NUL came back with the bytes after it in memory."""
    assert decode_partition_time(encode_partition_time(5) + after) == 5


@pytest.mark.parametrize(
    "metadata",
    [None, "", "abc", "{", "[1]", '{"v":2,"wm":5}', '{"wm":5}', '{"v":1}', '{"v":1,"wm":-1}',
     '{"v":1,"wm":"5"}', '{"v":1,"wm":5.0}', '{"v":true,"wm":5}', "null"],
)  # fmt: skip
def test_metadata_that_is_not_ours_holds_no_clock(metadata: str | None) -> None:
    """No metadata, another tool's, or an offset reset by hand: the worker starts from no
    clock, as before the format existed."""
    assert decode_partition_time(metadata) is None
