"""Brokers of a test's own (deploy/local/services with their own state dir and ports), never
the shared one."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.tools.demo import free_port
from tests.support.pipeline import REPO

SERVICES = REPO / "deploy" / "local" / "services"


@dataclass
class OwnBroker:
    env: dict[str, str]
    bootstrap: str

    def services(self, command: str) -> None:
        proc = subprocess.run(
            ["bash", str(SERVICES), command, "kafka"], env=self.env, cwd=REPO,
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"services {command} kafka:\n{proc.stdout}{proc.stderr}"


@contextlib.contextmanager
def private_broker(root: Path, **listener: str) -> Iterator[str]:
    """A broker of its own (deploy/local/services on free ports, state under root) whose client
    listener is set by the ESCALATOR_KAFKA_* variables in `listener`; yields its bootstrap."""
    port, controller = free_port(), free_port()
    while controller == port:
        controller = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    env.update(
        ESCALATOR_LOCAL_DIR=str(root / "broker"), ESCALATOR_KAFKA_PORT=str(port),
        ESCALATOR_KAFKA_CONTROLLER_PORT=str(controller),
        ESCALATOR_KAFKA_HEAP="-Xms128m -Xmx384m", **listener,
    )  # fmt: skip
    broker = OwnBroker(env, f"127.0.0.1:{port}")
    try:
        broker.services("up")
        yield broker.bootstrap
    finally:
        subprocess.run(["bash", str(SERVICES), "down", "kafka"], env=env, cwd=REPO,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
