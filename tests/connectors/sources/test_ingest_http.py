"""The ingest HTTP contract (status codes, error bodies, all-or-nothing batches) on a real aiohttp
server with an in-memory sink; tests/integration/test_ingest.py runs it against Kafka and Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from connectors.sources.ingest import Ingest
from streams.sla.events import event_from_dict
from tests.connectors.helpdesk_cases import cases, without_id
from tests.support.ingest_http import AUTH, CODEC, NOW, TOKEN, MemorySink, native


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def client(sink: MemorySink) -> AsyncIterator[TestClient[Any, Any]]:
    ingest = Ingest(sink, CODEC, TOKEN, max_bytes=4096, batch_max_bytes=64_000, clock=lambda: NOW)
    async with TestClient(TestServer(ingest.app())) as test_client:
        yield test_client


async def body(response: ClientResponse) -> dict[str, Any]:
    data: dict[str, Any] = await response.json()
    return data


async def test_event_is_accepted_after_the_sink_took_it(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    response = await client.post("/v1/events", json=native(1, priority="HIGH"), headers=AUTH)
    assert response.status == 202
    assert await body(response) == {"accepted": 1, "event_ids": ["e1"]}
    ((key, _),) = sink.records
    assert key == b"T1"
    assert sink.events()[0]["priority"] == "HIGH"


async def test_an_acknowledgement_is_accepted_and_reaches_the_worker_as_one(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    from schemas.records import ticket_event_from_avro
    from streams.sla.events import EventType

    attributes = {"escalation_id": "0f3a", "acknowledged_by": "agent-7"}
    event = native(4, type="ESCALATION_ACKNOWLEDGED", attributes=attributes)
    response = await client.post("/v1/events", json=event, headers=AUTH)
    assert response.status == 202
    [record] = sink.events()
    assert record["type"] == "TAGS_CHANGED"  # the Avro carrier (schemas/records.py)
    decoded = ticket_event_from_avro(record)
    assert (decoded.type, dict(decoded.attributes)) == (
        EventType.ESCALATION_ACKNOWLEDGED,
        attributes,
    )


@pytest.mark.parametrize(
    ("headers", "error"),
    [({}, "missing bearer token"), ({"Authorization": "Bearer nope"}, "wrong bearer token"),
     ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token")],
)  # fmt: skip
async def test_token_is_required(
    client: TestClient[Any, Any], sink: MemorySink, headers: dict[str, str], error: str
) -> None:
    for path in (
        "/v1/events",
        "/v1/events/batch",
        "/v1/webhooks/zendesk",
        "/v1/webhooks/freshdesk",
    ):
        response = await client.post(path, json=native(), headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert error in (await body(response))["error"]
    assert sink.records == []


async def test_without_a_token_configured_no_auth_is_needed(sink: MemorySink) -> None:
    async with TestClient(TestServer(Ingest(sink, CODEC, None, clock=lambda: NOW).app())) as c:
        assert (await c.post("/v1/events", json=native())).status == 202


@pytest.mark.parametrize(
    ("event", "field"),
    [(native(type="OPENED"), "type"), (native(occurred_at=1_700_000), "occurred_at"),
     (native(tags_added=["ok", 3]), "tags_added[1]"), (native(colour="red"), "colour"),
     (native(occurred_at="2026-11-10T00:00:00Z"), "occurred_at"),  # days after NOW
     ([native()], "event")],
)  # fmt: skip
async def test_invalid_event_names_the_field(
    client: TestClient[Any, Any], sink: MemorySink, event: Any, field: str
) -> None:
    response = await client.post("/v1/events", json=event, headers=AUTH)
    assert response.status == 400
    data = await body(response)
    assert data["field"] == field and data["error"]
    assert sink.records == []


async def test_invalid_json(client: TestClient[Any, Any], sink: MemorySink) -> None:
    response = await client.post("/v1/events", data=b'{"event_id": ', headers=AUTH)
    assert response.status == 400
    assert (await body(response))["error"].startswith("invalid JSON")


async def test_size_limit_by_content_length_and_while_reading(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    big = native(attributes={"note": "x" * 5000})
    response = await client.post("/v1/events", json=big, headers=AUTH)
    assert response.status == 413
    assert "4096" in (await body(response))["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    response = await client.post("/v1/events", data=chunked(), headers=AUTH)
    assert response.status == 413
    assert sink.records == []


async def test_unavailable_sink_answers_503_with_retry_after(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    sink.down = True
    response = await client.post("/v1/events", json=native(), headers=AUTH)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "unreachable" in (await body(response))["error"]
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200
    sink.down = False
    assert (await client.post("/v1/events", json=native(), headers=AUTH)).status == 202
    assert (await client.get("/readyz")).status == 200


async def test_batch_array_and_json_lines(client: TestClient[Any, Any], sink: MemorySink) -> None:
    events = [native(i) for i in range(10)]
    response = await client.post("/v1/events/batch", json=events, headers=AUTH)
    assert response.status == 202
    assert (await body(response))["accepted"] == 10
    lines = "\n".join(json.dumps(native(i)) for i in range(10, 15)) + "\n\n"
    response = await client.post("/v1/events/batch", data=lines, headers=AUTH)
    assert (await body(response))["accepted"] == 5
    assert [e["event_id"] for e in sink.events()] == [f"e{i}" for i in range(15)]


async def test_batch_is_all_or_nothing_and_lists_every_error(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    events = [native(0), native(1, status="DONE"), native(2), native(3, csat=9)]
    response = await client.post("/v1/events/batch", json=events, headers=AUTH)
    assert response.status == 400
    data = await body(response)
    assert (data["index"], data["field"]) == (1, "status")
    assert [(e["index"], e["field"]) for e in data["errors"]] == [(1, "status"), (3, "csat")]
    lines = f"{json.dumps(native(0))}\nnot json\n{json.dumps(native(2, type=None))}\n"
    data = await body(await client.post("/v1/events/batch", data=lines, headers=AUTH))
    assert [(e["line"], e["field"]) for e in data["errors"]] == [(2, "event"), (3, "type")]
    assert data["errors"][0]["error"].startswith("invalid JSON")
    response = await client.post("/v1/events/batch", data=b"  \n", headers=AUTH)
    assert response.status == 400
    assert sink.records == []


@pytest.mark.parametrize("source", ["zendesk", "freshdesk"])
async def test_webhooks_map_and_reject(
    client: TestClient[Any, Any], sink: MemorySink, source: str
) -> None:
    path = f"/v1/webhooks/{source}"
    for case in cases(source, "invalid"):
        response = await client.post(path, json=case["payload"], headers=AUTH)
        assert response.status == 400, case["name"]
        assert (await body(response))["field"] == case["field"]
    (ignored,) = cases(source, "ignored")
    response = await client.post(path, json=ignored["payload"], headers=AUTH)
    assert (response.status, (await body(response))["accepted"]) == (202, 0)
    assert sink.records == []
    first = cases(source, "sequence")[0]  # no tag memory here: previous tags are unknown
    response = await client.post(path, json=first["payload"], headers=AUTH)
    assert response.status == 202
    (record,) = sink.events()
    assert without_id(event_from_dict(record)) == first["expected"]
    assert (await body(response))["event_ids"] == [record["event_id"]]


async def test_metrics_count_requests_by_endpoint_and_status(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/events", json=native(), headers=AUTH)
    await client.post("/v1/events", json=native())
    await client.get("/nowhere")
    text = await (await client.get("/metrics")).text()
    assert 'escalator_ingest_requests_total{endpoint="events",status="202"}' in text
    assert 'escalator_ingest_requests_total{endpoint="events",status="401"}' in text
    assert 'escalator_ingest_requests_total{endpoint="unmatched",status="404"}' in text
    assert 'escalator_ingest_events_total{source="native"}' in text
    assert "escalator_ingest_request_duration_seconds_bucket" in text


def test_ingest_settings_and_their_errors() -> None:
    from streams.runtime.settings import ConfigError, load_settings

    conn = load_settings(
        {"ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS": "8000", "ESCALATOR_INGEST_TAGS_PREFIX": "x:",
         "ESCALATOR_ENRICH_TIMEOUT_MS": "50", "ESCALATOR_ENRICH_RETRY_SECONDS": "9"}
    ).connectors  # fmt: skip
    assert (conn.ingest_delivery_timeout_ms, conn.ingest_tags_prefix) == (8000, "x:")
    assert (conn.enrich_timeout_ms, conn.enrich_retry_seconds) == (50, 9)
    with pytest.raises(ConfigError, match="ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS"):
        load_settings({"ESCALATOR_INGEST_DELIVERY_TIMEOUT_MS": "soon"})


def test_cli_refuses_to_start_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.cli.main import main

    monkeypatch.delenv("ESCALATOR_INGEST_TOKEN", raising=False)
    monkeypatch.delenv("ESCALATOR_INGEST_TOKEN_FILE", raising=False)
    assert main(["ingest"]) == 2
    error = capsys.readouterr().err
    assert "ESCALATOR_INGEST_TOKEN" in error and "--insecure-no-auth" in error
