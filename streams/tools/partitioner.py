"""The ticket-events partition of a ticket, as the producers pick it.

Every Escalator producer (ingest, the connectors, `escalator replay`) keys an event by its
ticket id and partitions with librdkafka's murmur2 (`kafka_config`), the hash Java clients
and aiokafka use: Kafka's murmur2 of the key, its sign bit cleared, modulo the partition
count. `escalator backtest --arrival-order` needs it to run each partition on its own clock,
as the worker does (streams.tools.backtest.PartitionedDriver).
"""

from __future__ import annotations

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), unsigned."""
    length = len(data)
    h = (SEED ^ length) & MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * M) & MASK
        k ^= k >> 24
        k = (k * M) & MASK
        h = ((h * M) & MASK) ^ k
    rest = length - end
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h


def ticket_partition(ticket_id: str, partitions: int) -> int:
    """Where a producer sends the ticket's events on a topic of `partitions` partitions."""
    return (murmur2(ticket_id.encode()) & 0x7FFFFFFF) % partitions
