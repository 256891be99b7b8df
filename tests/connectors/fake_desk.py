"""A local Zendesk or Freshdesk for the write-back tests: an HTTP server in a thread that checks
the documented request shapes and the auth, keeps each ticket's tags, priority and notes, and
answers rate limits and server errors on demand."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ZENDESK_PRIORITIES = {"urgent", "high", "normal", "low"}
FRESHDESK_PRIORITIES = {1, 2, 3, 4}


@dataclass
class Ticket:
    tags: list[str] = field(default_factory=list)
    priority: Any = None
    notes: list[str] = field(default_factory=list)


class ShapeError(Exception):
    """A request the real API would refuse (400 with the reason)."""


def _keys(doc: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ShapeError(f"expected an object, got {doc!r}")
    extra = set(doc) - set(allowed)
    missing = set(required) - set(doc)
    if extra or missing:
        raise ShapeError(f"fields {sorted(extra)} not allowed, {sorted(missing)} missing")
    return doc


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ShapeError(f"tags must be a list of strings: {value!r}")
    return value


def _update(ticket: Ticket, update: dict[str, Any], priorities: Iterable[Any]) -> None:
    """A ticket update's priority (one of the desk's `priorities`) and tags."""
    if "priority" in update:
        if update["priority"] not in priorities:
            raise ShapeError(f"priority {update['priority']!r}")
        ticket.priority = update["priority"]
    if "tags" in update:
        ticket.tags = _tags(update["tags"])


class FakeDesk:
    """`desk` is zendesk or freshdesk; `user` the basic-auth user:password it accepts.
    `script` is a list of (method, status, path fragment) answered, in order, before the
    request is handled, by the first request of that method whose path holds the fragment
    ("" for any; 429 with Retry-After: `retry_after`)."""

    def __init__(self, desk: str, user: str, retry_after: str = "1") -> None:
        self.desk = desk
        self.auth = "Basic " + base64.b64encode(user.encode()).decode()
        self.retry_after = retry_after
        self.tickets: dict[str, Ticket] = {}
        self.requests: list[tuple[str, str, int]] = []  # method, path, status
        self.script: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()
        self.unknown_404 = False  # unknown tickets: 404 (else they exist, with no tags)
        desk_ = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer, extra = desk_.handle(self.command, self.path, self.headers, raw)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _any  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        """(method, path) of the successful writes."""
        with self.lock:
            return [(m, p) for m, p, s in self.requests if m != "GET" and s < 300]

    def handle(
        self, method: str, path: str, headers: Any, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            status, answer, extra = self._handle(method, path, headers, raw)
            self.requests.append((method, path, status))
            return status, answer, extra

    def _handle(
        self, method: str, path: str, headers: Any, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if headers.get("Authorization") != self.auth:
            return 401, {"error": "Couldn't authenticate you"}, {}
        for i, (m, status, fragment) in enumerate(self.script):
            if m == method and fragment in path:
                del self.script[i]
                extra = {"Retry-After": self.retry_after} if status == 429 else {}
                return status, {"error": f"scripted {status}"}, extra
        suffix = r"\.json" if self.desk == "zendesk" else ""
        listed = re.fullmatch(r"/api/v2/tickets/(\d+)/conversations\?per_page=(\d+)&page=(\d+)",
                              path)  # fmt: skip
        if listed and self.desk == "freshdesk" and method == "GET":
            return self._conversations(*listed.groups())
        found = re.fullmatch(rf"/api/v2/tickets/(\d+){suffix}(/notes)?", path)
        if not found or (found.group(2) and self.desk == "zendesk"):
            return 404, {"error": f"no route {method} {path}"}, {}
        ticket_id, notes = found.group(1), bool(found.group(2))
        if ticket_id not in self.tickets:
            if self.unknown_404:
                return 404, {"error": "RecordNotFound"}, {}
            self.tickets[ticket_id] = Ticket()
        ticket = self.tickets[ticket_id]
        try:
            if method != "GET" and headers.get("Content-Type") != "application/json":
                raise ShapeError("Content-Type must be application/json")
            body = json.loads(raw) if raw else None
            if self.desk == "zendesk":
                return self._zendesk(method, ticket_id, ticket, body)
            return self._freshdesk(method, notes, ticket_id, ticket, body)
        except (ShapeError, ValueError) as exc:
            return 400, {"error": "InvalidValue", "description": str(exc)}, {}

    def _conversations(self, ticket_id: str, per_page: str, page: str) -> tuple[int, Any, dict]:
        """Freshdesk's list of a ticket's conversations (notes here), `per_page` at most 100."""
        size, number = int(per_page), int(page)
        if not 1 <= size <= 100 or number < 1:
            return 400, {"error": "InvalidValue", "description": "per_page 1-100, page >= 1"}, {}
        notes = self.tickets[ticket_id].notes if ticket_id in self.tickets else []
        chunk = notes[(number - 1) * size : number * size]
        first = (number - 1) * size + 1
        body = [{"id": first + i, "body": f"<div>{text}</div>", "body_text": text,
                 "private": True, "incoming": False} for i, text in enumerate(chunk)]  # fmt: skip
        return 200, body, {}

    def _zendesk(
        self, method: str, ticket_id: str, ticket: Ticket, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "PUT":
            update = _keys(_keys(body, ["ticket"], ["ticket"])["ticket"],
                           ["comment", "tags", "priority"])  # fmt: skip
            if "comment" in update:
                comment = _keys(update["comment"], ["body", "public"], ["body", "public"])
                if comment["public"] is not False or not isinstance(comment["body"], str):
                    raise ShapeError("an internal note is a comment with public: false")
                ticket.notes.append(comment["body"])
            _update(ticket, update, ZENDESK_PRIORITIES)
        elif method != "GET":
            return 405, {"error": method}, {}
        shown = {"id": int(ticket_id), "tags": ticket.tags, "priority": ticket.priority}
        return 200, {"ticket": shown}, {}

    def _freshdesk(
        self, method: str, notes: bool, ticket_id: str, ticket: Ticket, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if notes:
            if method != "POST":
                return 405, {"error": method}, {}
            note = _keys(body, ["body", "private"], ["body", "private"])
            if note["private"] is not True or not isinstance(note["body"], str):
                raise ShapeError("a private note has private: true and a body")
            ticket.notes.append(note["body"])
            return 201, {"id": len(ticket.notes), "body": note["body"], "private": True}, {}
        if method == "PUT":
            update = _keys(body, ["tags", "priority"])
            _update(ticket, update, FRESHDESK_PRIORITIES)
        elif method != "GET":
            return 405, {"error": method}, {}
        return 200, {"id": int(ticket_id), "tags": ticket.tags, "priority": ticket.priority}, {}
