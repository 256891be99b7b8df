"""`escalator explain`: one ticket's timeline in plain words, told from what the engine did.

The real engine runs the ticket's events in event time, one due instant at a time (as the
backtest's driver does), and each step is described from the state before and after it:
which SLA policy matched and on which keys, each clock's start, pauses, resumes and stop,
when its next threshold falls due and the business-time arithmetic behind that instant
(the calendar's closed spans skipped), and the escalations, reminders and bumps that fired.
No rule is evaluated here: every fact comes from the engine's state and actions, or from the
policy's calendars. The JSON form holds the same steps, each with its text lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streams.sla.actions import Action, Escalation, PriorityBump, Reminder, Silenced
from streams.sla.calendar import BusinessCalendar
from streams.sla.engine import Engine
from streams.sla.events import TicketEvent, event_to_dict, format_ts
from streams.sla.policy import Policy, SlaPolicy
from streams.sla.state import Clock, TicketState

_SPANS_TOLD = 4  # closed spans a text line names; more are counted
_KEYS = ("tier", "priority", "channel", "category", "tags", "group")
_CLOCK_FIELDS = ("round", "resets", "started_at", "elapsed", "running_since", "target",
                 "last_fraction", "next_at", "breached_at", "ended_at", "met")  # fmt: skip


def duration(ms: int) -> str:
    """A duration as an operator reads it: 1h30m, 45m, 40h, 0m; seconds only if present.
    No days: a day of business time is not 24 hours, so hours say it unambiguously."""
    if ms <= 0:
        return "0m"
    parts = []
    rest = ms // 1000
    for unit, size in (("h", 3_600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or f"{ms}ms"


def local(ms: int, tz: ZoneInfo) -> str:
    """``Mon 2026-03-09 10:00 EDT``: an instant in the calendar's own zone."""
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    clock = moment.strftime("%H:%M" if moment.second == 0 else "%H:%M:%S")
    return f"{moment.strftime('%a %Y-%m-%d')} {clock} {moment.tzname()}"


def _zone(calendar: BusinessCalendar) -> ZoneInfo:
    return ZoneInfo(calendar.timezone)


def _closed_label(calendar: BusinessCalendar, start: int, end: int) -> str:
    """Why a closed span is closed: a holiday, a weekend or closed weekday, or the night."""
    tz = _zone(calendar)
    first = datetime.fromtimestamp(start / 1000, UTC).astimezone(tz).date()
    last = datetime.fromtimestamp((end - 1) / 1000, UTC).astimezone(tz).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    holidays = [d for d in days if d in calendar.holidays]
    if holidays:
        return "holiday " + ", ".join(d.isoformat() for d in holidays)
    if any(d.weekday() >= 5 and d.weekday() not in calendar.hours for d in days):
        return "weekend skipped"
    if any(d.weekday() not in calendar.hours for d in days):
        return "closed day skipped"
    return "overnight" if len(days) > 1 else "closed hours"


def _offsets(calendar: BusinessCalendar, start: int, end: int) -> str:
    tz = _zone(calendar)
    a = datetime.fromtimestamp(start / 1000, UTC).astimezone(tz).tzname()
    b = datetime.fromtimestamp(end / 1000, UTC).astimezone(tz).tzname()
    return "" if a == b else f"; the clocks changed from {a} to {b} in between"


def business_span(calendar: BusinessCalendar, start: int, end: int) -> dict[str, Any]:
    """What business time from `start` to `end` skipped, with the closed spans named."""
    tz = _zone(calendar)
    closed = calendar.closed_spans(start, end)
    skipped = [
        {
            "from": format_ts(s),
            "until": format_ts(e),
            "why": _closed_label(calendar, s, e),
            "text": f"{local(s, tz)} to {local(e, tz)} ({_closed_label(calendar, s, e)})",
        }
        for s, e in closed
    ]
    return {"skipped": skipped, "business_ms": calendar.between(start, end)}


