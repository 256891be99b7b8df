"""The ingest HTTP app in this process: its token and clock, an in-memory sink in place of
Kafka, and a native event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.sources.ingest import Unavailable
from schemas.codec import codec_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_793_700_000.0  # 2026-11-03T... UTC, after every fixture
CODEC = codec_for("TicketEvent")


class MemorySink:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.down = False

    async def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self.down:
            raise Unavailable("Kafka at test is unreachable")
        self.records.extend(records)

    async def ready(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass

    def events(self) -> list[dict[str, Any]]:
        return [CODEC.decode(value) for _, value in self.records]


def native(i: int = 1, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "ticket_id": f"T{i % 3}", "type": "CREATED",
            "occurred_at": "2026-11-02T09:15:00Z", **fields}  # fmt: skip
