"""`escalator ingest` as a process on the real broker and Redis, and requests to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.runtime.topics import Topics
from streams.tools.demo import free_port
from tests.support.pipeline import REPO

TOKEN = "integration-token-1234"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class IngestProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    topic: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, path: str, body: Any = None, raw: bytes | None = None, token: str | None = TOKEN
    ) -> Reply:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, json.loads(resp.read() or b"{}"), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers))

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ingest exited:\n{self.log.read_text()[-3000:]}")
            try:
                if self.request("/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ingest not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_ingest(tmp_path: Path, bootstrap: str, redis_url: str, **env: str) -> IngestProcess:
    prefix = f"ing{uuid.uuid4().hex[:10]}-"
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATOR_")}
    full_env.update(
        ESCALATOR_KAFKA_BOOTSTRAP=bootstrap,
        ESCALATOR_REDIS_URL=redis_url,
        ESCALATOR_PARTITIONS="3",
        ESCALATOR_INGEST_TOKEN=TOKEN,
        ESCALATOR_INGEST_PORT=str(port),
        ESCALATOR_INGEST_MAX_BYTES="20000",
        ESCALATOR_ENRICH_KEY_PATTERN=f"{prefix}customer:{{customer_id}}",
        ESCALATOR_INGEST_TAGS_PREFIX=f"{prefix}tags:",
        **env,
    )
    log = tmp_path / f"ingest-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "ingest", "--host", "127.0.0.1",
             "--topic-prefix", prefix, "--loglevel", "info"],
            cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ingest = IngestProcess(proc, port, log, Topics(prefix).ticket_events)
    try:
        ingest.wait_ready()
    except BaseException:
        ingest.stop()
        raise
    return ingest