# ---------------------------------------------------------------------- SLA policy matching


def _ticket_keys(state: TicketState) -> dict[str, Any]:
    return {
        "tier": state.tier,
        "priority": state.priority.value,
        "channel": state.channel,
        "category": state.category,
        "tags": sorted(state.tags),
        "group": state.group,
    }


def match_reasons(policy: Policy, state: TicketState) -> dict[str, Any]:
    """The SLA policy the engine chose for the ticket and why: the keys of the policy that
    matched, and for each policy before it (first match wins) the key the ticket failed."""
    keys = _ticket_keys(state)
    chosen = _sla(policy, state)
    skipped: list[dict[str, Any]] = []
    matched: list[str] = []
    for sla in policy.sla_policies:
        found = _key_checks(sla, keys)
        failed = [text for ok, text in found if not ok]
        if sla.name == chosen.name:
            matched = [text for ok, text in found if ok]
            break
        skipped.append({"policy": sla.name, "failed": failed})
    why = ", ".join(matched) if matched else "matches every ticket"
    if chosen.match.is_catch_all() and skipped:
        why = "no earlier policy matched; this one matches every ticket"
    text = f"SLA policy {chosen.name}: {why}"
    return {"policy": chosen.name, "keys": keys, "matched": matched, "skipped": skipped,
            "text": text}  # fmt: skip


def _sla(policy: Policy, state: TicketState) -> SlaPolicy:
    try:
        return policy.sla(state.policy)
    except KeyError:
        raise ValueError(
            f"ticket {state.ticket_id!r} is under SLA policy {state.policy!r}, which"
            f" {policy.source} does not have: explain it with the deployment's policy file"
        ) from None


def _key_checks(sla: SlaPolicy, keys: dict[str, Any]) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for key in _KEYS:
        allowed = getattr(sla.match, key)
        if allowed is None:
            continue
        accepted = [str(v) for v in allowed]
        value = keys[key]
        if key == "tags":
            hit = sorted(set(value) & set(accepted))
            ok = bool(hit)
            shown = ",".join(hit if ok else value) or "none"
        else:
            ok = value in accepted
            shown = str(value)
        verb = "in" if ok else "not in"
        out.append((ok, f"{key} {shown} {verb} [{', '.join(accepted)}]"))
    return out


# ---------------------------------------------------------------------- clocks


def _snapshot(state: TicketState | None) -> dict[str, dict[str, Any]]:
    if state is None:
        return {}
    return {
        metric: {name: getattr(clock, name) for name in _CLOCK_FIELDS}
        for metric, clock in state.clocks.items()
    }


