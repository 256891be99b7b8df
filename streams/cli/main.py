"""The `escalator` command line: one entry point for operators, SREs and the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from streams.cli import preflight, supervisor
from streams.cli.errors import UserError
from streams.runtime.settings import ConfigError, Settings, load_settings
from streams.sla.events import parse_ts
from streams.sla.policy import Policy, YamlFileError, load_policy

if TYPE_CHECKING:
    from streams.runtime.topics import Topics


LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log records of the commands that run (those with --loglevel) to stderr, in one format:
    the process tells a worker's restarts apart, the logger name the component."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT)


def policy_arg(value: str | None) -> Policy:
    return load_policy(None if value in (None, "default") else value)


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = policy_arg(args.file)
    sys.stdout.write(policy.normalized())
    sys.stderr.write(
        f"{policy.source}: OK ({len(policy.sla_policies)} SLA policies, "
        f"{len(policy.matrix.levels)} matrix levels, {len(policy.spec.triggers)} triggers)\n"
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from streams.tools.generator import generate_to_file
    from streams.tools.progress import Progress

    if args.agents < 1 or args.days < 1:
        raise UserError("--agents and --days must be at least 1")
    out = args.out or "-"
    progress = Progress("generate", unit="events", stream=sys.stderr)
    summary = generate_to_file(
        "/dev/stdout" if out == "-" else out,
        agents=args.agents,
        days=args.days,
        seed=args.seed,
        progress=progress.update,
    )
    progress.close()
    sys.stderr.write(
        f"generated {summary.tickets:,} tickets, {summary.events:,} events"
        + (f" -> {out}\n" if out != "-" else "\n")
    )
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from streams.tools.backtest_jobs import run_parallel_backtest

    policy = policy_arg(args.policy)
    other = policy_arg(args.compare) if args.compare else None
    path = Path(args.events)
    if not path.is_file():
        raise UserError(f"{path}: no such events file")
    until = _instant_arg(args.until, "--until")
    max_ahead = _duration_arg(args.max_ahead, "--max-ahead")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    partitions = _partitions_arg(args.partitions, args.arrival_order)
    run_parallel_backtest(
        policy, path, Path(args.out) if args.out else None, other, until,
        arrival_order=args.arrival_order, max_ahead=max_ahead, jobs=args.jobs or 0,
        fmt=args.format, html_path=Path(args.html) if args.html else None,
        partitions=partitions,
    )  # fmt: skip
    return 0


def _partitions_arg(partitions: int | None, arrival_order: bool) -> int:
    """How many partition clocks an --arrival-order backtest keeps: --partitions, else the
    worker's (ESCALATOR_PARTITIONS), said on stderr, since the result depends on it."""
    if not arrival_order:
        if partitions is not None:
            raise UserError(
                f"--partitions {partitions}: only with --arrival-order (in time order no event "
                "is late, and the backtest is the same on any number of partitions)"
            )
        return 1
    if partitions is None:
        partitions = cli_settings().partitions
        source = "the worker's ESCALATOR_PARTITIONS"
    else:
        source = "--partitions"
        if not 1 <= partitions <= 1024:
            raise UserError(f"--partitions {partitions}: must be between 1 and 1024")
    sys.stderr.write(
        f"arrival order on {partitions} partition{'s' if partitions != 1 else ''} ({source}),"
        " each ticket on its own partition's clock, as the worker reads them\n"
    )
    return partitions


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    from streams.tools.explain import events_of, explain_events, explain_state, format_explanation

    if args.live:
        from streams.tools.explain_live import read_live_state

        settings = cli_settings()
        policy = policy_arg(args.policy or settings.policy_file)
        if args.topic_prefix:
            settings = replace(settings, app_id=f"{args.topic_prefix}{settings.app_id}")
        preflight.kafka_reachable(settings)
        try:
            state, where = read_live_state(settings, args.ticket, args.timeout)
        except (RuntimeError, ValueError) as exc:
            raise UserError(str(exc)) from None
        if state is None:
            raise UserError(f"ticket {args.ticket!r}: no state in {where}")
        try:
            data = explain_state(policy, state, where)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    else:
        if args.events is None:
            raise UserError("name the history file (EVENTS), or pass --live")
        policy = policy_arg(args.policy)
        path = Path(args.events)
        if not path.is_file():
            raise UserError(f"{path}: no such events file")
        events, latest = events_of(str(path), args.ticket)
        if not events:
            raise UserError(f"{path}: no events for ticket {args.ticket!r}")
        until = _instant_arg(args.until, "--until")
        data = explain_events(policy, events, latest if until is None else until)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_explanation(data))
    return 0


