"""The `escalator` command line without Kafka: user errors, the supervisor, generate+backtest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import streams.tools.backtest
import streams.tools.backtest_jobs
from streams.cli import preflight, supervisor
from streams.cli.main import main
from streams.cli.supervisor import CHILD_ENV


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ESCALATOR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to reach Kafka fails the test; die_with_parent is recorded, not run (it
    would set PR_SET_PDEATHSIG on the pytest process)."""
    calls: list[str] = []

    def contacted(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("contacted Kafka before validating the input")

    monkeypatch.setattr(preflight, "kafka_reachable", contacted)
    monkeypatch.setattr("streams.runtime.topics.ensure_topics", contacted)
    monkeypatch.setattr(supervisor, "die_with_parent", lambda: calls.append("die_with_parent"))
    return calls


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def bad_policy(tmp_path: Path) -> Path:
    """The default policy with exactly one mistake (a warning fraction above 1)."""
    text = (Path(supervisor.__file__).parents[1] / "sla" / "default_policy.yaml").read_text("utf-8")
    broken = text.replace("warn_at: [0.5, 0.75, 0.9]", "warn_at: [0.5, 1.75, 0.9]", 1)
    assert broken != text
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    return path


# --------------------------------------------------------------------------- user errors


def test_policy_check_with_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bad_policy(tmp_path)
    assert main(["policy", "check", str(path)]) == 2
    line = one_line_error(capsys, str(path), "warn_at", "1.75")
    assert line.startswith(f"{path}:")


def test_policy_check_of_the_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "default"]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.err and captured.out


@pytest.mark.parametrize("command", ["backtest", "replay"])
def test_missing_events_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_kafka: list[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main([command, str(missing)]) == 2
    one_line_error(capsys, f"escalator {command}:", str(missing), "no such events file")


def test_backtest_with_a_bad_until(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    assert main(["backtest", str(events), "--until", "yesterday"]) == 2
    one_line_error(capsys, "escalator backtest:", "--until")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--partitions", "6"], "only with --arrival-order"),
        (["--arrival-order", "--partitions", "0"], "must be between 1 and 1024"),
    ],
)
def test_backtest_with_bad_partitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    assert main(["backtest", str(events), *args]) == 2
    one_line_error(capsys, "escalator backtest:", "--partitions", needle)