class Explainer:
    """Describes engine steps of one ticket against one policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.engine = Engine(policy)

    def calendar_of(self, state: TicketState) -> tuple[SlaPolicy, BusinessCalendar]:
        spec = _sla(self.policy, state)
        return spec, self.policy.calendar(spec.calendar)

    def due_line(self, state: TicketState, clock: Clock) -> dict[str, Any] | None:
        """When a running clock's next threshold falls due, and the arithmetic behind it."""
        since, target, at = clock.running_since, clock.target, clock.next_at
        if clock.ended_at is not None or since is None or target is None or at is None:
            return None
        spec, calendar = self.calendar_of(state)
        tz = _zone(calendar)
        fraction = next((f for f in (*spec.warn_at, 1.0) if f > clock.last_fraction), 1.0)
        need = round(target * fraction)
        left = need - clock.elapsed
        what = "breach" if fraction >= 1.0 else f"warning at {round(fraction * 100)}%"
        data: dict[str, Any] = {
            "threshold": fraction,
            "due_at": format_ts(at),
            "from": format_ts(since),
            "business_ms": max(left, 0),
            "elapsed_before_ms": clock.elapsed,
            "calendar": spec.calendar,
        }
        if left <= 0 or at <= since:
            data["text"] = f"{clock.metric} {what} due at once ({local(at, tz)}): already past"
            data["skipped"] = []
            return data
        span = business_span(calendar, since, at)
        data["skipped"] = span["skipped"]
        counted = f", {duration(clock.elapsed)} counted before" if clock.elapsed else ""
        share = "" if fraction >= 1.0 else f" ({round(fraction * 100)}% of {duration(target)})"
        if calendar.is_always_open:
            how = f"calendar {spec.calendar}: every hour counts"
        elif span["skipped"]:
            told = [s["text"] for s in span["skipped"]]
            if len(told) > _SPANS_TOLD:  # the JSON lists them all
                more = len(told) - _SPANS_TOLD + 1
                told = [*told[: _SPANS_TOLD - 1], f"and {more} more closed spans"]
            how = "skipped: " + "; ".join(told)
        else:
            how = f"all within {spec.calendar} hours"
        data["text"] = (
            f"{clock.metric} {what} due {local(at, tz)}: {duration(left)} of business time"
            f"{share} from {local(since, tz)}{counted}; {how}{_offsets(calendar, since, at)}"
        )
        if fraction < 1.0:
            breach = calendar.add(since, target - clock.elapsed)
            data["breach_at"] = format_ts(breach)
            data["text"] += f"; breach due {local(breach, tz)} unless it stops"
        return data

    def clock_changes(
        self, before: dict[str, dict[str, Any]], state: TicketState, at: int
    ) -> list[dict[str, Any]]:
        """Each clock's start, pause, resume, stop, retarget and new due time in this step."""
        _, calendar = self.calendar_of(state)
        tz = _zone(calendar)
        out: list[dict[str, Any]] = []
        for metric in sorted(state.clocks):
            clock = state.clocks[metric]
            old = before.get(metric)
            now = {name: getattr(clock, name) for name in _CLOCK_FIELDS}
            if old == now:
                continue
            fresh = old is None or (old["round"], old["resets"]) != (now["round"], now["resets"])
            name = metric if not clock.round else f"{metric} (round {clock.round})"
            lines: list[str] = []
            change = "updated"
            if fresh:
                change = "started"
                target = (
                    "no target (not measured)"
                    if clock.target is None
                    else (
                        f"target {duration(clock.target)} of business time ({state.priority.value},"
                        f" policy {state.policy})"
                    )
                )
                paused = (
                    ""
                    if clock.running_since is not None or clock.ended_at
                    else (f", paused at once (status {state.status.value})")
                )
                started = local(clock.started_at, tz)
                lines.append(f"{name} clock started {started}: {target}{paused}")
            elif old is not None:
                if (
                    clock.ended_at is None
                    and old["running_since"] is not None
                    and (clock.running_since is None)
                ):
                    change = "paused"
                    lines.append(
                        f"{name} clock paused at {local(at, tz)} (status {state.status.value}):"
                        f" {duration(clock.elapsed)} of business time counted"
                        + ("" if clock.target is None else
                           f", {duration(max(clock.target - clock.elapsed, 0))} left")
                    )  # fmt: skip
                elif (
                    clock.ended_at is None
                    and old["running_since"] is None
                    and (clock.running_since is not None)
                ):
                    change = "resumed"
                    lines.append(
                        f"{name} clock resumed at {local(clock.running_since, tz)}"
                        f" (status {state.status.value}): {duration(clock.elapsed)} counted so far"
                    )
                if old["target"] != clock.target and clock.ended_at is None:
                    lines.append(
                        f"{name} target now {duration(clock.target or 0)}"
                        f" (was {duration(old['target'] or 0)}): priority {state.priority.value},"
                        f" policy {state.policy}"
                    )
                if old["breached_at"] is None and clock.breached_at is not None:
                    lines.append(f"{name} breached at {local(clock.breached_at, tz)}")
            if clock.ended_at is not None and (fresh or old is None or old["ended_at"] is None):
                change = "stopped"
                verdict = (
                    "breached"
                    if clock.breached_at is not None
                    else ("met" if clock.met else "stopped without being met")
                )
                of = "" if clock.target is None else f" of {duration(clock.target)}"
                lines.append(
                    f"{name} clock stopped {local(clock.ended_at, tz)}: {verdict},"
                    f" {duration(clock.elapsed)} of business time{of}"
                )
            due = self.due_line(state, clock)
            if due is not None and (old is None or old["next_at"] != clock.next_at or fresh):
                lines.append(due["text"])
            if not lines:
                continue
            entry: dict[str, Any] = {"metric": metric, "round": clock.round, "change": change,
                                     "clock": clock.to_dict(), "text": lines}  # fmt: skip
            if due is not None:
                entry["due"] = due
            out.append(entry)
        return out

    # ------------------------------------------------------------------ actions

    def rule_meaning(self, rule: str, from_level: int) -> str:
        base = rule.split("|", 1)[0]
        if base.startswith("sla:"):
            parts = base.split(":")
            metric, step = parts[1], parts[-1]
            if step.startswith("warn"):
                return f"{step[4:]}% of the {metric.split('#')[0]} target reached"
            if step == "priority":
                return f"{metric} priority rule"
            return f"the {metric.split('#')[0].split('~')[0]} target was missed"
        if base == "matrix:unanswered":
            climb = self.policy.climb(from_level)
            allowed = "" if climb is None else f" ({duration(climb[0])}, calendar {climb[1].name})"
            return f"the L{from_level} escalation stayed unanswered for its allowed time{allowed}"
        if base.startswith("matrix:repeat"):
            return "the matrix top was reached unanswered: it starts again at L2"
        if base.startswith("trigger:"):
            name = base[8:].split("#")[0].split(":")[0]
            trigger = next((t for t in self.policy.spec.triggers if t.name == name), None)
            if trigger is None:
                return f"trigger {name}"
            when = trigger.when.model_dump(mode="json", exclude_none=True)
            conds = ", ".join(f"{k}={v}" for k, v in sorted(when.items()))
            return f"trigger {name} (when {conds})"
        if base.startswith(("functional:", "chain:")):
            chain, _, step = base.partition("#")
            return f"step {step} of the {chain} chain: the step before stayed unanswered"
        return base

    def action_text(self, action: Action, tz: ZoneInfo) -> tuple[str, str]:
        """(what the action is, as the backtest's --out file names it; its plain words)."""
        if isinstance(action, Escalation):
            raised = (
                f" (L{action.from_level} -> L{action.level})"
                if action.level != action.from_level else f" (at L{action.level})"
            )  # fmt: skip
            kind = "warning" if action.reason.value == "SLA_WARNING" else "escalation"
            return "escalation", (
                f"{kind} {action.reason.value} to {action.target}, level {action.level}"
                f"{raised}, {action.kind.value}: rule {action.rule} ="
                f" {self.rule_meaning(action.rule, action.from_level)}"
                f"; due {local(action.due_at, tz)}, id {action.escalation_id}"
            )
        if isinstance(action, Reminder):
            return "reminder", (
                f"reminder {action.reason.value} to {action.target}: rule {action.rule} ="
                f" {self.rule_meaning(action.rule, 0)}; due {local(action.due_at, tz)}"
            )
        if isinstance(action, PriorityBump):
            return "priority_bump", (
                f"priority bump {action.old_priority} -> {action.new_priority}:"
                f" {action.reason.value} (escalation {action.escalation_id})"
            )
        if isinstance(action, Silenced):
            return "silenced", (
                f"not sent ({action.action} {action.reason.value}, rule {action.rule},"
                f" level {action.level}): due before the backfill horizon"
            )
        return "sla_outcome", ""  # told by the clock's stop

    def action_lines(self, actions: Sequence[Action], tz: ZoneInfo) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for action in actions:
            name, text = self.action_text(action, tz)
            if name == "sla_outcome":
                continue
            entry = {"action": name, **action.to_dict(), "text": text}
            for key in ("kind", "reason"):
                if key in entry and entry[key] is not None:
                    entry[key] = str(entry[key])
            out.append(entry)
        return out

    # ------------------------------------------------------------------ steps

    def step(
        self,
        kind: str,
        at: int,
        before_state: dict[str, dict[str, Any]],
        before_policy: str | None,
        state: TicketState,
        actions: list[Action],
        event: TicketEvent | None = None,
    ) -> dict[str, Any]:
        _, calendar = self.calendar_of(state)
        tz = _zone(calendar)
        text: list[str] = []
        entry: dict[str, Any] = {"kind": kind, "at": format_ts(at), "at_local": local(at, tz)}
        if event is not None:
            entry["event"] = event_to_dict(event)
            text.append(f"{local(at, tz)}  {describe_event(event)}")
            match = match_reasons(self.policy, state)
            if before_policy is not None and before_policy != state.policy:
                match["text"] += f" (was {before_policy})"
            entry["sla_policy"] = match
            text.append("  " + match["text"])
            if before_policy != state.policy:
                for skip in match["skipped"]:
                    text.append(f"    not {skip['policy']}: {'; '.join(skip['failed'])}")
        else:
            text.append(f"{local(at, tz)}  deadline (no event): the engine's due work")
        clocks = self.clock_changes(before_state, state, at)
        entry["clocks"] = clocks
        text += ["  " + line for c in clocks for line in c["text"]]
        acts = self.action_lines(actions, tz)
        entry["actions"] = acts
        text += ["  " + a["text"] for a in entry["actions"]]
        entry["level"] = state.level
        entry["text"] = text
        return entry

    def summary(self, state: TicketState, at: int) -> dict[str, Any]:
        """Where the ticket stands at `at`: status, level, each open clock and what is due."""
        spec, calendar = self.calendar_of(state)
        tz = _zone(calendar)
        match = match_reasons(self.policy, state)
        text = [
            f"{local(at, tz)}  state: status {state.status.value}, priority"
            f" {state.priority.value}, level L{state.level}, cycle {state.cycle}",
            "  " + match["text"],
        ]
        clocks = []
        for metric in sorted(state.clocks):
            clock = state.clocks[metric]
            info: dict[str, Any] = {"metric": metric, "clock": clock.to_dict()}
            if clock.ended_at is not None:
                verdict = (
                    "breached"
                    if clock.breached_at is not None
                    else ("met" if clock.met else "stopped")
                )
                info["text"] = (
                    f"{metric}: {verdict} at {local(clock.ended_at, tz)},"
                    f" {duration(clock.elapsed)} of business time"
                )
            else:
                running = clock.running_since
                counted = clock.elapsed
                if running is not None and at > running:
                    counted += calendar.between(running, at)
                how = "running" if running is not None else "paused"
                of = "" if clock.target is None else f" of {duration(clock.target)}"
                breached = (
                    "" if clock.breached_at is None
                    else f", breached at {local(clock.breached_at, tz)}"
                )  # fmt: skip
                info["text"] = f"{metric}: {how}, {duration(counted)}{of} counted{breached}"
                due = self.due_line(state, clock)
                if due is not None:
                    info["due"] = due
                    info["text"] += f"; {due['text']}"
            clocks.append(info)
            text.append("  " + info["text"])
        if state.awaiting_since is not None:
            climb = self.policy.climb(state.level)
            text.append(
                f"  the L{state.level} escalation is unanswered since"
                f" {local(state.awaiting_since, tz)}"
                + ("" if climb is None else f"; it climbs after {duration(climb[0])}")
            )
        fired = sorted(state.fired)
        if fired:
            text.append("  fired this cycle: " + ", ".join(fired))
        if state.next_due is not None:
            text.append(f"  next due work: {local(state.next_due, tz)}")
        return {"kind": "state", "at": format_ts(at), "at_local": local(at, tz),
                "status": state.status.value, "priority": state.priority.value,
                "level": state.level, "sla_policy": match, "clocks": clocks,
                "fired": fired, "calendar": spec.calendar,
                "next_due": None if state.next_due is None else format_ts(state.next_due),
                "text": text}  # fmt: skip


