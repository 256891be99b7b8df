"""Each output record as one line a person watching a screen can read: `escalator tail`, the
demo's feed and the ops-alerts log."""

from __future__ import annotations

from typing import Any

from streams.sla.events import format_ts


def describe(kind: str, record: dict[str, Any]) -> str:
    """One line a person watching a screen can read."""
    if kind == "Escalation":
        due = format_ts(record["due_at"])[:16].replace("T", " ")
        late = (record["emitted_at"] - record["due_at"]) / 1000
        # Detection delay only means something on the live clock (not for a replayed past).
        delay = f" +{late:.2f}s" if 0 <= late < 3600 else ""
        return (
            f"{due}  {record['ticket_id']:<10} {record['kind']:<12} L{record['from_level']}->"
            f"L{record['level']} {record['target']:<30} {record['reason']:<22} "
            f"[{record['policy']}/{record['rule']}]{delay} id={record['escalation_id']}"
        )
    if kind == "PriorityBump":
        return (
            f"{record['ticket_id']:<10} PRIORITY {record['old_priority']} -> "
            f"{record['new_priority']} ({record['reason']}) esc={record['escalation_id']}"
        )
    if kind == "Reminder":
        return f"{record['ticket_id']:<10} REMIND {record['target']} ({record['reason']})"
    if kind == "OpsAlert":
        start = format_ts(record["window_start"])[:16].replace("T", " ")
        end = format_ts(record["window_end"])[11:16]
        return (
            f"{start}-{end}  {record['queue']:<24} {record['kind']:<18} "
            f"{record['observed']:g} (baseline {record['baseline']:g}, threshold "
            f"{record['threshold']:g}) {record['message']} id={record['alert_id']}"
        )
    if kind == "DeadLetter":
        return (
            f"DLQ {record['source_topic']}[{record['partition']}]@{record['offset']} "
            f"{record['error_kind']}: {record['error']}"
        )
    if kind == "WebhookDeadLetter":
        return (
            f"WEBHOOK DLQ {record['source_topic']}[{record['partition']}]@{record['offset']} "
            f"target={record['target'] or '-'} attempts={record['attempts']} "
            f"esc={record['escalation_id'] or '-'}: {record['error']}"
        )
    return " ".join(f"{k}={v}" for k, v in record.items())
