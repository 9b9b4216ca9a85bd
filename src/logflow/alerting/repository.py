"""Rules and alerts in the metadata database, for the API: CRUD, listing, acknowledge, resolve.

Synchronous (SQLAlchemy sessions); the routes call it through ``run_in_threadpool``. The JSON
shapes the API answers with are built here too (``rule_json``, ``alert_json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from logflow.alerting import lifecycle
from logflow.alerting.payloads import iso
from logflow.alerting.rules import RuleSpec, redact_config
from logflow.db.models import AlertNotification, AlertRule, Delivery, TriggeredAlert, utcnow

ALERT_STATUSES = ("active", "acknowledged", "resolved", "open")


class NotFound(LookupError):
    """No such rule or alert."""


def rule_json(rule: AlertRule, *, full: bool) -> dict[str, Any]:
    """A rule as the API shows it; ``full`` (owner, admin) also shows the webhook URL's path."""
    return {
        "id": rule.id, "name": rule.name, "description": rule.description, "query": rule.query,
        "condition": rule.condition, "threshold": rule.threshold, "time_window": rule.time_window,
        "levels": list(rule.levels), "services": list(rule.services), "group_by": rule.group_by,
        "repeat_interval": rule.repeat_interval, "notification_channel": rule.notification_channel,
        "notification_config": redact_config(rule.notification_channel, rule.notification_config, full=full),
        "is_active": rule.is_active, "owner_id": rule.owner_id, "last_triggered": iso(rule.last_triggered),
        "trigger_count": rule.trigger_count, "created_at": iso(rule.created_at),
        "updated_at": iso(rule.updated_at),
    }


def alert_json(alert: TriggeredAlert) -> dict[str, Any]:
    return {
        "id": alert.id, "rule_id": alert.rule_id, "rule_name": alert.rule_name,
        "group": alert.group_key or None, "triggered_at": iso(alert.triggered_at), "value": alert.value,
        "threshold": alert.threshold, "log_count": alert.log_count,
        "sample_logs": list(alert.sample_logs or []), "search": dict(alert.search or {}),
        "status": alert.status, "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by, "resolved_at": iso(alert.resolved_at),
        "resolved_by": alert.resolved_by, "notes": alert.notes,
        "last_notified_at": iso(alert.last_notified_at), "reminders_sent": alert.reminders_sent,
    }


def delivery_json(row: Delivery) -> dict[str, Any]:
    return {"id": row.id, "channel": row.channel, "kind": row.kind, "status": row.status, "error": row.error,
            "duration_ms": row.duration_ms, "attempted_at": iso(row.attempted_at)}


def notification_json(row: AlertNotification) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "seq": row.seq, "channel": row.channel, "status": row.status,
            "attempts": row.attempts, "created_at": iso(row.created_at), "sent_at": iso(row.sent_at),
            "next_attempt_at": iso(row.next_attempt_at) if row.status == "failed" else None,
            "last_error": row.last_error}


class AlertRepository:
    """Every database operation the alerting API needs."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- rules -------------------------------------------------------------------------------
    def create_rule(self, spec: RuleSpec, owner_id: int | None) -> AlertRule:
        with self.sessions() as session, session.begin():
            rule = AlertRule(**spec.model_dump(), owner_id=owner_id, trigger_count=0)
            session.add(rule)
        return rule

    def get_rule(self, rule_id: int) -> AlertRule:
        with self.sessions() as session:
            rule = session.get(AlertRule, rule_id)
        if rule is None:
            raise NotFound(f"no alert rule with id {rule_id}")
        return rule

    def list_rules(self, *, active: bool | None, owner_id: int | None, limit: int,
                   offset: int) -> tuple[list[AlertRule], int]:
        query = select(AlertRule)
        if active is not None:
            query = query.where(AlertRule.is_active == active)
        if owner_id is not None:
            query = query.where(AlertRule.owner_id == owner_id)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(session.scalars(query.order_by(AlertRule.id).limit(limit).offset(offset)))
        return rows, total

    def replace_rule(self, rule_id: int, spec: RuleSpec) -> AlertRule:
        with self.sessions() as session, session.begin():
            rule = session.get(AlertRule, rule_id)
            if rule is None:
                raise NotFound(f"no alert rule with id {rule_id}")
            for key, value in spec.model_dump().items():
                setattr(rule, key, value)
        return rule

    def delete_rule(self, rule_id: int) -> AlertRule:
        """Delete the rule; its alerts, outbox and deliveries go with it (ON DELETE CASCADE)."""
        with self.sessions() as session, session.begin():
            rule = session.get(AlertRule, rule_id)
            if rule is None:
                raise NotFound(f"no alert rule with id {rule_id}")
            session.delete(rule)
        return rule

    # -- alerts ------------------------------------------------------------------------------
    def list_alerts(self, *, status: str | None, rule_id: int | None, group: str | None,
                    start: datetime | None, end: datetime | None, limit: int,
                    offset: int) -> tuple[list[TriggeredAlert], int]:
        query = select(TriggeredAlert)
        if status == "open":
            query = query.where(TriggeredAlert.status.in_(lifecycle.OPEN_STATUSES))
        elif status:
            query = query.where(TriggeredAlert.status == status)
        if rule_id is not None:
            query = query.where(TriggeredAlert.rule_id == rule_id)
        if group is not None:
            query = query.where(TriggeredAlert.group_key == group)
        if start is not None:
            query = query.where(TriggeredAlert.triggered_at >= start)
        if end is not None:
            query = query.where(TriggeredAlert.triggered_at < end)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            order = (TriggeredAlert.triggered_at.desc(), TriggeredAlert.id.desc())
            rows = list(session.scalars(query.order_by(*order).limit(limit).offset(offset)))
        return rows, total

    def alert_detail(self, alert_id: int) -> dict[str, Any]:
        """The alert with every delivery attempt and the state of each owed notification."""
        with self.sessions() as session:
            alert = session.get(TriggeredAlert, alert_id)
            if alert is None:
                raise NotFound(f"no triggered alert with id {alert_id}")
            deliveries = session.scalars(select(Delivery).where(Delivery.alert_id == alert_id)
                                         .order_by(Delivery.attempted_at, Delivery.id))
            notes = session.scalars(select(AlertNotification).where(AlertNotification.alert_id == alert_id)
                                    .order_by(AlertNotification.id))
            return {**alert_json(alert), "deliveries": [delivery_json(d) for d in deliveries],
                    "notifications": [notification_json(n) for n in notes]}

    def acknowledge(self, alert_id: int, user_id: int | None, notes: str | None) -> TriggeredAlert:
        with self.sessions() as session, session.begin():
            alert = self._alert(session, alert_id)
            lifecycle.acknowledge(session, alert, user_id, notes, utcnow())
        return alert

    def resolve(self, alert_id: int, user_id: int | None, notes: str | None) -> TriggeredAlert:
        """Resolve by hand; the rule's channel gets the ``resolved`` notification like an auto-resolve."""
        with self.sessions() as session, session.begin():
            alert = self._alert(session, alert_id)
            rule = session.get(AlertRule, alert.rule_id)
            assert rule is not None  # alerts are deleted with their rule
            lifecycle.resolve(session, rule, alert, alert.value, utcnow(), manual=True, user_id=user_id,
                              notes=notes)
        return alert

    @staticmethod
    def _alert(session: Session, alert_id: int) -> TriggeredAlert:
        alert = session.get(TriggeredAlert, alert_id)
        if alert is None:
            raise NotFound(f"no triggered alert with id {alert_id}")
        return alert