def describe_event(event: TicketEvent) -> str:
    parts = [f"{event.type.value} ({event.event_id})"]
    for key in ("status", "priority"):
        value = getattr(event, key)
        if value is not None:
            parts.append(f"{key} {value.value}")
    for key in ("customer_tier", "channel", "category", "group", "assignee_id"):
        value = getattr(event, key)
        if value:
            parts.append(f"{key.replace('customer_', '')} {value}")
    if event.tags_added:
        parts.append("tags +" + ",+".join(event.tags_added))
    if event.tags_removed:
        parts.append("tags -" + ",-".join(event.tags_removed))
    if event.csat is not None:
        parts.append(f"csat {event.csat}")
    return " ".join(parts)


def explain_events(
    policy: Policy, events: Iterable[TicketEvent], until: int | None = None
) -> dict[str, Any]:
    """Run one ticket's events through the engine in event time and describe each step.

    Like the backtest, due work fires at each due instant before the next event, and after
    the last one up to `until` (the history's end)."""
    ordered = sorted(events, key=lambda e: e.occurred_at)  # stable: ties keep file order
    if not ordered:
        raise ValueError("no events for this ticket")
    explainer = Explainer(policy)
    engine = explainer.engine
    state: TicketState | None = None
    steps: list[dict[str, Any]] = []

    def deadlines(upto: int) -> None:
        nonlocal state
        while state is not None and state.next_due is not None and state.next_due <= upto:
            at = state.next_due
            before = _snapshot(state)
            policy_before = state.policy
            state, out = engine.advance(state, at, -1, True)
            steps.append(explainer.step("deadline", at, before, policy_before, state, out))

    for event in ordered:
        deadlines(event.occurred_at)
        before = _snapshot(state)
        policy_before = None if state is None else state.policy
        if state is not None and event.event_id in state.seen:
            continue  # a redelivery: the engine ignores it
        state, out = engine.apply(state, event)
        steps.append(
            explainer.step("event", event.occurred_at, before, policy_before, state, out, event)
        )
    assert state is not None
    end = max(until if until is not None else -1, ordered[-1].occurred_at)
    deadlines(end)
    return {
        "ticket_id": ordered[0].ticket_id,
        "policy_source": policy.source,
        "source": "history",
        "events": len(ordered),
        "steps": steps,
        "end": explainer.summary(state, end),
    }