def _instant_arg(text: str | None, flag: str) -> int | None:
    if not text:
        return None
    try:
        return parse_ts(text, flag)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _duration_arg(text: str, flag: str) -> int:
    from streams.sla.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


def cli_settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def cmd_worker(args: argparse.Namespace) -> int:
    if not os.environ.get(supervisor.CHILD_ENV):
        return supervisor.supervise_worker()
    supervisor.die_with_parent()
    from schemas.codec import RegistryError
    from streams.runtime.processor import build_processor
    from streams.runtime.worker import changelog_topic, run_worker

    settings = cli_settings()
    if args.runtime == "faust":  # at-least-once unless asked otherwise, which it refuses
        from streams.runtime.faust_runtime import guarantee

        try:
            settings = replace(settings, processing_guarantee=guarantee(os.environ))
        except ConfigError as exc:
            raise UserError(str(exc)) from None
    policy = policy_arg(args.policy or settings.policy_file)
    shadow = policy_arg(args.shadow_policy) if args.shadow_policy else None
    if shadow is not None and args.runtime == "faust":
        raise UserError("--shadow-policy runs on --runtime loop only")
    if args.topic_prefix:  # an isolated pipeline: its own group, changelog and state
        settings = replace(settings, app_id=f"{args.topic_prefix}{settings.app_id}")
    topics = preflight.pipeline_topics(settings, args.topic_prefix, [changelog_topic(settings)])
    sys.stderr.write(
        f"escalator worker: policy {policy.source}, {settings.partitions} partitions, "
        f"{settings.processing_guarantee}, clock={'event' if args.event_time else 'wall'}, "
        f"state {settings.store} (restored from the changelog on assignment), "
        f"runtime {args.runtime}"
        + (f", shadow policy {shadow.source} -> {topics.shadow_escalations}" if shadow else "")
        + "\n"
    )
    if args.runtime == "faust":
        return _faust_worker(settings, policy, topics, args)
    try:
        processor = build_processor(settings, policy, topics, args.event_time, shadow)
    except RegistryError as exc:  # unreachable, or it refuses a schema (incompatible)
        raise UserError(str(exc)) from None
    return run_worker(settings, processor, topics, args.event_time)


def _faust_worker(
    settings: Settings, policy: Policy, topics: Topics, args: argparse.Namespace
) -> int:
    """The same processor as a Faust app (streams.runtime.faust_runtime); its clock topic
    exists first."""
    from schemas.codec import RegistryError
    from streams.runtime.faust_runtime import FaustRuntime, ensure_clock_topic, run_faust_worker

    ensure_clock_topic(settings, topics)
    try:
        runtime = FaustRuntime(settings, policy, topics, args.event_time)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # the data dir
        raise UserError(f"ESCALATOR_DATA_DIR={settings.data_dir}: {exc.strerror}") from None
    return run_faust_worker(runtime, args.loglevel)


