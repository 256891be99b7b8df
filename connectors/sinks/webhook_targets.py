"""Webhook targets: who receives which escalation, what they receive and how it is signed.

The targets file (ESCALATOR_WEBHOOK_TARGETS_FILE, rendered by the Helm chart from
`sinks.webhook.targets`) is YAML, validated on load like the policy file: errors name the
file, the line and the field. Everything here is pure (no I/O, no clock), so routing,
message format, signatures and backoff are unit-tested without a network.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import re
import urllib.parse
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streams.sla.actions import Kind, Reason
from streams.sla.events import format_ts
from streams.sla.policy import Problem, YamlFileError, validate_yaml

ESCALATIONS: Final = "escalations"
PRIORITY_BUMPS: Final = "priority-bumps"
SCHEMAS: Final = {ESCALATIONS: "Escalation", PRIORITY_BUMPS: "PriorityBump"}
TopicName = Literal["escalations", "priority-bumps"]

SIGNATURE_VERSION: Final = "v1"
TIMESTAMP_HEADER: Final = "X-Escalator-Timestamp"
SIGNATURE_HEADER: Final = "X-Escalator-Signature"
EVENT_HEADER: Final = "X-Escalator-Event"
ID_HEADER: Final = "X-Escalator-Escalation-Id"
ATTEMPT_HEADER: Final = "X-Escalator-Delivery-Attempt"
EVENTS: Final = {ESCALATIONS: "escalation", PRIORITY_BUMPS: "priority-bump"}

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Target(BaseModel):
    """One receiver. Conditions that are given must all hold (AND); each lists accepted values
    (OR). `teams`, `levels`, `min_level` and `kinds` filter escalations only: priority bumps
    carry none of these, so a target listing `priority-bumps` gets every bump (whose reason
    it accepts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="metric label and DLQ field: letters, digits, _ . -")
    url: str
    topics: list[TopicName] = Field(default=["escalations"], min_length=1)
    teams: list[str] | None = None
    levels: list[int] | None = None
    min_level: int | None = Field(default=None, ge=0)
    kinds: list[Kind] | None = None
    reasons: list[Reason] | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_s: float = Field(default=0.5, gt=0, le=3600)
    backoff_cap_s: float = Field(default=60.0, gt=0, le=3600)
    concurrency: int = Field(default=4, ge=1, le=256)
    max_pending: int = Field(
        default=200, ge=1, le=100_000,
        description="deliveries waiting or retrying for this target; more park at once",
    )  # fmt: skip
    circuit_failures: int = Field(
        default=20, ge=1, le=10_000,
        description="consecutive failed requests that open the circuit",
    )  # fmt: skip
    circuit_open_s: float = Field(
        default=30.0, gt=0, le=86_400,
        description="how long an open circuit parks deliveries before one request probes",
    )  # fmt: skip

    @field_validator("name")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"'{value}': use 1-63 letters, digits, '_', '.' or '-' (it labels metrics)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.password is not None:
            raise ValueError("no password in the URL (requests are signed instead)")
        return value

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Target:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must not be below backoff_base_s")
        return self

    def accepts(self, topic: str, record: Mapping[str, Any]) -> bool:
        """Does this target want `record` read from `topic` (a base name, no prefix)?"""
        if topic not in self.topics:
            return False
        if self.reasons is not None and record["reason"] not in self.reasons:
            return False
        if topic != ESCALATIONS:
            return True
        level = record["level"]
        return (
            (self.teams is None or record["target"] in self.teams)
            and (self.levels is None or level in self.levels)
            and (self.min_level is None or level >= self.min_level)
            and (self.kinds is None or record["kind"] in self.kinds)
        )


class TargetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[Target]


class TargetsError(YamlFileError):
    """All problems of one webhook targets file, each with its line and field."""