def explain_state(policy: Policy, state: TicketState, source: str) -> dict[str, Any]:
    """A ticket's current state as a running deployment holds it (--live)."""
    return {
        "ticket_id": state.ticket_id,
        "policy_source": policy.source,
        "source": source,
        "steps": [],
        "end": Explainer(policy).summary(state, state.clock_at),
    }


def format_explanation(data: dict[str, Any]) -> str:
    head = f"ticket {data['ticket_id']} under {data['policy_source']}"
    if data["source"] == "history":
        head += f": {data['events']} events, in event time"
    else:
        head += f": current state from {data['source']}"
    lines = [head, ""]
    for step in data["steps"]:
        lines += step["text"]
    if data["steps"]:
        lines.append("")
    lines += data["end"]["text"]
    return "\n".join(lines) + "\n"


def events_of(path: str, ticket_id: str) -> tuple[list[TicketEvent], int | None]:
    """The ticket's events in a history file, and the history's last event time (where the
    backtest stops its clock)."""
    from streams.tools.history import LineError, read_history

    found: list[TicketEvent] = []
    latest: int | None = None
    for item in read_history(path):
        if isinstance(item, LineError):
            continue
        if latest is None or item.occurred_at > latest:
            latest = item.occurred_at
        if item.ticket_id == ticket_id:
            found.append(item)
    return found, latest


__all__ = ["business_span", "explain_events", "explain_state", "format_explanation"]
