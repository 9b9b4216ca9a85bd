"""Alerting engine state: notification outbox, engine lease, alert search/resolver columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Adds ``alert_notifications`` (the outbox that makes notifications survive crashes and
failovers), ``alert_engine_lease`` (leader election between engine replicas), three columns on
``triggered_alerts`` and a partial unique index allowing one open alert per rule and group.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OPEN = sa.text("status <> 'resolved'")


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("triggered_alerts") as batch:
        batch.add_column(sa.Column("resolved_by", sa.Integer(), nullable=True))
        # Server defaults fill rows that existed before this revision.
        batch.add_column(sa.Column("search", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("reminders_sent", sa.Integer(), nullable=False,
                                   server_default=sa.text("0")))
        batch.create_foreign_key(op.f("fk_triggered_alerts_resolved_by_users"), "users", ["resolved_by"],
                                 ["id"], ondelete="SET NULL")
    op.create_index("uq_triggered_alerts_open", "triggered_alerts", ["rule_id", "group_key"], unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)

    op.create_table(
        "alert_notifications",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("alert_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("next_attempt_at"),
        _time("claimed_until", nullable=True),
        sa.Column("claim_token", sa.String(length=64), nullable=True),
        _time("sent_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('firing', 'resolved', 'reminder')",
                           name=op.f("ck_alert_notifications_kind")),
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed', 'dead')",
                           name=op.f("ck_alert_notifications_status")),
        sa.ForeignKeyConstraint(["alert_id"], ["triggered_alerts.id"], ondelete="CASCADE",
                                name=op.f("fk_alert_notifications_alert_id_triggered_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
        sa.UniqueConstraint("alert_id", "kind", "seq", name="uq_alert_notifications_alert_kind_seq"),
    )
    op.create_index(op.f("ix_alert_notifications_alert_id"), "alert_notifications", ["alert_id"])
    op.create_index("ix_alert_notifications_status_next", "alert_notifications",
                    ["status", "next_attempt_at"])

    op.create_table(
        "alert_engine_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        _time("acquired_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_engine_lease")),
    )


def downgrade() -> None:
    op.drop_table("alert_engine_lease")
    op.drop_table("alert_notifications")
    op.drop_index("uq_triggered_alerts_open", table_name="triggered_alerts")
    with op.batch_alter_table("triggered_alerts") as batch:
        batch.drop_constraint(op.f("fk_triggered_alerts_resolved_by_users"), type_="foreignkey")
        batch.drop_column("reminders_sent")
        batch.drop_column("search")
        batch.drop_column("resolved_by")
