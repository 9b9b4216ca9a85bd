"""Alert state changes and the notifications they owe, written in one transaction.

``active`` → ``acknowledged`` → ``resolved`` (``active`` → ``resolved`` too). Whoever changes
an alert — the engine (fire, remind, auto-resolve) or a user through the API (acknowledge,
resolve) — calls these functions inside its transaction; the notification is enqueued in the
same transaction (the outbox), so the change and the promise to notify commit or vanish
together. Sending happens later (``alerting.dispatch``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from logflow.alerting.payloads import PAYLOAD_VERSION, iso
from logflow.db.models import AlertNotification, AlertRule, TriggeredAlert

OPEN_STATUSES = ("active", "acknowledged")


class TransitionError(Exception):
    """The alert is not in a state that allows this change (e.g. resolving a resolved alert)."""


def rule_snapshot(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.id, "name": rule.name, "description": rule.description, "query": rule.query,
        "condition": rule.condition, "threshold": rule.threshold, "time_window": rule.time_window,
        "levels": list(rule.levels), "services": list(rule.services), "group_by": rule.group_by,
        "repeat_interval": rule.repeat_interval, "channel": rule.notification_channel,
    }


def alert_snapshot(alert: TriggeredAlert) -> dict[str, Any]:
    return {
        "id": alert.id, "rule_id": alert.rule_id, "rule_name": alert.rule_name, "group": alert.group_key,
        "status": alert.status, "triggered_at": iso(alert.triggered_at), "value": alert.value,
        "threshold": alert.threshold, "log_count": alert.log_count,
        "acknowledged_at": iso(alert.acknowledged_at), "acknowledged_by": alert.acknowledged_by,
        "resolved_at": iso(alert.resolved_at), "resolved_by": alert.resolved_by, "notes": alert.notes,
    }


def build_payload(rule: AlertRule, alert: TriggeredAlert, kind: str, seq: int, value: float,
                  samples: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The notification snapshot every channel renders (see ``payloads``); webhooks get it as is."""
    return {
        "version": PAYLOAD_VERSION, "kind": kind, "seq": seq,
        "status": "resolved" if kind == "resolved" else "firing",
        "value": value, "threshold": rule.threshold,
        "rule": rule_snapshot(rule), "alert": alert_snapshot(alert),
        "samples": samples[:5], "search": dict(alert.search or {}), "created_at": iso(now),
    }


def enqueue(session: Session, rule: AlertRule, alert: TriggeredAlert, kind: str, seq: int, value: float,
            samples: list[dict[str, Any]], now: datetime, **extra: Any) -> AlertNotification:
    """Promise a notification: unique per (alert, kind, seq), so it can never be owed twice."""
    payload = build_payload(rule, alert, kind, seq, value, samples, now) | extra
    note = AlertNotification(
        alert_id=alert.id, kind=kind, seq=seq, channel=rule.notification_channel, status="pending",
        payload=payload, created_at=now, next_attempt_at=now,
    )
    session.add(note)
    return note


def open_alerts(session: Session, rule_id: int) -> dict[str, TriggeredAlert]:
    """The rule's open alerts by group key (at most one per group: a unique index ensures it)."""
    rows = session.scalars(select(TriggeredAlert).where(
        TriggeredAlert.rule_id == rule_id, TriggeredAlert.status.in_(OPEN_STATUSES)))
    return {alert.group_key: alert for alert in rows}


def fire(session: Session, rule: AlertRule, group_key: str, value: int, samples: list[dict[str, Any]],
         search: dict[str, Any], now: datetime) -> TriggeredAlert:
    """Open a new alert for ``group_key`` and owe its ``firing`` notification."""
    alert = TriggeredAlert(
        rule_id=rule.id, rule_name=rule.name, group_key=group_key, triggered_at=now, value=value,
        threshold=rule.threshold, log_count=value, sample_logs=samples[:5], status="active",
        search=search, last_notified_at=now, reminders_sent=0,
    )
    session.add(alert)
    session.flush()  # the id goes into the notification
    rule.trigger_count = (rule.trigger_count or 0) + 1
    rule.last_triggered = now
    enqueue(session, rule, alert, "firing", 0, value, samples, now)
    return alert


def remind(session: Session, rule: AlertRule, alert: TriggeredAlert, value: int,
           samples: list[dict[str, Any]], now: datetime) -> None:
    """Owe a reminder for a still-firing, unacknowledged alert."""
    alert.reminders_sent = (alert.reminders_sent or 0) + 1
    alert.last_notified_at = now
    enqueue(session, rule, alert, "reminder", alert.reminders_sent, value, samples, now)


def reminder_due(rule: AlertRule, alert: TriggeredAlert, now: datetime) -> bool:
    """Reminders go out every ``repeat_interval`` minutes while nobody has acknowledged the alert."""
    if not rule.repeat_interval or alert.status != "active":
        return False
    last = alert.last_notified_at or alert.triggered_at
    return (now - last).total_seconds() >= rule.repeat_interval * 60


def _transition(session: Session, alert: TriggeredAlert, allowed: tuple[str, ...], values: dict[str, Any],
                verb: str) -> None:
    """Change ``alert`` only if its status is still one of ``allowed`` — a conditional UPDATE, so a
    user's acknowledge racing the engine's auto-resolve cannot undo it (on either database)."""
    result = session.execute(
        update(TriggeredAlert).where(TriggeredAlert.id == alert.id, TriggeredAlert.status.in_(allowed))
        .values(**values).execution_options(synchronize_session=False))
    session.refresh(alert)
    if not getattr(result, "rowcount", 0):
        raise TransitionError(f"alert {alert.id} is {alert.status}; it cannot be {verb}")


def acknowledge(session: Session, alert: TriggeredAlert, user_id: int | None, notes: str | None,
                now: datetime) -> None:
    """``active`` → ``acknowledged`` (stops reminders; the alert still resolves by itself)."""
    values: dict[str, Any] = {"status": "acknowledged", "acknowledged_at": now, "acknowledged_by": user_id}
    if notes:
        values["notes"] = notes
    _transition(session, alert, ("active",), values, "acknowledged")


def resolve(session: Session, rule: AlertRule, alert: TriggeredAlert, value: float, now: datetime, *,
            manual: bool = False, user_id: int | None = None, notes: str | None = None) -> None:
    """Close the alert (by a user when ``manual``, else because the condition cleared) and owe
    the ``resolved`` notification."""
    values: dict[str, Any] = {"status": "resolved", "resolved_at": now, "resolved_by": user_id}
    if notes:
        values["notes"] = notes
    _transition(session, alert, OPEN_STATUSES, values, "resolved")
    resolution = "manual" if manual else "condition_cleared"
    enqueue(session, rule, alert, "resolved", 0, value, [], now, resolution=resolution)
