"""The audit trail: security-relevant actions, written to ``audit_events`` and read by admins.

Actions in use: ``login``, ``login_failed``, ``login_rate_limited``, ``logout``,
``refresh_token_reused``, ``user_registered``, ``user_created``, ``password_changed``,
``role_changed``, ``user_deactivated``, ``user_activated``, ``api_key_created``,
``api_key_revoked``, ``cache_cleared``; the alerting engine adds ``rule_deleted``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from logflow.db.models import AuditEvent

log = logging.getLogger("logflow.audit")


def record(
    session: Session,
    *,
    action: str,
    actor_user_id: int | None,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to ``session`` (committed with the change it describes)."""
    session.add(
        AuditEvent(
            action=action[:64],
            actor_user_id=actor_user_id,
            target=target[:255] if target else None,
            client_ip=client_ip[:64] if client_ip else None,
            detail=detail or {},
        )
    )
    log.info("audit %s actor=%s target=%s ip=%s", action, actor_user_id, target, client_ip)


def record_now(engine: Engine, **fields: Any) -> None:
    """Write one audit event in its own transaction (for events with no other change: failed logins)."""
    try:
        with Session(engine) as session, session.begin():
            record(session, **fields)
    except SQLAlchemyError as exc:  # auditing must not turn a 401 into a 500; the log line remains
        log.error("could not write audit event %s: %s", fields.get("action"), exc)


def to_json(event: AuditEvent, usernames: dict[int, str]) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": _iso(event.at),
        "action": event.action,
        "actor_user_id": event.actor_user_id,
        "actor": usernames.get(event.actor_user_id) if event.actor_user_id is not None else None,
        "target": event.target,
        "client_ip": event.client_ip,
        "detail": event.detail,
    }


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def query(
    session: Session, *, limit: int, offset: int, action: str | None, actor_user_id: int | None
) -> list[AuditEvent]:
    """Newest first, optionally filtered."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor_user_id is not None:
        stmt = stmt.where(AuditEvent.actor_user_id == actor_user_id)
    return list(session.scalars(stmt))
