"""The `faust -A streams.cli.faust_app worker` entry point: Escalator's Faust app, wired from
the ESCALATOR_* settings as `escalator worker --runtime faust` wires it from its flags."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from streams.cli.errors import UserError
from streams.cli.main import cli_settings, policy_arg
from streams.cli.preflight import pipeline_topics
from streams.runtime.faust_runtime import (
    EVENT_TIME_ENV,
    PREFIX_ENV,
    FaustRuntime,
    ensure_clock_topic,
    guarantee,
)
from streams.runtime.settings import ConfigError
from streams.runtime.worker import changelog_topic


def from_environment(env: Mapping[str, str] | None = None) -> FaustRuntime:
    """The runtime `faust -A streams.cli.faust_app worker` loads: settings from ESCALATOR_*, plus
    ESCALATOR_EVENT_TIME=on and ESCALATOR_TOPIC_PREFIX in place of the CLI's flags."""
    env = os.environ if env is None else env
    try:
        guarantee(env)
        settings = cli_settings()
        prefix = env.get(PREFIX_ENV) or ""
        if prefix:
            settings = replace(settings, app_id=f"{prefix}{settings.app_id}")
        policy = policy_arg(settings.policy_file)
        topics = pipeline_topics(settings, prefix, [changelog_topic(settings)])
        ensure_clock_topic(settings, topics)
    except (UserError, ConfigError) as exc:
        sys.stderr.write(f"escalator worker: {exc}\n")
        raise SystemExit(2) from None
    return FaustRuntime(settings, policy, topics, (env.get(EVENT_TIME_ENV) or "") == "on")


_runtime: FaustRuntime | None = None


def current() -> FaustRuntime:
    """The process's runtime from the environment, built once (extensions add to its app)."""
    global _runtime
    if _runtime is None:
        _runtime = from_environment()
    return _runtime


def __getattr__(name: str) -> Any:
    """`app` is built on first use, so importing this module connects to nothing."""
    if name == "app":
        return current().app
    raise AttributeError(name)
