"""The board page in headless Chromium, on a board filled by a real worker and Redis sink."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from connectors.sinks.board_store import BoardKeys, BoardReader
from streams.sla.board import clockless
from streams.sla.policy import load_policy
from streams.tools.backtest import backtest_events
from streams.tools.demo import free_port
from streams.tools.generator import generate_to_file
from streams.tools.history import read_history
from streams.tools.replay import replay
from tests.support.browser import screenshot
from tests.support.pipeline import REPO, Pipeline, WorkerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def start_board(line: Pipeline, *args: str) -> tuple[WorkerProcess, str]:
    port = free_port()
    log = line.root / "board.log"
    cmd = [sys.executable, "-m", "streams.cli", "board", "--port", str(port),
           "--topic-prefix", line.prefix, *args]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=line.env(), stdout=out, stderr=subprocess.STDOUT)
    process = WorkerProcess("board", proc, log, port, ready="escalator board: serving")
    line.workers.append(process)
    process.wait_ready(60)
    return process, f"http://127.0.0.1:{port}/"


def rows(driver: WebDriver, table: str) -> list[dict[str, str]]:
    """The data rows of a table as their data-* attributes and text."""
    script = """
        return [...document.querySelectorAll(arguments[0] + ' tbody tr[data-ticket]')].map(tr =>
            ({...tr.dataset, text: tr.innerText}));
    """
    return driver.execute_script(script, table)  # type: ignore[no-any-return]


def cell_texts(driver: WebDriver, selector: str) -> list[list[str]]:
    """The cells' text of the rows a selector matches, read in one script: the page replaces its
    rows on every poll, so elements found one call and read the next can be stale."""
    script = """
        return [...document.querySelectorAll(arguments[0])].map(tr =>
            [...tr.querySelectorAll('td')].map(td => td.innerText));
    """
    return driver.execute_script(script, selector)  # type: ignore[no-any-return]


def severe_console_errors(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_shows_the_board_a_real_run_filled(
    pipeline: Pipeline, board: tuple[redis.Redis, BoardKeys], browser: WebDriver, tmp_path: Path
) -> None:
    client, keys = board
    path = tmp_path / "history.jsonl"
    generate_to_file(path, agents=4, days=1, seed=8)
    (report,) = backtest_events([load_policy()], read_history(path), board=True)
    assert report.board is not None and len(report.board) >= 5
    expected = report.board
    worker = pipeline.start_worker("w1")
    worker.wait_ready()
    sink = pipeline.start_sink("sink", "redis")
    sink.wait_ready()
    replay(pipeline.settings, path, pipeline.topics, end_tick=True)
    reader = BoardReader(client, keys)
    wait_for(lambda: clockless(reader.entries()) == clockless(expected), "the board")
    wait_for(lambda: clockless(reader.warnings()) == clockless(report.board_warnings or {}),
             "the warnings")  # fmt: skip
    _, url = start_board(pipeline, "--worker-url", f"http://127.0.0.1:{worker.web_port}",
                         "--sink-url", f"http://127.0.0.1:{sink.web_port}")  # fmt: skip

    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(rows(d, "#open-escalations")) == len(expected))
    shown = {row["ticket"]: row for row in rows(browser, "#open-escalations")}
    assert set(shown) == set(expected)
    for ticket_id, entry in expected.items():
        row = shown[ticket_id]
        assert (row["level"], row["team"], row["escalation"]) == (
            str(entry.level), entry.target, entry.escalation_id,
        )  # fmt: skip
        assert f"L{entry.level}" in row["text"] and entry.reason in row["text"]
    assert browser.find_element(By.ID, "count-open").text == str(len(expected))
    # SLA warnings: their own panel and count, none of them among the open escalations.
    warned = report.board_warnings or {}
    assert warned and browser.find_element(By.ID, "count-warnings").text == str(len(warned))
    shown_warnings = {row["ticket"]: row for row in rows(browser, "#warnings")}
    assert {t: r["escalation"] for t, r in shown_warnings.items()} == {
        t: w.escalation_id for t, w in warned.items()
    }  # fmt: skip
    assert all("SLA_WARNING" not in row["text"] for row in shown.values())
    levels = Counter(str(e.level) for e in expected.values())
    by_level = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#by-level tr[data-level]')]"
        ".map(tr => [tr.dataset.level, tr.querySelector('.n').textContent]))"
    )
    assert by_level == {level: str(n) for level, n in levels.items()}
    teams = Counter(e.target for e in expected.values())
    shown_teams = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#by-team tr[data-team]')]"
        ".map(tr => [tr.dataset.team, Number(tr.querySelector('.n').textContent)]))"
    )
    assert shown_teams == dict(teams)
    # Closest to breach: the tickets with a climb deadline, soonest first, counting down.
    climbing = sorted((e.climbs_at, t) for t, e in expected.items() if e.climbs_at is not None)
    closest = rows(browser, "#closest")
    assert [row["ticket"] for row in closest] == [t for _, t in climbing][: len(closest)]
    countdowns = browser.execute_script(
        "return [...document.querySelectorAll('#closest .countdown')].map(c => c.innerText)"
    )
    assert len(countdowns) == len(closest)
    assert all(c and c != "–" for c in countdowns)
    # A replayed day: the page says it counts from the board clock.
    assert browser.find_element(By.ID, "notice").is_displayed()
    wait.until(
        lambda d: d.find_element(By.ID, "health-worker").get_attribute("data-status") == "up"
    )
    for name in ("redis", "sink", "worker"):
        status = browser.find_element(By.ID, f"health-{name}").get_attribute("data-status")
        assert status == "up", name
    assert browser.find_elements(By.CSS_SELECTOR, "#feed li[data-type=escalation]")
    assert not severe_console_errors(browser)
    screenshot(browser, "board-page.png")


def test_page_works_with_an_empty_board_and_no_pipeline(
    pipeline: Pipeline, board: tuple[redis.Redis, BoardKeys], browser: WebDriver
) -> None:
    port = free_port()  # nothing listens there: worker and sink show as down
    _, url = start_board(pipeline, "--worker-url", f"http://127.0.0.1:{port}",
                         "--sink-url", "none")  # fmt: skip
    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "health-redis").get_attribute("data-status") == "up")
    assert browser.find_element(By.ID, "count-open").text == "0"
    assert "no open escalations" in browser.find_element(By.ID, "open-escalations").text
    assert browser.find_element(By.ID, "health-worker").get_attribute("data-status") == "down"
    assert browser.find_element(By.ID, "health-sink").get_attribute("data-status") == "unknown"
    assert not severe_console_errors(browser)
    screenshot(browser, "board-page-empty.png")


def test_page_shows_how_the_shadow_policy_differs(
    pipeline: Pipeline, board: tuple[redis.Redis, BoardKeys], browser: WebDriver
) -> None:
    """The shadow panel, from a worker's /metrics (a local server serving the exposition of a
    real processor that ran a history with a candidate shadow policy)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.shadow import shadow_exposition

    text, production, shadow, only = shadow_exposition()

    class Worker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = text.encode() if self.path == "/metrics" else b'{"ready": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, url = start_board(pipeline, "--worker-url", f"http://127.0.0.1:{server.server_port}",
                             "--sink-url", "none")  # fmt: skip
        browser.get(url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "shadow-panel").is_displayed())
        cells = cell_texts(browser, "#shadow tbody tr")
        assert cells
        assert sum(int(c[2].replace(",", "")) for c in cells) == production
        assert sum(int(c[3].replace(",", "")) for c in cells) == shadow
        assert browser.find_elements(By.CSS_SELECTOR, "#shadow tbody tr:not([data-diff='0'])")
        line = browser.find_element(By.ID, "shadow-only").text
        assert f"production only: {int(only['production']):,}" in line
        assert f"shadow policy only: {int(only['shadow']):,}" in line
        assert not severe_console_errors(browser)
        screenshot(browser, "board-page-shadow.png")
    finally:
        server.shutdown()
