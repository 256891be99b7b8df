"""Headless Chromium for page tests (the `browser` fixture is in tests/integration/conftest.py):
its flags, and screenshots kept in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.pipeline import REPO

ARTIFACTS = REPO / "test-artifacts"
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1100",
)  # fmt: skip


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), "screenshot not written"
    print(f"board page screenshot: {path}")
    return path