def test_an_arrival_order_backtest_keeps_the_workers_partition_clocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default as many as the worker's topic has (ESCALATOR_PARTITIONS), said on stderr:
    the result depends on it (streams.tools.backtest.PartitionedDriver)."""
    seen: list[int] = []
    monkeypatch.setattr(
        streams.tools.backtest_jobs, "run_parallel_backtest",
        lambda *args, partitions, **kwargs: seen.append(partitions) or [],
    )  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_text("")
    monkeypatch.setenv("ESCALATOR_PARTITIONS", "12")
    assert main(["backtest", str(events), "--arrival-order"]) == 0
    assert "arrival order on 12 partitions (the worker's ESCALATOR_PARTITIONS)" in (
        capsys.readouterr().err
    )
    assert main(["backtest", str(events), "--arrival-order", "--partitions", "1"]) == 0
    assert "arrival order on 1 partition (--partitions)" in capsys.readouterr().err
    monkeypatch.delenv("ESCALATOR_PARTITIONS")
    assert main(["backtest", str(events), "--arrival-order"]) == 0
    assert main(["backtest", str(events), "--jobs", "1"]) == 0
    assert seen == [12, 1, 6, 1]


def test_worker_with_bad_partitions_fails_before_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_kafka: list[str]
) -> None:
    monkeypatch.setenv(CHILD_ENV, "1")  # run the worker itself, not the supervisor
    monkeypatch.setenv("ESCALATOR_PARTITIONS", "six")
    assert main(["worker"]) == 2
    one_line_error(capsys, "escalator worker:", "ESCALATOR_PARTITIONS='six'")


def test_faust_worker_refuses_exactly_once_before_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_kafka: list[str]
) -> None:
    monkeypatch.setenv(CHILD_ENV, "1")
    monkeypatch.setenv("ESCALATOR_PROCESSING_GUARANTEE", "exactly_once")
    assert main(["worker", "--runtime", "faust"]) == 2
    one_line_error(capsys, "escalator worker:", "the Faust runtime is at-least-once only")


def test_worker_with_a_bad_policy_fails_before_kafka(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_kafka: list[str],
) -> None:
    monkeypatch.setenv(CHILD_ENV, "1")
    assert main(["worker", "--policy", str(bad_policy(tmp_path))]) == 2
    one_line_error(capsys, "warn_at")


def test_worker_with_a_bad_shadow_policy_fails_before_kafka(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_kafka: list[str],
) -> None:
    monkeypatch.setenv(CHILD_ENV, "1")
    path = bad_policy(tmp_path)
    assert main(["worker", "--shadow-policy", str(path)]) == 2
    line = one_line_error(capsys, "warn_at", "1.75")
    assert line.startswith(f"{path}:") and line.split(":")[1].isdigit()  # the file and line
    missing = tmp_path / "nope.yaml"
    assert main(["worker", "--shadow-policy", str(missing)]) == 2
    one_line_error(capsys, str(missing))


def test_faust_worker_refuses_a_shadow_policy_before_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_kafka: list[str]
) -> None:
    monkeypatch.setenv(CHILD_ENV, "1")
    monkeypatch.setenv("ESCALATOR_PROCESSING_GUARANTEE", "at_least_once")
    assert main(["worker", "--runtime", "faust", "--shadow-policy", "default"]) == 2
    one_line_error(capsys, "escalator worker:", "--shadow-policy", "--runtime loop")


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "EVENTS"],
        ["tail", "escalations"],
        ["alerts"],
        ["demo"],
    ],
)
def test_other_commands_check_settings_before_kafka(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_kafka: list[str],
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    monkeypatch.setenv("ESCALATOR_PROCESSING_GUARANTEE", "twice")
    argv = [str(events) if a == "EVENTS" else a for a in argv]
    assert main(argv) == 2
    one_line_error(capsys, f"escalator {argv[0]}:", "ESCALATOR_PROCESSING_GUARANTEE")


@pytest.mark.parametrize("flag", ["--agents", "--days"])
def test_generate_needs_at_least_one(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", flag, "0"]) == 2
    one_line_error(capsys, "escalator generate:", "at least 1")
    assert capsys.readouterr().out == ""


def test_sasl_without_password_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ESCALATOR_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ESCALATOR_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("ESCALATOR_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never a real broker
    assert main(["tail", "escalations", "--limit", "0", "--idle-timeout", "0"]) == 2
    one_line_error(capsys, "ESCALATOR_KAFKA_SASL_PASSWORD")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["worker"], id="worker"),
        pytest.param(["alerts"], id="alerts"),
        pytest.param(["replay", "EVENTS"], id="replay"),
    ],
)
def test_partition_mismatch_is_a_one_line_error(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_kafka: list[str],
) -> None:
    message = "topic escalations has 3 partitions but ESCALATOR_PARTITIONS=6; all must match"

    def mismatch(*args: Any, **kwargs: Any) -> list[str]:
        raise ValueError(message)  # what ensure_topics raises for an existing topic

    def run_worker(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the worker started despite the mismatch")

    monkeypatch.setattr(preflight, "kafka_reachable", lambda settings: None)
    monkeypatch.setattr("streams.runtime.topics.ensure_topics", mismatch)
    monkeypatch.setattr("streams.runtime.worker.run_worker", run_worker)
    monkeypatch.setenv(CHILD_ENV, "1")
    events = tmp_path / "events.jsonl"
    events.write_text("")
    argv = [str(events) if a == "EVENTS" else a for a in argv]
    assert main(argv) == 2
    one_line_error(capsys, f"escalator {argv[0]}:", message)


class MissingTopicConsumer:
    """A confluent_kafka.Consumer on a cluster without the topic."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={})

    def close(self) -> None:
        self.closed = True


def test_tail_of_a_missing_topic_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_kafka: list[str]
) -> None:
    monkeypatch.setattr(preflight, "kafka_reachable", lambda settings: None)
    monkeypatch.setattr("streams.tools.replay.Consumer", MissingTopicConsumer)
    assert main(["tail", "escalations"]) == 2
    one_line_error(capsys, "escalator tail:", "escalations")


# --------------------------------------------------------------------------- supervisor