def cmd_alerts(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from streams.runtime.alerts import run_alerts

    settings = cli_settings()
    policy = policy_arg(args.policy or settings.policy_file)
    if not policy.ops_alerts.enabled:
        raise UserError(f"{policy.source}: ops_alerts.enabled is false; nothing to do")
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    group = f"{args.topic_prefix}{settings.app_id}-alerts"
    sys.stderr.write(
        f"escalator alerts: policy {policy.source}, group and transactional id {group}\n"
    )
    try:
        return run_alerts(settings, policy, topics, group)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except KafkaException as exc:
        raise UserError(
            f"Kafka: {exc}; restarting is safe (no alert is lost or repeated)"
        ) from None
    except RuntimeError as exc:
        raise UserError(str(exc)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.tools.replay import replay

    settings = cli_settings()
    path = Path(args.events)
    if not path.is_file():
        raise UserError(f"{path}: no such events file")
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    sent, bad = replay(settings, path, topics, rate=args.rate, end_tick=args.end_tick)
    sys.stderr.write(f"replayed {sent:,} events to {topics.ticket_events} ({bad} bad lines)\n")
    return 0 if bad == 0 else 1


def cmd_tail(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from streams.runtime.topics import Topics
    from streams.tools.replay import tail

    settings = cli_settings()
    preflight.kafka_reachable(settings)
    try:
        tail(settings, args.topic, Topics(args.topic_prefix), from_beginning=args.from_beginning,
             limit=args.limit, idle_timeout=args.idle_timeout)  # fmt: skip
    except (ValueError, KafkaException) as exc:
        raise UserError(str(exc)) from None
    return 0


def _sink_webhook(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from connectors.sinks.webhook import WebhookSink, run_webhook_sink
    from connectors.sinks.webhook_targets import load_targets

    settings = cli_settings()
    path = settings.connectors.webhook_targets_file
    if not path:
        raise UserError("ESCALATOR_WEBHOOK_TARGETS_FILE is not set: name the targets file (YAML)")
    targets = load_targets(path)
    key = settings.connectors.webhook_signing_key
    if key is None and not args.unsigned:
        raise UserError(
            "no signing key: set ESCALATOR_WEBHOOK_SIGNING_KEY or its _FILE variant, "
            "or pass --unsigned to send unsigned requests"
        )
    if key is not None and len(key) < 16:
        raise UserError("ESCALATOR_WEBHOOK_SIGNING_KEY: use at least 16 characters")
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    group = f"{args.topic_prefix}{settings.app_id}-sink-webhook"
    try:
        sink = WebhookSink(settings, targets, topics, group, key.encode() if key else None,
                           start=args.start)  # fmt: skip
        return run_webhook_sink(sink)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except (KafkaException, RuntimeError) as exc:
        raise UserError(
            f"{exc}; restarting is safe (undelivered messages are sent again)"
        ) from None


def _sink_helpdesk(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from connectors.sinks.helpdesk_writeback import HelpdeskConfig, HelpdeskSink
    from connectors.sinks.webhook import run_webhook_sink

    settings = cli_settings()
    try:
        config = HelpdeskConfig.from_env()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    group = args.group or f"{args.topic_prefix}{settings.app_id}-sink-helpdesk"
    try:
        return run_webhook_sink(HelpdeskSink(settings, config, topics, group, start=args.start))
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except (KafkaException, RuntimeError) as exc:
        raise UserError(
            f"{exc}; restarting is safe (writes are idempotent per escalation)"
        ) from None


def _sink_redis(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from connectors.sinks.redis_board import SinkOptions, run_redis_sink

    settings = cli_settings()
    preflight.redis_accepts(settings)
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    group = args.group or f"{args.topic_prefix}{settings.app_id}-sink-redis"
    try:
        return run_redis_sink(settings, topics, SinkOptions(group, start=args.start))
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except KafkaException as exc:
        raise UserError(f"Kafka: {exc}; restarting is safe (the board is idempotent)") from None


SINKS: dict[str, Callable[[argparse.Namespace], int]] = {
    "webhook": _sink_webhook,
    "redis": _sink_redis,
    "helpdesk": _sink_helpdesk,
}


def cmd_sink(args: argparse.Namespace) -> int:
    return SINKS[args.kind](args)


def cmd_ingest(args: argparse.Namespace) -> int:
    from connectors.sources.ingest import run_ingest

    settings = cli_settings()
    # the policy's custom help-desk statuses map webhook statuses to canonical ones
    statuses = policy_arg(settings.policy_file).statuses
    token = settings.connectors.ingest_token
    sources = None
    if settings.connectors.ingest_tokens_file:
        from connectors.sources.ingest_access import load_tokens

        sources = load_tokens(settings.connectors.ingest_tokens_file)
    if token is None and sources is None and not args.insecure_no_auth:
        raise UserError(
            "no bearer token: set ESCALATOR_INGEST_TOKENS_FILE (a token per source), "
            "ESCALATOR_INGEST_TOKEN or ESCALATOR_INGEST_TOKEN_FILE, "
            "or pass --insecure-no-auth to accept unauthenticated requests"
        )
    preflight.redis_accepts(settings)
    topics = preflight.pipeline_topics(settings, args.topic_prefix)
    host = args.host or settings.connectors.ingest_host
    port = args.port or settings.connectors.ingest_port
    return run_ingest(settings, topics, host, port, token, sources, statuses)


def cmd_board(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.sinks.board_store import BoardKeys
    from streams.tools.board_web import BoardConfig, serve

    settings = cli_settings()
    preflight.redis_accepts(settings)
    keys = BoardKeys.from_settings(settings, args.topic_prefix)
    worker = args.worker_url or f"http://127.0.0.1:{settings.web_port}"
    sink = args.sink_url or f"http://127.0.0.1:{settings.connectors.metrics_port}"
    config = BoardConfig(keys, None if worker == "none" else worker,
                         None if sink == "none" else sink)  # fmt: skip

    def ready(url: str) -> None:
        sys.stderr.write(f"escalator board: serving {url} (board {keys.prefix}*, "
                         f"worker {config.worker_url}, sink {config.sink_url})\n")  # fmt: skip
        sys.stderr.flush()

    try:
        asyncio.run(serve(settings, config, args.host, args.port, ready))
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.tools.demo import DemoOptions, run_demo

    cli_settings()
    options = DemoOptions(agents=args.agents, days=args.days, rate=args.rate, stay=args.stay)
    return run_demo(options)


def cmd_version(args: argparse.Namespace) -> int:
    from streams.cli.version import ENGINE, describe, engine_compiled

    print(describe())
    if args.expect_compiled and not engine_compiled():
        raise UserError(f"{ENGINE} imports as plain Python, not the compiled module expected")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escalator", description="SLA escalation pipeline for contact centers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    policy = sub.add_parser("policy", help="work with policy files")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy file and print it normalized")
    check.add_argument("file", help="policy YAML, or 'default' for the built-in policy")
    check.set_defaults(func=cmd_policy_check)

    gen = sub.add_parser("generate", help="write a synthetic contact-center history (JSON Lines)")
    gen.add_argument("--agents", type=int, default=50, help="agents on shift (volume scales)")
    gen.add_argument("--days", type=int, default=7)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", help="output file (.jsonl or .jsonl.gz); stdout if omitted")
    gen.set_defaults(func=cmd_generate)

    back = sub.add_parser("backtest", help="run a policy over history in event time")
    back.add_argument("events", help="history as JSON Lines (.jsonl or .jsonl.gz)")
    back.add_argument("--policy", default="default", help="policy YAML (default: built-in)")
    back.add_argument("--out", help="write escalations, bumps and reminders as JSON Lines")
    back.add_argument("--compare", metavar="OTHER_POLICY", help="what-if against another policy")
    back.add_argument("--until", help="advance the clock to this ISO-8601 instant at the end")
    back.add_argument(
        "--arrival-order",
        action="store_true",
        help="apply events in the file's order, late ones included, as a worker received them"
        " (default: each ticket's events in event-time order)",
    )
    back.add_argument(
        "--partitions",
        type=int,
        help="with --arrival-order: the ticket-events partitions, each with its own clock as"
        " in the worker (default: ESCALATOR_PARTITIONS, else 6)",
    )
    back.add_argument(
        "--max-ahead",
        default="30d",
        help="refuse (by line) an event this far past the history's clock so far (default 30d)",
    )
    back.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: the whole report (and the what-if) as one JSON document",
    )
    back.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as one "
        "self-contained page with charts (no network needed to view it)",
    )
    back.add_argument(
        "--jobs",
        type=int,
        help="processes, tickets split between them by hash (with --arrival-order by partition,"
        " at most one process each); same output (default: one per core)",
    )
    back.set_defaults(func=cmd_backtest)

    explain = sub.add_parser(
        "explain", help="one ticket's timeline in plain words: policy, clocks, escalations"
    )
    explain.add_argument("ticket", help="the ticket id")
    explain.add_argument("events", nargs="?", help="history as JSON Lines (not with --live)")
    explain.add_argument("--policy", help="policy YAML (default: built-in; --live: "
                         "ESCALATOR_POLICY_FILE or built-in)")  # fmt: skip
    explain.add_argument("--json", action="store_true", help="the same content as JSON")
    explain.add_argument("--until", help="advance the clock to this ISO-8601 instant at the end"
                         " (default: the history's last event)")  # fmt: skip
    explain.add_argument(
        "--live",
        action="store_true",
        help="read the ticket's current state from the worker's changelog topic",
    )
    explain.add_argument("--timeout", type=float, default=30.0, help="--live: seconds to read")
    explain.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    explain.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="replay a contact-center day through the real pipeline")
    demo.add_argument("--agents", type=int, default=40)
    demo.add_argument("--days", type=int, default=1)
    demo.add_argument("--rate", type=float, default=2000.0, help="replay events per second")
    demo.add_argument(
        "--stay", action="store_true", help="keep worker, sink and board running until Ctrl-C"
    )
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser("worker", help="run the stream worker (exactly-once)")
    worker.add_argument("--policy", help="policy YAML (default: ESCALATOR_POLICY_FILE or built-in)")
    worker.add_argument(
        "--event-time",
        action="store_true",
        help="advance the clock by event time (replays, demo) instead of wall time",
    )
    worker.add_argument(
        "--runtime",
        choices=("loop", "faust"),
        default="loop",
        help="loop: the exactly-once transactional loop (default); faust: Faust agents and a "
        "table over the same processor, at-least-once",
    )
    worker.add_argument(
        "--shadow-policy",
        metavar="FILE",
        help="also run this candidate policy on the same events, with its own state, writing "
        "what it would send to shadow-escalations (loop runtime)",
    )
    worker.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    worker.add_argument("--loglevel", default="warning")
    worker.set_defaults(func=cmd_worker)

    alerts = sub.add_parser(
        "alerts", help="queue-level ops alerts: queue-stats -> ops-alerts (run one instance)"
    )
    alerts.add_argument("--policy", help="policy YAML (default: ESCALATOR_POLICY_FILE or built-in)")
    alerts.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    alerts.add_argument("--loglevel", default="warning", help="info logs every alert sent")
    alerts.set_defaults(func=cmd_alerts)

    rep = sub.add_parser("replay", help="produce a history file to ticket-events")
    rep.add_argument("events", help="history as JSON Lines (.jsonl or .jsonl.gz)")
    rep.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    rep.add_argument(
        "--end-tick",
        action="store_true",
        help="finish with a clock tick at the last event time (event-time workers)",
    )
    rep.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    rep.set_defaults(func=cmd_replay)

    tail = sub.add_parser("tail", help="print an output topic as readable lines")
    tail.add_argument(
        "topic",
        help="escalations, priority-bumps, reminders, ops-alerts, ticket-events-dlq, webhook-dlq, "
        "redis-sink-dlq, shadow-escalations",
    )
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int)
    tail.add_argument("--idle-timeout", type=float, help="stop after this many idle seconds")
    tail.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    tail.set_defaults(func=cmd_tail)

    ingest = sub.add_parser(
        "ingest",
        help="HTTP receiver: native events and Zendesk/Freshdesk webhooks -> ticket-events",
    )
    ingest.add_argument("--host", help="listen address (default: ESCALATOR_INGEST_HOST, 0.0.0.0)")
    ingest.add_argument("--port", type=int, help="default: ESCALATOR_INGEST_PORT, 8080")
    ingest.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="run without ESCALATOR_INGEST_TOKEN: accept requests with no bearer token",
    )
    ingest.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    ingest.add_argument("--loglevel", default="warning", help="info logs each 503")
    ingest.set_defaults(func=cmd_ingest)

    sink = sub.add_parser("sink", help="deliver escalations to other systems")
    sink.add_argument(
        "kind",
        choices=sorted(SINKS),
        help="webhook: signed HTTP posts to targets; redis: the live escalation board; "
        "helpdesk: escalations and priority bumps written back to Zendesk or Freshdesk tickets",
    )
    sink.add_argument("--group", help="redis, helpdesk: consumer group "
                      "(default: <app id>-sink-<kind>)")  # fmt: skip
    sink.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    sink.add_argument("--loglevel", default="warning", help="webhook: info logs every retry")
    sink.add_argument(
        "--unsigned", action="store_true", help="webhook: send unsigned requests if no key is set"
    )
    sink.add_argument(
        "--start",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a consumer group without committed offsets starts",
    )
    sink.set_defaults(func=cmd_sink)

    board = sub.add_parser("board", help="serve the live escalation board page (reads Redis)")
    board.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0: all)")
    board.add_argument("--port", type=int, default=8070)
    board.add_argument("--worker-url", help="worker web base URL for health and metrics, or none "
                       "(default: http://127.0.0.1:ESCALATOR_WEB_PORT)")  # fmt: skip
    board.add_argument("--sink-url", help="Redis sink metrics base URL for /healthz, or none "
                       "(default: http://127.0.0.1:ESCALATOR_METRICS_PORT)")  # fmt: skip
    board.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    board.set_defaults(func=cmd_board)

    version = sub.add_parser("version", help="the version, and whether the engine is compiled")
    version.add_argument(
        "--expect-compiled", action="store_true", help="exit 2 unless the engine runs compiled"
    )
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if getattr(args, "loglevel", None):
        configure_logging(args.loglevel)
    try:
        return func(args)
    except YamlFileError as exc:  # the policy, webhook targets or ingest tokens file
        sys.stderr.write(f"{exc}\n")
        return 2
    except UserError as exc:
        sys.stderr.write(f"escalator {args.command}: {exc}\n")
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
