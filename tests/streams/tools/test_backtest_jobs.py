"""`escalator backtest --jobs N` writes what one process writes, byte for byte."""

from __future__ import annotations

import dataclasses
import heapq
import io
import json
import pickle
import tempfile
import threading
from collections import Counter
from pathlib import Path
from random import Random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.cli.main import main
from streams.sla.events import event_to_dict
from streams.sla.policy import OpsAlerts, Policy, load_policy
from streams.sla.queues import QueueStat, QueueWindows, StatKind
from streams.sla.report import BacktestReport
from streams.tools import backtest_jobs
from streams.tools.backtest_jobs import run_parallel_backtest
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history, shard_of, write_history
from streams.tools.partitioner import ticket_partition
from tests.support.histories import arrived_late
from tests.support.policies import alerts_policy

T_2150 = 5_680_281_600_000  # far past a 2026 history: refused by --max-ahead


def _run(path: Path, jobs: int, tmp: Path, **kwargs: object) -> tuple[bytes, str, str]:
    out = tmp / f"out-{jobs}.jsonl"
    stdout, stderr = io.StringIO(), io.StringIO()
    run_parallel_backtest(load_policy(), path, out, stdout=stdout, stderr=stderr, jobs=jobs,
                          **kwargs)  # type: ignore[arg-type]  # fmt: skip
    # the last two lines say how long it took and where the file is
    report = "\n".join(stdout.getvalue().splitlines()[:-2])
    return out.read_bytes(), report, stderr.getvalue()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "h.jsonl"
    generate_to_file(path, agents=12, days=3, seed=11)
    # duplicates and a bad line too: the merged report counts them as one process does
    lines = path.read_text().splitlines()
    lines[40:40] = [lines[10], "{not json", '{"ticket_id": "T1", "type": "NOPE"}']
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_give_the_output_and_report_of_one_process(
    history: Path, tmp_path: Path, jobs: int
) -> None:
    one_out, one_report, one_err = _run(history, 1, tmp_path)
    many_out, many_report, many_err = _run(history, jobs, tmp_path)
    assert one_out.count(b"\n") > 100 and "escalations" in one_report
    assert many_out == one_out
    assert many_report == one_report
    for line in ("skipped bad line", "ignored 1 events whose event_id a ticket already had"):
        assert line in one_err and line in many_err


def test_a_history_grouped_by_ticket_is_sorted_in_each_process(
    history: Path, tmp_path: Path
) -> None:
    """Each process finds its lines out of time order, reads them again and sorts them;
    the merge then gets the lines of the second pass only."""
    grouped = tmp_path / "grouped.jsonl"
    events = [e for e in read_history(history) if hasattr(e, "ticket_id")]
    write_history(grouped, sorted(events, key=lambda e: e.ticket_id))
    out, report, stderr = _run(grouped, 2, tmp_path)
    assert "not in time order" in stderr
    assert out.count(b"\n") > 100
    assert (out, report) == _run(grouped, 1, tmp_path)[:2]


def test_every_shard_gets_whole_tickets(history: Path) -> None:
    owners: dict[str, set[int]] = {}
    for shard in range(3):
        for item in read_history(history, shard=(shard, 3)):
            if hasattr(item, "ticket_id"):
                owners.setdefault(item.ticket_id, set()).add(shard)
    assert all(len(s) == 1 for s in owners.values())
    assert {next(iter(s)) for s in owners.values()} == {0, 1, 2}
    assert all(shard_of(t, 3) in s for t, s in owners.items())


def test_a_compare_run_is_the_same_on_several_processes(history: Path, tmp_path: Path) -> None:
    other = load_policy()  # what matters is that both reports are merged alike
    outs = []
    for jobs in (1, 2):
        stdout = io.StringIO()
        run_parallel_backtest(load_policy(), history, None, other, stdout=stdout,
                              stderr=io.StringIO(), jobs=jobs)  # fmt: skip
        outs.append(stdout.getvalue().splitlines()[:-1])
    assert outs[0] == outs[1]


def test_a_line_refused_by_max_ahead_runs_on_one_process(tmp_path: Path, history: Path) -> None:
    """Refusing a line depends on every ticket's clock: the parallel run is not exact, so
    one process runs it."""
    events = [e for e in read_history(history) if hasattr(e, "ticket_id")][:300]
    far = dataclasses.replace(events[0], event_id="far", occurred_at=T_2150)
    path = tmp_path / "far.jsonl"
    write_history(path, events)
    with path.open("a") as f:
        f.write(json.dumps(event_to_dict(far)) + "\n")
    one_out, one_report, _ = _run(path, 1, tmp_path)
    many_out, many_report, err = _run(path, 2, tmp_path)
    assert "running on one process" in err
    assert (many_out, many_report) == (one_out, one_report)
    assert "skipped line 301" in err