CHILD = """
import sys
from pathlib import Path
from types import SimpleNamespace
counter = Path(sys.argv[1])
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
codes = [int(c) for c in sys.argv[2].split(",")]
code = codes[min(runs, len(codes)) - 1]
if code < 0:
    import os
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


@pytest.fixture
def child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], list[tuple[list[str], dict[str, str]]]]:
    """child("75,0"): each started worker process exits with the next code (the last repeats);
    returns the (argv, env) the supervisor started them with."""

    def setup(codes: str) -> list[tuple[list[str], dict[str, str]]]:
        started: list[tuple[list[str], dict[str, str]]] = []
        real_popen = subprocess.Popen
        counter = tmp_path / "runs"

        def fake_popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
            started.append((list(args), dict(kwargs["env"])))
            script = [sys.executable, "-c", CHILD, str(counter), codes]
            return real_popen(script, **kwargs)

        monkeypatch.setattr(subprocess, "Popen", fake_popen)
        monkeypatch.setattr(sys, "argv", ["escalator", "worker", "--event-time"])
        return started

    return setup


def test_supervisor_restarts_the_worker_on_the_restart_code(
    child: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    started = child("75,0")
    handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))

    assert supervisor.supervise_worker() == 0

    assert len(started) == 2
    for argv, env in started:
        assert argv == [sys.executable, "-m", "streams.cli", "worker", "--event-time"]
        assert env[CHILD_ENV] == "1"
    assert capsys.readouterr().err.count("restarting the worker process") == 1
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


def test_supervisor_passes_on_other_exit_codes(child: Any) -> None:
    started = child("3")
    assert supervisor.supervise_worker() == 3
    assert len(started) == 1


def test_supervisor_treats_a_terminated_worker_as_a_clean_stop(child: Any) -> None:
    started = child(f"75,-{int(signal.SIGTERM)}")
    assert supervisor.supervise_worker() == 0
    assert len(started) == 2


def test_supervisor_backs_off_exponentially_between_restarts(
    child: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(supervisor, "pause", lambda seconds: pauses.append(seconds) or True)
    started = child("75,75,75,75,75,75,75,75,75,0")
    assert supervisor.supervise_worker() == 0
    assert len(started) == 10
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60]  # the first restart is immediate
    assert "restarting the worker process (9) in 60s" in capsys.readouterr().err
    assert [supervisor.restart_delay(n) for n in (0, 1, 2, 3, 100)] == [0, 0, 1, 2, 60]


def test_a_signal_during_the_backoff_stops_the_supervisor(
    child: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "restart_delay", lambda restarts: 30.0)
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    started = child("75")
    assert supervisor.supervise_worker() == 0  # within the 30 s pause, not after it
    assert len(started) == 1


def test_worker_command_runs_the_supervisor_outside_the_child(
    child: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "pause", lambda seconds: True)
    started = child("75,75,4")
    assert main(["worker", "--event-time"]) == 4
    assert len(started) == 3


# --------------------------------------------------------------------------- end to end


def test_generate_then_backtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # run_backtest binds sys.stdout/stderr as defaults at import time; hand it the captured ones.
    real = streams.tools.backtest.run_backtest

    def run_backtest(*args: Any, **kwargs: Any) -> Any:
        return real(*args, stdout=sys.stdout, stderr=sys.stderr, **kwargs)

    monkeypatch.setattr(streams.tools.backtest, "run_backtest", run_backtest)
    history = tmp_path / "history.jsonl"
    out = tmp_path / "actions.jsonl"

    assert main(["generate", "--agents", "3", "--days", "1", "--out", str(history)]) == 0
    assert "generated" in capsys.readouterr().err
    events = [json.loads(line) for line in history.read_text().splitlines()]
    assert events and all("ticket_id" in e for e in events)

    assert main(["backtest", str(history), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "escalations by reason" in printed
    assert f"written to {out}" in printed
    actions = [json.loads(line) for line in out.read_text().splitlines()]
    assert actions
    assert all(a["action"] in ("escalation", "priority_bump", "reminder") for a in actions)
    assert any(a["action"] == "escalation" for a in actions)
    assert f"events: {len(events)} " in printed


def test_a_worker_child_whose_supervisor_is_gone_exits_at_once(tmp_path: Path) -> None:
    """A supervisor SIGKILLed while its child was starting never signals it: the child sees
    that its parent is not the supervisor that started it and exits instead of running on."""
    from streams.cli.supervisor import SUPERVISOR_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    env[CHILD_ENV] = "1"
    env[SUPERVISOR_ENV] = "999999999"  # not this child's parent
    env["ESCALATOR_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"
    env["ESCALATOR_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True,
        text=True, timeout=60, cwd=Path(supervisor.__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "supervisor (pid 999999999) is gone" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "body"),
    [
        (["worker"], "cmd_worker"),
        (["alerts"], "cmd_alerts"),
        (["ingest"], "cmd_ingest"),
        (["sink", "webhook"], "cmd_sink"),
        (["sink", "redis"], "cmd_sink"),
    ],
)
def test_logging_is_set_up_once_before_a_command_runs(
    argv: list[str], body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One place sets up logging, in one format, at the command's --loglevel."""
    import logging

    import streams.cli.main as cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(cli, body, lambda args: len(calls))  # what the command would see
    assert main([*argv, "--loglevel", "info"]) == 1
    assert [(c["level"], c["format"]) for c in calls] == [("INFO", cli.LOG_FORMAT)]


def test_version_says_whether_the_engine_is_compiled(capsys: pytest.CaptureFixture[str]) -> None:
    """From the source tree the engine is plain Python: `--expect-compiled` (the image build's
    check, tests/deploy/test_dockerfile.py has the compiled side) refuses it in one line."""
    assert main(["version"]) == 0
    assert "engine: plain Python" in capsys.readouterr().out
    assert main(["version", "--expect-compiled"]) == 2
    one_line_error(capsys, "streams.sla.engine imports as plain Python")
