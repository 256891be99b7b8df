"""Fixtures for the integration tests: pipelines on the real local broker (the harness is
tests/support/pipeline.py), the board in Redis, in-process workers and a headless browser."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from connectors.sinks.board_store import BoardKeys
from tests.support.browser import CHROME_FLAGS
from tests.support.pipeline import RUNTIMES, Pipeline
from tests.support.workers import Running


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    line = Pipeline(kafka_bootstrap, tmp_path)
    line.create_topics()
    try:
        yield line
    finally:
        line.close()


@pytest.fixture(params=RUNTIMES)
def any_pipeline(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """A pipeline whose workers run on each runtime in turn (the loop, then Faust)."""
    line = Pipeline(kafka_bootstrap, tmp_path, runtime=request.param)
    line.create_topics()
    try:
        yield line
    finally:
        line.close()


@pytest.fixture
def board(pipeline: Pipeline, redis_url: str) -> Iterator[tuple[redis.Redis, BoardKeys]]:
    """The pipeline's board (prefix from its topic prefix); its keys are deleted afterwards."""
    pipeline.extra_env["ESCALATOR_REDIS_URL"] = redis_url
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = BoardKeys.from_settings(pipeline.settings, pipeline.prefix)
    try:
        yield client, keys
    finally:
        stale = list(client.scan_iter(match=f"{keys.prefix}*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """In-process workers the test starts (tests/support/workers.py), stopped afterwards."""
    started: list[Running] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with a throwaway profile."""
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="escalator-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        # An explicit driver path: Selenium Manager never tries to download one.
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            yield driver
        finally:
            driver.quit()
