"""Who may post to `escalator ingest`, and how fast: per-source tokens, Zendesk signatures and
a per-client rate limit. Pure (the clock is passed in), so each rule is unit-tested.

The tokens file (ESCALATOR_INGEST_TOKENS_FILE, a mounted Secret) maps a source name to its
token and to the endpoints it may post, so a leaked Freshdesk token cannot post native events::

    sources:
      freshdesk: {token: "...", endpoints: [freshdesk]}
      backfill: {token: "...", endpoints: [events, batch]}

It is validated on load like the policy file (errors name the file, line and field). The single
ESCALATOR_INGEST_TOKEN keeps working: it is the source `default`, allowed on every endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.sla.policy import Problem, YamlFileError, validate_yaml

Endpoint = Literal["events", "batch", "zendesk", "freshdesk"]
ENDPOINTS: Final[tuple[Endpoint, ...]] = ("events", "batch", "zendesk", "freshdesk")
DEFAULT_SOURCE: Final = "default"
ZENDESK_SIGNATURE_HEADER: Final = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP_HEADER: Final = "X-Zendesk-Webhook-Signature-Timestamp"
MIN_TOKEN_CHARS: Final = 16

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Denied(Exception):
    """Refused: ``status`` 401 (who are you?) or 403 (not here)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=MIN_TOKEN_CHARS, repr=False)
    endpoints: list[Endpoint] = Field(min_length=1)


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, Source] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _names(cls, value: dict[str, Source]) -> dict[str, Source]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"'{name}': use 1-63 letters, digits, '_', '.' or '-'")
        return value


class TokensError(YamlFileError):
    """All problems of one ingest tokens file, each with its line and field."""


def parse_tokens(text: str, source: str = "<tokens>") -> dict[str, Source]:
    """Validate a tokens file; raise TokensError naming file, line and field."""
    spec, lines = validate_yaml(
        text, source, TokensFile, what="the ingest tokens file", error_class=TokensError
    )
    seen: dict[str, str] = {}
    for name, entry in spec.sources.items():
        if entry.token in seen:
            path = ("sources", name, "token")
            problem = Problem(path, f"same token as source '{seen[entry.token]}'", lines.get(path))
            raise TokensError(source, [problem])
        seen[entry.token] = name
    return dict(spec.sources)


def load_tokens(path: str | Path) -> dict[str, Source]:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise TokensError(str(path), [Problem((), f"cannot read: {exc.strerror}")]) from None
    return parse_tokens(text, str(path))


@dataclass(frozen=True)
class Access:
    """Bearer tokens by source. No sources at all: authentication is off (--insecure-no-auth)."""

    sources: Mapping[str, Source]

    @classmethod
    def build(cls, token: str | None, sources: Mapping[str, Source] | None) -> Access:
        merged = dict(sources or {})
        if token is not None:
            merged.setdefault(DEFAULT_SOURCE, Source.model_construct(
                token=token, endpoints=list(ENDPOINTS)))  # fmt: skip
        return cls(merged)

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    def authorize(self, header: str, endpoint: Endpoint | None) -> str | None:
        """The source a request's Authorization header names (None: authentication is off);
        raises Denied. Every token is compared, in constant time, whichever matches. An
        endpoint of None (no such route) only needs a valid token."""
        if not self.sources:
            return None
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Denied(401, "missing bearer token (Authorization: Bearer <token>)")
        raw = given.strip().encode()
        found = None
        for name, source in self.sources.items():
            if hmac.compare_digest(raw, source.token.encode()):
                found = name
        if found is None:
            raise Denied(401, "wrong bearer token")
        if endpoint is not None and endpoint not in self.sources[found].endpoints:
            raise Denied(403, f"the token of source '{found}' may not post to {endpoint}")
        return found


def zendesk_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """What Zendesk sends in X-Zendesk-Webhook-Signature: base64 HMAC-SHA256 of timestamp+body."""
    digest = hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check_zendesk(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    window_s: float,
) -> None:
    """Raise Denied(401) unless the request carries Zendesk's signature of this body, made
    within `window_s` of `now` (a replayed old request fails)."""
    signature = headers.get(ZENDESK_SIGNATURE_HEADER)
    stamp = headers.get(ZENDESK_TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise Denied(401, f"missing {ZENDESK_SIGNATURE_HEADER} or {ZENDESK_TIMESTAMP_HEADER}")
    try:
        when = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Denied(401, f"{ZENDESK_TIMESTAMP_HEADER} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise Denied(401, f"{ZENDESK_TIMESTAMP_HEADER} has no time zone")
    if abs(now - when.timestamp()) > window_s:
        raise Denied(401, f"{ZENDESK_TIMESTAMP_HEADER} is outside the {window_s:g}s window")
    expected = zendesk_signature(secret, stamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Denied(401, f"wrong {ZENDESK_SIGNATURE_HEADER}")


class RateLimiter:
    """A token bucket per client: `rate` requests a second on average, `burst` at once. The
    busiest `max_clients` are kept (least recently seen dropped first), so many addresses
    cannot grow it without bound."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], max_clients: int = 10_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, client: str) -> int:
        """0 when the request may go now (and it is counted), else the whole seconds after
        which it may (the Retry-After value)."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            wait = 0
        else:
            self._buckets[client] = (tokens, now)
            wait = max(1, math.ceil((1 - tokens) / self.rate))
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait
