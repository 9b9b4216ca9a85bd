"""ORM models of the metadata database: users and credentials, audit trail, alert rules and alerts.

Portable types only, so one Alembic history (``db/migrations``) serves SQLite and PostgreSQL:
``sqlalchemy.JSON`` for structured fields and ``UTCDateTime`` (``DateTime(timezone=True)``) for
times. Every datetime read back is timezone-aware UTC, on both databases. JSON columns do not
track in-place mutation: assign a new list/dict to change one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; SQLite only auto-increments an ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")

DELIVERY_KINDS = ("firing", "resolved", "reminder")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores and returns aware UTC datetimes.

    SQLite keeps no zone (values come back naive); PostgreSQL returns the session's zone. Naive
    values written are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str] = mapped_column(String(32), default="user")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # None: the password was never changed (e.g. the default admin created by ``logflow db init``).
    password_changed_at: Mapped[datetime | None]

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)
    refresh_tokens: Mapped[list[RefreshToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r})"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), index=True)  # the visible start of the key
    key_hash: Mapped[str] = mapped_column(String(255), unique=True)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="api_keys")


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="refresh_tokens")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AlertRule(Base):
    """The seed's alert rule; ``time_window`` and ``repeat_interval`` are minutes."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    query: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[str] = mapped_column(String(32), default="greater_than")
    threshold: Mapped[float] = mapped_column(Float)
    time_window: Mapped[int] = mapped_column(default=5)
    levels: Mapped[list[str]] = mapped_column(default=list)
    services: Mapped[list[str]] = mapped_column(default=list)
    group_by: Mapped[str | None] = mapped_column(String(100))
    repeat_interval: Mapped[int | None]
    notification_channel: Mapped[str] = mapped_column(String(32), default="console")
    notification_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    last_triggered: Mapped[datetime | None]
    trigger_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    alerts: Mapped[list[TriggeredAlert]] = relationship(
        back_populates="rule", cascade="all, delete-orphan", passive_deletes=True)


class TriggeredAlert(Base):
    """One firing of a rule (per ``group_key`` when the rule groups); ``status`` is
    ``active``, ``acknowledged`` or ``resolved``."""

    __tablename__ = "triggered_alerts"
    __table_args__ = (
        Index("ix_triggered_alerts_rule_group_status", "rule_id", "group_key", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    rule_name: Mapped[str] = mapped_column(String(200))
    group_key: Mapped[str] = mapped_column(String(255), default="")
    triggered_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    log_count: Mapped[int] = mapped_column(default=0)
    sample_logs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None]
    notes: Mapped[str | None] = mapped_column(Text)
    last_notified_at: Mapped[datetime | None]
    # --- alerting (migration *_alerting) ---
    # Who resolved it by hand (None: the engine, because the condition cleared).
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The search that shows every counted event: query, services, levels, start_time, end_time.
    search: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reminders_sent: Mapped[int] = mapped_column(default=0)
    # --- end alerting ---

    rule: Mapped[AlertRule] = relationship(back_populates="alerts")
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", passive_deletes=True)


class Delivery(Base):
    """One attempt to notify a channel about an alert."""

    __tablename__ = "deliveries"
    __table_args__ = (CheckConstraint(f"kind IN {DELIVERY_KINDS!r}", name="kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("triggered_alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # "sent" or "failed"
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    alert: Mapped[TriggeredAlert] = relationship(back_populates="deliveries")


# --- alerting (migration *_alerting) ---------------------------------------------------------
NOTIFICATION_STATUSES = ("pending", "sending", "sent", "failed", "dead")


class AlertNotification(Base):
    """The outbox: one notification the engine owes a channel, written in the same transaction
    as the alert change that causes it, so a crash or failover can neither lose nor repeat it.

    Unique per (alert, kind, seq): ``seq`` is 0 for ``firing``/``resolved`` and counts reminders.
    ``status``: ``pending`` → ``sending`` (claimed until ``claimed_until``) → ``sent``, or
    ``failed`` (retried at ``next_attempt_at``) and finally ``dead``. ``payload`` is the message
    snapshot (see ``logflow.alerting.payloads``).
    """

    __tablename__ = "alert_notifications"
    __table_args__ = (
        UniqueConstraint("alert_id", "kind", "seq", name="uq_alert_notifications_alert_kind_seq"),
        CheckConstraint(f"kind IN {DELIVERY_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {NOTIFICATION_STATUSES!r}", name="status"),
        Index("ix_alert_notifications_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("triggered_alerts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(default=0)
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertEngineLease(Base):
    """Leader election for alert engines: the row's holder evaluates; others wait for expiry.

    ``expires_ms`` is on the database's clock (milliseconds since the epoch), so replicas on
    hosts with skewed clocks still agree. ``epoch`` grows with every change of holder and fences
    writes: a paused ex-leader's transactions check it and abort.
    """

    __tablename__ = "alert_engine_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)


# At most one open (active or acknowledged) alert per rule and group, whoever writes: the
# database refuses a second one even if two engines ever both believed they were the leader.
_OPEN = text("status <> 'resolved'")
Index("uq_triggered_alerts_open", TriggeredAlert.rule_id, TriggeredAlert.group_key, unique=True,
      sqlite_where=_OPEN, postgresql_where=_OPEN)
# --- end alerting ---
