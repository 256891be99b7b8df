"""Webhook delivery against a local HTTP server (no Kafka), offset tracking, CLI start-up errors."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.sinks.webhook import DELIVERIES, RETRIES, Deliverer, OffsetTracker, Outcome
from connectors.sinks.webhook_targets import Target, verify
from streams.cli.main import main

KEY = b"unit-test-signing-key-0123456789"
BODY = b'{"text":"hello"}'


class Receiver:
    """A local HTTP server answering each request with the next scripted reply."""

    def __init__(self, replies: list[tuple[int, dict[str, str]]]) -> None:
        self.replies = replies
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status, headers = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return web.Response(status=status, headers=headers, text=f"reply {status}")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(*replies: int | tuple[int, dict[str, str]]) -> Receiver:
        receiver = Receiver([r if isinstance(r, tuple) else (r, {}) for r in replies])
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def deliver(target: Target, key: bytes | None = KEY) -> tuple[Outcome, Sleeps]:
    sleeps = Sleeps()
    async with aiohttp.ClientSession() as session:
        deliverer = Deliverer(session, [target], key, sleep=sleeps, rand=lambda: 0.5)
        outcome = await deliverer.deliver(target, "escalation", "esc-1", BODY)
    return outcome, sleeps


def target(url: str, name: str = "t", **fields: Any) -> Target:
    return Target(name=name, url=url, backoff_base_s=1.0, backoff_cap_s=3.0, **fields)


async def test_two_failures_then_success_is_one_delivery_signed_each_time(serve: Any) -> None:
    receiver = await serve(500, 503, 200)
    before = count(RETRIES, "flaky")
    outcome, sleeps = await deliver(target(receiver.url, "flaky"))
    assert outcome == Outcome(True, 3, 200)
    assert sleeps == [0.5, 1.0]  # jitter 0.5 of 1s, then of 2s
    assert count(RETRIES, "flaky") - before == 2
    for attempt, (headers, body) in enumerate(receiver.requests, 1):
        assert body == BODY
        assert verify(KEY, headers["X-Escalator-Timestamp"], headers["X-Escalator-Signature"],
                      body, now=float(headers["X-Escalator-Timestamp"]))  # fmt: skip
        assert headers["X-Escalator-Escalation-Id"] == "esc-1"
        assert headers["X-Escalator-Event"] == "escalation"
        assert headers["X-Escalator-Delivery-Attempt"] == str(attempt)
        assert headers["Content-Type"] == "application/json"


async def test_out_of_attempts_reports_the_last_error(serve: Any) -> None:
    receiver = await serve(500, 502)
    outcome, sleeps = await deliver(target(receiver.url, "down", max_attempts=4))
    assert outcome == Outcome(False, 4, 502, "HTTP 502: reply 502")
    assert len(receiver.requests) == 4
    assert sleeps == [0.5, 1.0, 1.5]  # the third wait hits the 3s cap (x jitter 0.5)


async def test_a_4xx_is_not_retried(serve: Any) -> None:
    receiver = await serve(404)
    before = count(DELIVERIES, "gone", "http_4xx")
    outcome, sleeps = await deliver(target(receiver.url, "gone"))
    assert outcome == Outcome(False, 1, 404, "HTTP 404: reply 404")
    assert sleeps == []
    assert count(DELIVERIES, "gone", "http_4xx") - before == 1


async def test_429_waits_as_long_as_retry_after_says_up_to_the_cap(serve: Any) -> None:
    receiver = await serve((429, {"Retry-After": "2"}), (429, {"Retry-After": "60"}), 200)
    outcome, sleeps = await deliver(target(receiver.url, "limited"))
    assert outcome.delivered and outcome.attempts == 3
    assert sleeps == [2.0, 3.0]


async def test_a_redirect_is_not_followed(serve: Any) -> None:
    receiver = await serve((302, {"Location": "http://127.0.0.1:1/elsewhere"}))
    outcome, _ = await deliver(target(receiver.url))
    assert (outcome.delivered, outcome.attempts, outcome.status) == (False, 1, 302)


async def test_connection_errors_and_timeouts_are_retried() -> None:
    from streams.tools.demo import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    outcome, sleeps = await deliver(target(url, "refused", max_attempts=2))
    assert (outcome.delivered, outcome.attempts, outcome.status) == (False, 2, None)
    assert "ClientConnectorError" in outcome.error and len(sleeps) == 1


async def test_a_slow_receiver_times_out(serve: Any) -> None:
    import asyncio

    app = web.Application()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response()

    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        before = count(DELIVERIES, "slow", "timeout")
        outcome, _ = await deliver(target(url, "slow", timeout_s=0.2, max_attempts=1))
        assert outcome == Outcome(False, 1, None, "timeout after 0.2s")
        assert count(DELIVERIES, "slow", "timeout") - before == 1
    finally:
        await runner.cleanup()


async def test_unsigned_mode_sends_no_signature(serve: Any) -> None:
    receiver = await serve(200)
    outcome, _ = await deliver(target(receiver.url), key=None)
    assert outcome.delivered
    headers, _ = receiver.requests[0]
    assert "X-Escalator-Signature" not in headers and "X-Escalator-Timestamp" in headers


async def test_concurrency_per_target_is_bounded() -> None:
    import asyncio

    active, peak = 0, 0

    async def hold(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        one = target(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", concurrency=2)
        async with aiohttp.ClientSession() as session:
            deliverer = Deliverer(session, [one], KEY)
            outcomes = await asyncio.gather(
                *(deliverer.deliver(one, "escalation", f"e{i}", BODY) for i in range(6))
            )
        assert all(o.delivered for o in outcomes)
        assert peak == 2
    finally:
        await runner.cleanup()


def test_dead_letter_record_encodes_and_reads_as_a_line() -> None:
    from confluent_kafka import Message

    from connectors.sinks.webhook import webhook_dead_letter
    from schemas.codec import codec_for
    from schemas.readable import describe

    msg = Message(topic="escalations", partition=2, offset=41, key=b"T-1", value=b"\x00raw",
                  timestamp=(1, 1_790_000_000_000))  # fmt: skip
    record = webhook_dead_letter(msg, "e1", "paging", Outcome(False, 8, 503, "HTTP 503: busy"), 7)
    codec = codec_for("WebhookDeadLetter")
    assert codec.decode(codec.encode(record)) == record
    assert record["timestamp"] == 1_790_000_000_000 and record["original"] == b"\x00raw"
    assert describe("WebhookDeadLetter", record) == (
        "WEBHOOK DLQ escalations[2]@41 target=paging attempts=8 esc=e1: HTTP 503: busy"
    )


# --------------------------------------------------------------------------- offsets


def test_commit_position_stops_at_the_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    tp, other = ("escalations", 0), ("escalations", 1)
    for offset in (5, 6, 7, 8):
        tracker.add(tp, offset)
    tracker.add(other, 0)
    tracker.done(tp, 6)
    tracker.done(tp, 8)
    assert tracker.advance() == {}  # 5 is still in flight
    tracker.done(tp, 5)
    assert tracker.advance() == {tp: 7}  # 7 still in flight; 8 waits for it
    assert tracker.advance() == {}
    tracker.done(tp, 7)
    tracker.done(other, 0)
    assert tracker.advance(only=[tp]) == {tp: 9}
    assert tracker.in_flight() == 1
    tracker.forget([other])
    tracker.done(other, 0)  # finished after its partition was revoked: ignored
    assert tracker.advance() == {} and tracker.in_flight() == 0


# --------------------------------------------------------------------------- start-up


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("ESCALATOR_"):
            monkeypatch.delenv(name)
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  - name: ops\n    url: https://ops.example.invalid/hook\n")
    monkeypatch.setenv("ESCALATOR_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # must not be reached

    def contacted(*args: Any) -> None:
        raise AssertionError("contacted Kafka before validating the configuration")

    monkeypatch.setattr("streams.cli.preflight.kafka_reachable", contacted)
    return targets


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_start_needs_a_targets_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sink", "webhook"]) == 2
    assert "ESCALATOR_WEBHOOK_TARGETS_FILE is not set" in one_line(capsys)


def test_start_needs_a_signing_key_unless_unsigned(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCALATOR_WEBHOOK_TARGETS_FILE", str(env))
    assert main(["sink", "webhook"]) == 2
    assert "no signing key" in one_line(capsys)
    monkeypatch.setenv("ESCALATOR_WEBHOOK_SIGNING_KEY", "short")
    assert main(["sink", "webhook"]) == 2
    assert "at least 16 characters" in one_line(capsys)
    monkeypatch.delenv("ESCALATOR_WEBHOOK_SIGNING_KEY")
    with pytest.raises(AssertionError, match="contacted Kafka"):
        main(["sink", "webhook", "--unsigned"])  # past the key check


def test_a_bad_targets_file_stops_start_up_with_its_line(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env.write_text("targets:\n  - name: ops\n    url: ops.example.invalid/hook\n")
    monkeypatch.setenv("ESCALATOR_WEBHOOK_TARGETS_FILE", str(env))
    monkeypatch.setenv("ESCALATOR_WEBHOOK_SIGNING_KEY", KEY.decode())
    assert main(["sink", "webhook"]) == 2
    assert one_line(capsys) == (
        f"{env}:3: targets[0].url: must be an http:// or https:// URL with a host"
    )


def test_a_busy_metrics_port_is_a_config_error() -> None:
    import socket

    from connectors.sinks.webhook import WebhookSink, run_webhook_sink
    from streams.runtime.settings import ConfigError, load_settings
    from streams.runtime.topics import Topics

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                  "ESCALATOR_METRICS_HOST": "127.0.0.1",
                                  "ESCALATOR_METRICS_PORT": str(port)})  # fmt: skip
        sink = WebhookSink(settings, [target("http://127.0.0.1:1/x")], Topics(), "g", KEY)
        with pytest.raises(ConfigError, match=f"ESCALATOR_METRICS_PORT={port}: cannot listen"):
            run_webhook_sink(sink)


def test_reading_pauses_when_too_much_is_in_flight_and_resumes_at_half() -> None:
    from connectors.sinks.webhook import WebhookSink
    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics

    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    sink = WebhookSink(settings, [target("http://127.0.0.1:1/x")], Topics(), "g", KEY,
                       max_in_flight=4)  # fmt: skip
    calls: list[str] = []

    class FakeConsumer:
        def assignment(self) -> list[str]:
            return ["p0"]

        def pause(self, parts: list[str]) -> None:
            calls.append("pause")

        def resume(self, parts: list[str]) -> None:
            calls.append("resume")

    sink.consumer = FakeConsumer()  # type: ignore[assignment]
    tp = ("escalations", 0)
    for offset in range(4):
        sink.tracker.add(tp, offset)
        sink._flow_control()
    assert calls == ["pause"]
    sink.tracker.done(tp, 0)
    sink.tracker.advance()
    sink._flow_control()  # 3 in flight: still paused
    assert calls == ["pause"]
    for offset in (1, 2):
        sink.tracker.done(tp, offset)
    sink.tracker.advance()
    sink._flow_control()  # 1 in flight, below half
    assert calls == ["pause", "resume"]


async def test_an_open_circuit_parks_at_once_then_one_request_probes(serve: Any) -> None:
    receiver = await serve(500, 500, 500, 200)
    now = [1000.0]
    down = target(receiver.url, "tripping", max_attempts=2, circuit_failures=2, circuit_open_s=30)
    sleeps = Sleeps()
    async with aiohttp.ClientSession() as session:
        deliverer = Deliverer(session, [down], KEY, clock=lambda: now[0], sleep=sleeps,
                              rand=lambda: 0.5)  # fmt: skip
        first = await deliverer.deliver(down, "escalation", "e1", BODY)
        assert (first.attempts, first.status) == (2, 500)  # two failures: the circuit opens
        parked = await deliverer.deliver(down, "escalation", "e2", BODY)
        assert parked == Outcome(False, 0, None, "circuit open after 2 consecutive failed requests")
        assert len(receiver.requests) == 2  # parked without a request
        now[0] += 31  # half-open: one probe; it fails, so the circuit opens again
        probe = await deliverer.deliver(down, "escalation", "e3", BODY)
        assert probe == Outcome(False, 1, 500, "circuit open after 3 consecutive failed "
                                "requests; last: HTTP 500: reply 500")  # fmt: skip
        assert len(receiver.requests) == 3
        now[0] += 31  # the next probe succeeds and closes the circuit
        assert (await deliverer.deliver(down, "escalation", "e4", BODY)).delivered
        assert deliverer.circuits["tripping"].opened_at is None


async def test_a_retrying_delivery_parks_when_the_circuit_opens_meanwhile(serve: Any) -> None:
    receiver = await serve(500)
    down = target(receiver.url, "dead", max_attempts=8, circuit_failures=3)
    outcome, sleeps = await deliver(down)
    assert outcome == Outcome(False, 3, 500, "circuit open after 3 consecutive failed requests; "
                              "last: HTTP 500: reply 500")  # fmt: skip
    assert len(receiver.requests) == 3 and len(sleeps) == 3  # not 8 attempts


async def test_a_full_backlog_parks_at_once_and_spares_other_targets(serve: Any) -> None:
    import asyncio

    release = asyncio.Event()
    app = web.Application()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app.router.add_post("/hook", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fast = await serve(200)
    try:
        slow = target(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", "slow",
                      concurrency=1, max_pending=2)  # fmt: skip
        quick = target(fast.url, "quick")
        async with aiohttp.ClientSession() as session:
            deliverer = Deliverer(session, [slow, quick], KEY)
            held = [asyncio.create_task(deliverer.deliver(slow, "escalation", f"e{i}", BODY))
                    for i in range(2)]  # fmt: skip
            await asyncio.sleep(0.1)
            over = await deliverer.deliver(slow, "escalation", "e9", BODY)
            assert over == Outcome(False, 0, None, "backlog full: 2 deliveries pending")
            assert (await deliverer.deliver(quick, "escalation", "e9", BODY)).delivered
            release.set()
            assert all(o.delivered for o in await asyncio.gather(*held))
            assert deliverer.pending == {"slow": 0, "quick": 0}
    finally:
        await runner.cleanup()


def test_only_unfinished_messages_fill_the_window() -> None:
    tracker = OffsetTracker()
    tp = ("escalations", 0)
    for offset in range(5):
        tracker.add(tp, offset)
    for offset in range(1, 5):
        tracker.done(tp, offset)  # offset 0 is still retrying for a slow target
    assert tracker.advance() == {}
    assert (tracker.unfinished(), tracker.in_flight()) == (1, 5)
    tracker.forget([tp])
    assert (tracker.unfinished(), tracker.in_flight()) == (0, 0)


async def test_a_delivery_that_raises_parks_the_record_for_that_target_only() -> None:
    import asyncio

    from connectors.sinks.webhook import WebhookSink
    from schemas.codec import codec_for
    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics
    from tests.support.webhooks import escalation

    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    ok, bad = target("http://127.0.0.1:1/ok", "ok"), target("http://127.0.0.1:1/bad", "bad")
    sink = WebhookSink(settings, [ok, bad], Topics(), "g", KEY)
    parked: list[tuple[str | None, Outcome]] = []

    class Raising:
        async def deliver(self, t: Target, *_: Any) -> Outcome:
            if t.name == "bad":
                raise KeyError("a bug of ours")
            return Outcome(True, 1, 200)

    async def park(msg: Any, escalation_id: Any, name: str | None, outcome: Outcome) -> None:
        parked.append((name, outcome))

    sink.deliverer = Raising()  # type: ignore[assignment]
    sink._park = park  # type: ignore[method-assign]
    value = codec_for("Escalation").encode(escalation("T1", "billing"))
    msg = type("Msg", (), {"value": lambda self: value})()
    await asyncio.wait_for(sink._handle(msg, "escalations"), 5)  # type: ignore[arg-type]
    assert sink.delivered == 1
    assert parked == [("bad", Outcome(False, 0, None, "cannot deliver: KeyError: 'a bug of ours'"))]
    sink.consumer.close()


async def test_a_record_task_that_fails_stops_the_sink_after_its_drain() -> None:
    """A failure of ours in a record's task (not a delivery: e.g. webhook-dlq refusing the
    park) leaves run() as it is, after the sink drained and committed what finished, and
    closed its clients; no last status line (the command line reports the error)."""
    import io

    from connectors.sinks.webhook import WebhookSink
    from schemas.codec import codec_for
    from streams.runtime.settings import load_settings
    from streams.runtime.topics import Topics
    from tests.support.webhooks import escalation

    settings = load_settings({"ESCALATOR_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    out = io.StringIO()
    sink = WebhookSink(settings, [target("http://127.0.0.1:1/x")], Topics(), "g", KEY, out=out)
    value = codec_for("Escalation").encode(escalation("T1", "billing"))
    calls: list[Any] = []

    class Msg:
        def __init__(self, offset: int) -> None:
            self.at = offset

        def error(self) -> None:
            return None

        def topic(self) -> str:
            return "escalations"

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self.at

        def value(self) -> bytes:
            return value

    class FakeConsumer:
        batches = [[Msg(0), Msg(1)]]

        def subscribe(self, topics: list[str], **callbacks: Any) -> None:
            calls.append(("subscribe", topics))

        def consume(self, n: int, timeout: float) -> list[Msg]:
            return self.batches.pop(0) if self.batches else []

        def commit(self, offsets: Any, asynchronous: bool) -> None:
            calls.append(("commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

        def assignment(self) -> list[Any]:
            return []

        def close(self) -> None:
            calls.append("close")

    broken = RuntimeError("cannot park on webhook-dlq: broker down")

    async def dispatch(msg: Any, base: str, record: Any) -> None:
        if msg.offset() == 1:
            raise broken

    sink.consumer.close()
    sink.consumer = FakeConsumer()  # type: ignore[assignment]
    sink.dispatch = dispatch  # type: ignore[method-assign]
    with pytest.raises(RuntimeError) as caught:
        await sink.run()
    assert caught.value is broken
    assert calls == [("subscribe", ["escalations"]), ("commit", [("escalations", 0, 1)]), "close"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escalator sink webhook: ready: 1 targets")
