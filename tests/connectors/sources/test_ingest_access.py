"""Ingest access (issue #18, item 5): per-source tokens, Zendesk signatures, a per-client rate
limit, bounded batch parsing and 400 (never 500) for bad numbers and deep nesting; on a real
aiohttp server with an in-memory sink."""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.sources.ingest import Ingest
from connectors.sources.ingest_access import (
    ZENDESK_SIGNATURE_HEADER,
    ZENDESK_TIMESTAMP_HEADER,
    RateLimiter,
    TokensError,
    load_tokens,
    parse_tokens,
    zendesk_signature,
)
from tests.connectors.helpdesk_cases import cases
from tests.support.ingest_http import AUTH, CODEC, NOW, TOKEN, MemorySink, native

FRESHDESK_TOKEN = "freshdesk-token-0123456789"
BACKFILL_TOKEN = "backfill-token-0123456789"
TOKENS = f"""sources:
  freshdesk:
    token: {FRESHDESK_TOKEN}
    endpoints: [freshdesk]
  backfill:
    token: {BACKFILL_TOKEN}
    endpoints: [events, batch]
"""
SECRET = b"zendesk-signing-secret"

Client = TestClient[Any, Any]


@pytest.fixture
def start() -> Callable[..., Any]:
    """start(**Ingest fields): a started test client (each test closes it), its sink, ingest."""

    async def make(**options: Any) -> tuple[Client, MemorySink, Ingest]:
        sink = MemorySink()
        fields: dict[str, Any] = {"max_bytes": 64_000, "batch_max_bytes": 8_000_000,
                                  "clock": lambda: NOW, **options}  # fmt: skip
        token = fields.pop("token", TOKEN)
        ingest = Ingest(sink, CODEC, token, **fields)
        client: Client = TestClient(TestServer(ingest.app()))
        await client.start_server()
        return client, sink, ingest

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status(response: Any) -> tuple[int, str]:
    return response.status, (await response.json())["error"]


# --------------------------------------------------------------------------- tokens per source


async def test_a_token_posts_only_where_its_source_may(start: Any) -> None:
    client, sink, _ = await start(sources=parse_tokens(TOKENS))
    freshdesk = cases("freshdesk", "sequence")[0]["payload"]
    try:
        response = await client.post("/v1/events", json=native(), headers=bearer(FRESHDESK_TOKEN))
        assert await status(response) == (
            403, "the token of source 'freshdesk' may not post to events")  # fmt: skip
        response = await client.post("/v1/webhooks/freshdesk", json=freshdesk,
                                     headers=bearer(FRESHDESK_TOKEN))  # fmt: skip
        assert response.status == 202
        response = await client.post("/v1/webhooks/freshdesk", json=freshdesk,
                                     headers=bearer(BACKFILL_TOKEN))  # fmt: skip
        assert response.status == 403
        response = await client.post("/v1/events", json=native(), headers=bearer(BACKFILL_TOKEN))
        assert response.status == 202
        # The single ESCALATOR_INGEST_TOKEN keeps working, on every endpoint.
        response = await client.post("/v1/events", json=native(2), headers=AUTH)
        assert response.status == 202
        response = await client.post("/v1/events", json=native(3), headers=bearer("nope" * 5))
        assert await status(response) == (401, "wrong bearer token")
        assert len(sink.records) == 3
    finally:
        await client.close()


def test_a_bad_tokens_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS.replace("[freshdesk]", "[freshdesk, native]"))
    with pytest.raises(TokensError) as caught:
        load_tokens(path)
    assert f"{path}:4" in str(caught.value) and "endpoints" in str(caught.value)
    with pytest.raises(TokensError, match="same token as source 'freshdesk'"):
        parse_tokens(TOKENS.replace(BACKFILL_TOKEN, FRESHDESK_TOKEN))
    with pytest.raises(TokensError, match="at least 16"):
        parse_tokens(TOKENS.replace(BACKFILL_TOKEN, "short"))


# --------------------------------------------------------------------------- Zendesk signature


def signed(body: bytes, at: float, secret: bytes = SECRET) -> dict[str, str]:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {ZENDESK_TIMESTAMP_HEADER: stamp,
            ZENDESK_SIGNATURE_HEADER: zendesk_signature(secret, stamp, body)}  # fmt: skip


async def test_zendesk_webhooks_are_verified_by_their_signature(start: Any) -> None:
    client, sink, _ = await start(zendesk_secret=SECRET, zendesk_window_s=300)
    body = json.dumps(cases("zendesk", "sequence")[0]["payload"]).encode()
    path = "/v1/webhooks/zendesk"
    try:
        response = await client.post(path, data=body, headers=signed(body, NOW - 10))
        assert response.status == 202  # no bearer token needed: the signature is the proof
        response = await client.post(path, data=body, headers=signed(body, NOW, b"other"))
        assert await status(response) == (401, f"wrong {ZENDESK_SIGNATURE_HEADER}")
        response = await client.post(path, data=body + b" ", headers=signed(body, NOW))
        assert response.status == 401  # the body changed
        response = await client.post(path, data=body, headers=signed(body, NOW - 301))
        assert await status(response) == (
            401, f"{ZENDESK_TIMESTAMP_HEADER} is outside the 300s window")  # fmt: skip
        response = await client.post(path, data=body, headers=AUTH)
        assert response.status == 401  # a bearer token is no signature
        assert len(sink.records) == 1
    finally:
        await client.close()


# --------------------------------------------------------------------------- rate limit


