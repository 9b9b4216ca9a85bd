"""Initial schema: users and credentials, audit events, alert rules, triggered alerts, deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Portable operations only: this history runs on SQLite (batch mode) and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(column: str, table: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"),
                                   ondelete=ondelete)


def _index(table: str, *columns: str, name: str | None = None) -> None:
    op.create_index(name or op.f(f"ix_{table}_{columns[0]}"), table, list(columns), unique=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _time("password_changed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=255), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("expires_at", nullable=True),
        _time("last_used_at", nullable=True),
        _time("revoked_at", nullable=True),
        _fk("user_id", "api_keys", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    _index("api_keys", "prefix")
    _index("api_keys", "user_id")

    op.create_table(
        "refresh_tokens",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _time("used_at", nullable=True),
        _time("revoked_at", nullable=True),
        _fk("user_id", "refresh_tokens", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("jti", name=op.f("uq_refresh_tokens_jti")),
    )
    _index("refresh_tokens", "family_id")
    _index("refresh_tokens", "user_id")

    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, nullable=False),
        _time("at"),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        _fk("actor_user_id", "audit_events", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    _index("audit_events", "action")
    _index("audit_events", "actor_user_id")
    _index("audit_events", "at")

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("condition", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("time_window", sa.Integer(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("group_by", sa.String(length=100), nullable=True),
        sa.Column("repeat_interval", sa.Integer(), nullable=True),
        sa.Column("notification_channel", sa.String(length=32), nullable=False),
        sa.Column("notification_config", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        _time("last_triggered", nullable=True),
        sa.Column("trigger_count", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _fk("owner_id", "alert_rules", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    _index("alert_rules", "owner_id")

    op.create_table(
        "triggered_alerts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("rule_name", sa.String(length=200), nullable=False),
        sa.Column("group_key", sa.String(length=255), nullable=False),
        _time("triggered_at"),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("log_count", sa.Integer(), nullable=False),
        sa.Column("sample_logs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _time("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        _time("resolved_at", nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        _time("last_notified_at", nullable=True),
        _fk("acknowledged_by", "triggered_alerts", "users", "SET NULL"),
        _fk("rule_id", "triggered_alerts", "alert_rules", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triggered_alerts")),
    )
    _index("triggered_alerts", "rule_id", "group_key", "status", name="ix_triggered_alerts_rule_group_status")
    _index("triggered_alerts", "status")
    _index("triggered_alerts", "triggered_at")

    op.create_table(
        "deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("alert_id", BIG_ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        _time("attempted_at"),
        sa.CheckConstraint("kind IN ('firing', 'resolved', 'reminder')", name=op.f("ck_deliveries_kind")),
        _fk("alert_id", "deliveries", "triggered_alerts", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    _index("deliveries", "alert_id")
    _index("deliveries", "attempted_at")


def downgrade() -> None:
    for table in ("deliveries", "triggered_alerts", "alert_rules", "audit_events", "refresh_tokens",
                  "api_keys", "users"):
        op.drop_table(table)  # drops the table's indexes with it