def test_the_command_line_takes_jobs(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.jsonl"
    assert main(["backtest", str(history), "--out", str(out), "--jobs", "2"]) == 0
    assert "2 processes" in capsys.readouterr().out
    assert out.read_bytes() == _run(history, 1, tmp_path)[0]
    assert main(["backtest", str(history), "--jobs", "0"]) != 0
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [2, 3])
def test_the_whole_json_report_is_the_same_on_several_processes(
    tmp_path: Path, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queue ops alerts span the tickets of every shard, and each process raises those of
    its share of the queues from every process's stats (swapped in many small chunks here);
    CSAT, answer times and the hourly counts are added up: the JSON report of --jobs N is
    the one of --jobs 1."""
    from streams.tools import backtest_jobs
    from tests.support.policies import alerts_policy

    monkeypatch.setattr(backtest_jobs, "_CHUNK", 7)  # the processes are forked: they see it

    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=40, days=2, seed=11)
    _, policy = alerts_policy(tmp_path)
    documents = []
    for n in (1, jobs):
        stdout = io.StringIO()
        run_parallel_backtest(policy, path, None, stdout=stdout, stderr=io.StringIO(),
                              jobs=n, fmt="json")  # fmt: skip
        documents.append(json.loads(stdout.getvalue()))
    (report,) = documents[0]["reports"]
    assert len(report["ops_alerts"]) >= 10 and report["csat"] and report["answer_times"]
    # the alerts come from the queues of more than one process
    assert len({shard_of(a["queue"], jobs) for a in report["ops_alerts"]}) > 1
    assert documents[1] == documents[0]


MIN = 60_000
OPS = OpsAlerts(
    window="30m", hop="10m", allowed_lateness="10m",  # type: ignore[arg-type]
    volume_surge={"factor": 1.5, "baseline_windows": 2, "min_created": 2},  # type: ignore[arg-type]
    backlog_growth={"min_growth": 2, "ratio": 1.0, "consecutive": 1},  # type: ignore[arg-type]
    breach_rate_spike={"rate": 0.2, "min_breaches": 1},  # type: ignore[arg-type]
)  # fmt: skip
Record = tuple[int, bool, QueueStat]


@st.composite
def _shard_records(draw: st.DrawFn) -> list[Record]:
    """One process's recorded stats, in its clock order: few queues, clocks often equal
    (within and across processes) and a millisecond either side of a hop, stats late by up
    to 25 minutes, repeated ids."""
    records: list[Record] = []
    clock = draw(st.integers(0, 30)) * MIN
    steps = [0, 0, 1, MIN - 1, MIN, 2 * MIN, 10 * MIN - 1, 10 * MIN, 10 * MIN + 1, 25 * MIN]
    for _ in range(draw(st.integers(0, 60))):
        clock += draw(st.sampled_from(steps))
        kind = draw(st.sampled_from(list(StatKind)))
        at = clock - draw(st.integers(0, 25)) * MIN
        ident = f"{kind}:{draw(st.integers(0, 40))}"
        records.append(
            (clock, draw(st.booleans()), QueueStat(draw(st.sampled_from("abcde")), kind, at, ident))
        )
    return records


def _swap(shards: list[list[Record]], tmp: Path) -> tuple[list[BacktestReport], list[bool]]:
    """_replay_own_queues of every process, on threads, as the forked processes run it."""
    jobs = len(shards)
    policy = SimpleNamespace(source="p.yaml", ops_alerts=OPS)
    barrier = threading.Barrier(jobs)
    reports = [BacktestReport("p.yaml") for _ in shards]
    ordered: list[bool] = [False] * jobs

    def run(index: int) -> None:
        reports[index].ops_record = list(shards[index])
        ordered[index] = backtest_jobs._replay_own_queues(
            index, jobs, [policy], [reports[index]], 400 * MIN, barrier, tmp  # type: ignore[list-item]
        )  # fmt: skip

    threads = [threading.Thread(target=run, args=(i,)) for i in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports, ordered


@settings(max_examples=150, deadline=None)
@given(shards=st.lists(_shard_records(), min_size=1, max_size=3))
def test_each_process_alerts_on_its_queues_as_the_whole_replay_would(
    shards: list[list[Record]],
) -> None:
    """The swap sends each process the stats of its queues and the clocks that close
    windows: together the processes raise the alerts and count the late stats that one
    replay of every record, merged by clock, does."""
    whole = BacktestReport("p.yaml")
    whole.ops = QueueWindows(OPS)
    whole.replay_ops(heapq.merge(*shards, key=lambda r: r[0]), 400 * MIN)
    with tempfile.TemporaryDirectory() as tmp:
        reports, ordered = _swap(shards, Path(tmp))
    assert all(ordered)
    alerts = sorted(
        (a for r in reports for a in r.ops_alerts), key=lambda a: (a.window_end, a.queue)
    )
    assert alerts == whole.ops_alerts
    assert sum(r.ops_late for r in reports) == whole.ops_late


def test_the_swapped_replay_finds_alerts_and_late_stats() -> None:
    """The property above is not vacuous: its kind of history raises alerts and has late
    stats, and a process that missed the other's closing clocks would count others."""
    a = [
        (m * MIN, True, QueueStat("a", StatKind.CREATED, m * MIN, f"a{m}")) for m in range(0, 90, 3)
    ]
    b = [
        (m * MIN, True, QueueStat("b", StatKind.CREATED, m * MIN, f"b{m}")) for m in range(0, 90, 2)
    ]
    b.append((95 * MIN, False, QueueStat("a", StatKind.CREATED, 50 * MIN, "late")))
    whole = BacktestReport("p.yaml")
    whole.ops = QueueWindows(OPS)
    whole.replay_ops(heapq.merge(a, b, key=lambda r: r[0]), 400 * MIN)
    assert whole.ops_alerts and whole.ops_late == 1
    with tempfile.TemporaryDirectory() as tmp:
        reports, _ = _swap([a, b], Path(tmp))
    assert sum(r.ops_late for r in reports) == 1
    assert (
        sorted((x for r in reports for x in r.ops_alerts), key=lambda x: (x.window_end, x.queue))
        == whole.ops_alerts
    )


def test_the_queues_are_shared_by_volume_and_every_process_finds_the_same_owners(
    tmp_path: Path,
) -> None:
    """The largest queues first, each to the process with the fewest stats so far, from
    every process's counts: 100 + 10 against 60 + 50, where a hash of the names may put
    most of the stats on one process; every process reads the same owners."""
    volumes = [{"chat/it": 60, "email/billing": 70, "phone/legal": 4}, {"email/billing": 30,
               "web/general": 50, "phone/legal": 6}]  # fmt: skip
    for index, counts in enumerate(volumes):
        with (tmp_path / f"volumes-{index}-0").open("wb") as f:
            pickle.dump(Counter(counts), f)
    owners = backtest_jobs._queue_owners(tmp_path, 2, 0)
    assert owners == {"email/billing": 0, "chat/it": 1, "web/general": 1, "phone/legal": 0}
    assert backtest_jobs._queue_owners(tmp_path, 2, 0) == owners
    with (tmp_path / "volumes-2-0").open("wb") as f:
        pickle.dump(Counter({"chat/it": 45}), f)
    assert backtest_jobs._queue_owners(tmp_path, 3, 0) == {
        "chat/it": 0, "email/billing": 1, "web/general": 2, "phone/legal": 2,
    }  # fmt: skip


def test_clocks_that_go_back_are_not_split(
    history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose queue stats are out of clock order makes every process say so, and
    the backtest runs on one process, with the same output."""
    back = [(5 * MIN, True, QueueStat("a", StatKind.CREATED, 0, "x")),
            (2 * MIN, True, QueueStat("b", StatKind.CREATED, 0, "y"))]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _, ordered = _swap([back, []], Path(tmp))
    assert ordered == [False, False]
    from tests.support.policies import alerts_policy

    _, policy = alerts_policy(tmp_path)
    monkeypatch.setattr(backtest_jobs, "_ascending", lambda clocks: False)  # forked: seen
    out, stderr = tmp_path / "out.jsonl", io.StringIO()
    run_parallel_backtest(policy, history, out, stdout=io.StringIO(), stderr=stderr, jobs=2)
    assert "queue stats are not in clock order" in stderr.getvalue()
    assert out.read_bytes() == _run(history, 1, tmp_path)[0]


@pytest.fixture(scope="module")
def arrived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Policy]:
    """A history delivered late (one event in 25 held back up to 48 h), with a repeated
    event and a bad line, and a policy whose small ops alerts fire on it."""
    tmp = tmp_path_factory.mktemp("arrived")
    generate_to_file(tmp / "generated.jsonl", agents=40, days=2, seed=11)
    path = tmp / "arrived.jsonl"
    write_history(path, arrived_late(tmp / "generated.jsonl", Random(7)))
    lines = path.read_text().splitlines()
    lines[40:40] = [lines[10], "{not json"]
    path.write_text("\n".join(lines) + "\n")
    return path, alerts_policy(tmp)[1]


def _arrival(path: Path, policy: Policy, jobs: int, tmp: Path) -> tuple[bytes, dict, str]:
    out = tmp / f"arrival-{jobs}.jsonl"
    stdout, stderr = io.StringIO(), io.StringIO()
    run_parallel_backtest(policy, path, out, stdout=stdout, stderr=stderr, jobs=jobs,
                          arrival_order=True, partitions=6, fmt="json")  # fmt: skip
    return out.read_bytes(), json.loads(stdout.getvalue()), stderr.getvalue()


@pytest.mark.parametrize("jobs", [2, 4])
def test_arrival_order_jobs_give_the_output_and_report_of_one_process(
    arrived: tuple[Path, Policy], tmp_path: Path, jobs: int
) -> None:
    """In arrival order the processes split the partitions (6 here, by the producers'
    murmur2): the --out file and the whole JSON report, late queue stats and ops alerts
    included, are those of one process."""
    path, policy = arrived
    one_out, one_report, one_err = _arrival(path, policy, 1, tmp_path)
    many_out, many_report, many_err = _arrival(path, policy, jobs, tmp_path)
    (report,) = one_report["reports"]
    assert report["ops_late"] > 20 and len(report["ops_alerts"]) >= 10
    assert report["silenced"] and report["duplicates"] == 1 and report["bad_lines"] == 1
    records = [json.loads(line) for line in one_out.splitlines()]
    assert len(records) > 500
    # not merged by instant: some line fires earlier than the one before it
    assert any(b["fired_at"] < a["fired_at"] for a, b in zip(records, records[1:], strict=False))
    # one instant's lines, in ticket order, come from partitions of different processes
    runs: dict[int, set[int]] = {}
    for r in records:
        runs.setdefault(r["fired_at"], set()).add(ticket_partition(r["ticket_id"], 6) % jobs)
    assert any(len(shards) > 1 for shards in runs.values())
    assert "running on one process" not in many_err
    assert many_out == one_out
    assert many_report == one_report
    assert "ignored 1 events whose event_id a ticket already had" in many_err


def test_arrival_order_shards_hold_whole_partitions(arrived: tuple[Path, Policy]) -> None:
    path, _ = arrived
    owners: dict[str, set[int]] = {}
    for shard in range(4):
        for item in read_history(path, shard=(shard, 4), partitions=6):
            if hasattr(item, "ticket_id"):
                owners.setdefault(item.ticket_id, set()).add(shard)
    assert all(s == {ticket_partition(t, 6) % 4} for t, s in owners.items())
    assert {next(iter(s)) for s in owners.values()} == {0, 1, 2, 3}


def test_arrival_order_jobs_are_capped_at_the_partitions(
    arrived: tuple[Path, Policy], tmp_path: Path
) -> None:
    path, policy = arrived
    stdout = io.StringIO()
    run_parallel_backtest(policy, path, None, stdout=stdout, stderr=io.StringIO(), jobs=8,
                          arrival_order=True, partitions=3)  # fmt: skip
    assert "3 processes" in stdout.getvalue()


def test_an_arrival_order_shard_whose_first_event_the_history_refuses_runs_on_one_process(
    tmp_path: Path,
) -> None:
    """T1's partition is in process 0 and T2's in process 1 (6 partitions, 2 processes).
    T2's first event is 40 days past T1's: the history refuses it, but nothing stands before
    it in its own process. The parallel run sees that, and one process runs it."""
    from streams.sla.events import EventType, TicketEvent

    assert [ticket_partition(t, 6) % 2 for t in ("T1", "T2")] == [0, 1]
    day = 86_400_000
    t0 = 1_790_000_000_000
    events = [
        TicketEvent("a", "T1", EventType.CREATED, t0, channel="email"),
        TicketEvent("b", "T2", EventType.CREATED, t0 + 40 * day, channel="email"),
        TicketEvent("c", "T1", EventType.AGENT_REPLIED, t0 + 2 * day),
    ]
    path = tmp_path / "far.jsonl"
    write_history(path, events)
    one = _arrival(path, load_policy(), 1, tmp_path)
    many = _arrival(path, load_policy(), 2, tmp_path)
    assert "skipped line 2" in one[2] and "running on one process" in many[2]
    assert many[:2] == one[:2]