async def test_a_client_over_its_rate_gets_429_with_retry_after(start: Any) -> None:
    client, sink, _ = await start(sources=parse_tokens(TOKENS), rate_limit=0.5, rate_burst=2)
    try:
        for i in range(2):
            response = await client.post("/v1/events", json=native(i), headers=AUTH)
            assert response.status == 202
        response = await client.post("/v1/events", json=native(2), headers=AUTH)
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        # Another source has its own budget.
        response = await client.post("/v1/events", json=native(3), headers=bearer(BACKFILL_TOKEN))
        assert response.status == 202
        assert len(sink.records) == 3
    finally:
        await client.close()


def test_the_rate_limiter_refills_and_forgets_the_least_recent_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, lambda: now[0], max_clients=2)
    assert [limiter.wait("a") for _ in range(3)] == [0, 0, 1]
    now[0] += 0.5  # one token back
    assert (limiter.wait("a"), limiter.wait("a")) == (0, 1)
    limiter.wait("b")
    limiter.wait("c")  # "a" is dropped: a new client starts with a full burst
    assert limiter.wait("a") == 0


# --------------------------------------------------------------------------- batches


async def test_a_batch_over_the_item_cap_is_refused_without_building_it(start: Any) -> None:
    client, sink, ingest = await start(batch_max_items=1000)
    huge = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"  # 3 MB: a million empty objects
    try:
        tracemalloc.start()
        events, errors, stopped = ingest.parse_batch(huge)  # stops at the 100th bad item
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert (events, len(errors), stopped) == ([], 100, True)
        assert peak < 20_000_000, peak  # before: +213 MB
        valid = [native(i) for i in range(1001)]
        response = await client.post("/v1/events/batch", json=valid, headers=AUTH)
        assert await status(response) == (413, "more than 1000 events in the batch; split it")
        lines = "\n".join(json.dumps(event) for event in valid)
        response = await client.post("/v1/events/batch", data=lines, headers=AUTH)
        assert response.status == 413
        response = await client.post("/v1/events/batch", json=valid[:1000], headers=AUTH)
        assert response.status == 202
        sink.records.clear()
        assert sink.records == []
    finally:
        await client.close()


async def test_a_batch_stops_collecting_errors_at_100(start: Any) -> None:
    client, _, ingest = await start()
    calls: list[int] = []
    original = ingest.parse_batch

    def counting(body: bytes) -> Any:
        calls.append(threading.get_ident())
        return original(body)

    ingest.parse_batch = counting  # type: ignore[method-assign]
    try:
        response = await client.post("/v1/events/batch", json=[{}] * 5000, headers=AUTH)
        data = await response.json()
        assert response.status == 400
        assert data["error"].startswith("100 or more invalid event(s), none accepted")
        assert len(data["errors"]) == 100 and data["errors"][-1]["index"] == 99
        assert calls and calls[0] != threading.get_ident()  # parsed off the event loop
    finally:
        await client.close()


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b"{}," * 3 + b"NaN]",
        b"[{},",
        b"[{}] x",
        b'[{"a": 1' + b"0" * 5000 + b"}]",
        b"[" + b"[" * 5000 + b"]" * 5000 + b"]",
    ],
    ids=["nan", "truncated", "trailing", "long-number", "deep"],
)
async def test_a_malformed_array_is_a_400(start: Any, body: bytes) -> None:
    client, _, _ = await start()
    try:
        response = await client.post("/v1/events/batch", data=body, headers=AUTH)
        assert response.status == 400, await response.text()
    finally:
        await client.close()


# --------------------------------------------------------------------------- 400, never 500


@pytest.mark.parametrize(
    ("source", "payload", "field"),
    [
        ("zendesk", {"ticket": {"id": 1, "status": "open", "priority": "9" * 5000,
                                "created_at": "2026-11-02T09:15:00Z"}}, "ticket.priority"),
        ("freshdesk", {"freshdesk_webhook": {"ticket_id": 1, "ticket_status": "Open",
                                             "ticket_source": "9" * 5000,
                                             "ticket_created_at": "2026-11-02T09:15:00Z"}},
         "freshdesk_webhook.ticket_source"),
        ("zendesk", {"ticket": {"id": 1, "status": "2" * 30,
                                "created_at": "2026-11-02T09:15:00Z"}}, "ticket.status"),
    ],
    ids=["zendesk-priority", "freshdesk-source", "zendesk-status"],
)  # fmt: skip
async def test_a_number_no_field_can_hold_is_a_400(
    start: Any, source: str, payload: dict[str, Any], field: str
) -> None:
    client, _, _ = await start()
    try:
        response = await client.post(f"/v1/webhooks/{source}", json=payload, headers=AUTH)
        assert response.status == 400, await response.text()
        assert (await response.json())["field"] == field
    finally:
        await client.close()


@pytest.mark.parametrize("path", ["/v1/webhooks/zendesk", "/v1/webhooks/freshdesk", "/v1/events"])
async def test_deep_nesting_is_a_400(start: Any, path: str) -> None:
    client, _, _ = await start()
    deep = "[" * 1000 + "]" * 1000
    body = ('{"ticket": {"id": 1, "status": "open", "created_at": "2026-11-02T09:15:00Z"}, '
            f'"extra": {deep}}}')  # fmt: skip
    try:
        response = await client.post(path, data=body, headers=AUTH)
        assert await status(response) == (400, "JSON nested deeper than 32 levels")
    finally:
        await client.close()