def parse_targets(text: str, source: str = "<targets>") -> list[Target]:
    """Validate a targets file; raise TargetsError naming file, line and field."""
    spec, lines = validate_yaml(
        text, source, TargetsFile, what="the webhook targets file", error_class=TargetsError
    )
    if not spec.targets:
        line = lines.get(("targets",))
        raise TargetsError(source, [Problem(("targets",), "no targets: add at least one", line)])
    seen: set[str] = set()
    for i, target in enumerate(spec.targets):
        if target.name in seen:
            path = ("targets", i, "name")
            problem = Problem(
                path, f"'{target.name}' is used twice; names must differ", lines[path]
            )
            raise TargetsError(source, [problem])
        seen.add(target.name)
    return spec.targets


def load_targets(path: str | Path) -> list[Target]:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise TargetsError(str(path), [Problem((), f"cannot read: {exc.strerror}")]) from None
    return parse_targets(text, str(path))


# --------------------------------------------------------------------------- message


def _when(ms: int) -> str:
    return format_ts(ms)[:19].replace("T", " ") + " UTC"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


def message(topic: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Slack-compatible body ({"text", "blocks"}) for a record read from `topic`; the record
    itself, as decoded from Avro (timestamps in epoch ms), is under "escalator" for machines."""
    ticket = record["ticket_id"]
    if topic == ESCALATIONS:
        text = (
            f"Escalation: ticket {ticket} to L{record['level']} {record['target']} "
            f"({record['reason']}), due {_when(record['due_at'])}"
        )
        fields = [
            _field("Ticket", ticket),
            _field("Level", f"L{record['from_level']} → L{record['level']}"),
            _field("Target", record["target"]),
            _field("Reason", record["reason"]),
            _field("Due", _when(record["due_at"])),
            _field("Fired", _when(record["fired_at"])),
        ]
        context = (
            f"{record['kind']} · policy {record['policy']} · rule {record['rule']} · "
            f"id {record['escalation_id']}"
        )
    else:
        text = (
            f"Priority of ticket {ticket} raised from {record['old_priority']} to "
            f"{record['new_priority']} ({record['reason']})"
        )
        fields = [
            _field("Ticket", ticket),
            _field("Priority", f"{record['old_priority']} → {record['new_priority']}"),
            _field("Reason", record["reason"]),
            _field("Fired", _when(record["fired_at"])),
        ]
        context = f"escalation id {record['escalation_id']}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
        "escalator": {"event": EVENTS[topic], "schema": SCHEMAS[topic], "record": dict(record)},
    }


# --------------------------------------------------------------------------- signature


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the X-Escalator-Signature value."""
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(
    key: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: the timestamp is recent (replay window) and one of the
    comma-separated signatures matches, compared in constant time."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign(key, int(timestamp), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


# --------------------------------------------------------------------------- retries

Verdict = Literal["delivered", "retry", "reject"]


def verdict(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx retried; any other status (4xx, redirects) rejected."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "reject"


def backoff(
    failures: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(failures-1))) seconds."""
    exponent = min(failures - 1, 63)
    return rand() * min(cap, base * math.pow(2, exponent))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class Circuit:
    """One target's circuit breaker, so a dead or hung target stops holding messages (and the
    commit window) hostage: after `failures` consecutive failed requests it opens, and for
    `open_s` every delivery to the target parks at once. Then one request probes (half-open):
    a success closes the circuit, a failure opens it again."""

    def __init__(self, failures: int, open_s: float, clock: Callable[[], float]) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @classmethod
    def of(cls, target: Target, clock: Callable[[], float]) -> Circuit:
        return cls(target.circuit_failures, target.circuit_open_s, clock)

    def allow(self) -> bool:
        """May a request go out now? While half-open, only the one probe may."""
        if self.opened_at is None:
            return True
        if self.probing or self.clock() - self.opened_at < self.open_s:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = self.clock(), False

    def why(self) -> str:
        return f"circuit open after {self.failures} consecutive failed requests"
