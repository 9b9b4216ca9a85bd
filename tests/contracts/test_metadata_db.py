"""The metadata database contract, on a SQLite file and on real PostgreSQL.

PostgreSQL runs in a schema of its own in the ``logflow_test`` database (``search_path`` in the
URL), dropped afterwards, so runs are repeatable and may overlap.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from logflow.db.engine import make_engine
from logflow.db.migrate import alembic_config, current_revision, drift, head_revision, upgrade
from logflow.db.models import (
    AlertRule,
    ApiKey,
    AuditEvent,
    Base,
    Delivery,
    RefreshToken,
    TriggeredAlert,
    User,
)
from logflow.db.session import make_session_factory, session_scope
from tests.conftest import postgres_schema

TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.distributed)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    upgrade(engine)
    return engine


def _user(name: str, **kw: Any) -> User:
    return User(username=name, email=f"{name}@example.com", password_hash="x", **kw)


# -- migrations ------------------------------------------------------------------------------------


def test_upgrade_from_empty_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    added = {diff[1].name for diff in drift(engine) if diff[0] == "add_table"}
    assert added == TABLES  # the comparison does see differences
    assert upgrade(engine) == head_revision() == "0002"
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert upgrade(engine) == head_revision()  # idempotent


def test_models_and_migrations_do_not_drift(migrated: Engine) -> None:
    assert drift(migrated) == []


def test_downgrade_to_base_and_upgrade_again(migrated: Engine) -> None:
    with migrated.begin() as conn:
        command.downgrade(alembic_config(connection=conn), "base")
    assert set(inspect(migrated).get_table_names()) <= {"alembic_version"}
    assert current_revision(migrated) is None
    assert upgrade(migrated) == head_revision()
    assert drift(migrated) == []


def test_concurrent_upgrades_all_succeed(db_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: upgrade(db_url), range(4)))
    assert results == [head_revision()] * 4
    assert drift(db_url) == []


# -- models ----------------------------------------------------------------------------------------


def test_models_round_trip(migrated: Engine) -> None:
    factory = make_session_factory(migrated)
    expires = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(factory) as session:
        user = _user("alice", full_name="Alice", role="editor")
        session.add(user)
        session.flush()
        session.add_all([
            ApiKey(user_id=user.id, name="ci", prefix="lf_ab12", key_hash="h1", scopes=["ingest", "read"],
                   expires_at=expires),
            RefreshToken(user_id=user.id, family_id="fam", jti="j1", expires_at=expires),
            AuditEvent(actor_user_id=user.id, action="login", target="user:alice", client_ip="::1",
                       detail={"ok": True, "agent": "curl/8", "n": [1, 2.5, None]}),
        ])
        rule = AlertRule(
            name="High Error Rate", description="errors > 50 in 5 min", condition="greater_than",
            threshold=50.0, levels=["ERROR", "FATAL"], services=["payment-service", "auth-service"],
            group_by="service", repeat_interval=60, notification_channel="webhook",
            notification_config={"url": "https://hooks.example.com/x", "headers": {"X-Token": "t"}},
            owner_id=user.id,
        )
        session.add(rule)
        session.flush()
        alert = TriggeredAlert(rule_id=rule.id, rule_name=rule.name, group_key="payment-service", value=73.0,
                               threshold=50.0, log_count=73,
                               sample_logs=[{"message": "boom ✓", "level": "ERROR", "metadata": {"k": 1}}])
        session.add(alert)
        session.flush()
        session.add(Delivery(alert_id=alert.id, channel="webhook", kind="firing", status="sent",
                             duration_ms=12.5))

    with Session(migrated) as session:
        alice = session.scalars(select(User).where(User.username == "alice")).one()
        assert (alice.full_name, alice.role) == ("Alice", "editor")
        assert alice.is_active is True and alice.is_admin is False
        assert alice.created_at.tzinfo == UTC and alice.password_changed_at is None
        key = alice.api_keys[0]
        assert key.scopes == ["ingest", "read"]
        assert key.expires_at == expires and key.expires_at.tzinfo == UTC  # stored as UTC, same instant
        assert alice.refresh_tokens[0].expires_at == expires
        event = session.scalars(select(AuditEvent)).one()
        assert event.detail == {"ok": True, "agent": "curl/8", "n": [1, 2.5, None]}
        rule = session.scalars(select(AlertRule)).one()
        assert rule.levels == ["ERROR", "FATAL"] and rule.services == ["payment-service", "auth-service"]
        assert rule.notification_config == {"url": "https://hooks.example.com/x", "headers": {"X-Token": "t"}}
        assert (rule.time_window, rule.trigger_count, rule.is_active, rule.query) == (5, 0, True, None)
        alert = rule.alerts[0]
        assert alert.status == "active" and alert.sample_logs[0]["message"] == "boom ✓"
        assert alert.deliveries[0].kind == "firing" and alert.deliveries[0].duration_ms == 12.5


def test_updated_at_moves_on_update(migrated: Engine) -> None:
    factory = make_session_factory(migrated)
    with session_scope(factory) as session:
        user = _user("bob")
        session.add(user)
    created = user.updated_at
    with session_scope(factory) as session:
        session.get_one(User, user.id).full_name = "Bob"
    with Session(migrated) as session:
        assert session.get_one(User, user.id).updated_at > created


@pytest.mark.parametrize("duplicate", ["username", "email", "key_hash", "jti"])
def test_unique_constraints(migrated: Engine, duplicate: str) -> None:
    factory = make_session_factory(migrated)
    with session_scope(factory) as session:
        user = _user("carol")
        session.add(user)
        session.flush()
        session.add(ApiKey(user_id=user.id, name="k", prefix="p", key_hash="dup"))
        session.add(RefreshToken(user_id=user.id, family_id="f", jti="dup",
                                 expires_at=datetime.now(UTC)))
    with pytest.raises(IntegrityError), session_scope(factory) as session:
        if duplicate == "username":
            session.add(User(username="carol", email="other@example.com", password_hash="x"))
        elif duplicate == "email":
            session.add(User(username="other", email="carol@example.com", password_hash="x"))
        elif duplicate == "key_hash":
            session.add(ApiKey(user_id=user.id, name="k2", prefix="p", key_hash="dup"))
        else:
            session.add(RefreshToken(user_id=user.id, family_id="f", jti="dup", expires_at=datetime.now(UTC)))


def test_delivery_kind_is_checked(migrated: Engine) -> None:
    factory = make_session_factory(migrated)
    with session_scope(factory) as session:
        rule = AlertRule(name="r", threshold=1.0)
        session.add(rule)
        session.flush()
        alert = TriggeredAlert(rule_id=rule.id, rule_name="r", value=2.0, threshold=1.0)
        session.add(alert)
    with pytest.raises(IntegrityError), session_scope(factory) as session:
        session.add(Delivery(alert_id=alert.id, channel="console", kind="bogus", status="sent"))


def _count(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("how", ["database", "orm"])
def test_deleting_a_rule_deletes_its_alerts_and_deliveries(migrated: Engine, how: str) -> None:
    factory = make_session_factory(migrated)
    with session_scope(factory) as session:
        doomed, kept = AlertRule(name="doomed", threshold=1.0), AlertRule(name="kept", threshold=1.0)
        session.add_all([doomed, kept])
        session.flush()
        for rule in (doomed, kept):
            for i in range(3):
                alert = TriggeredAlert(rule_id=rule.id, rule_name=rule.name, group_key=str(i), value=2.0,
                                       threshold=1.0)
                session.add(alert)
                session.flush()
                session.add(Delivery(alert_id=alert.id, channel="console", kind="firing", status="sent"))
    with session_scope(factory) as session:
        if how == "database":  # ON DELETE CASCADE in the schema, no ORM involved
            session.execute(delete(AlertRule).where(AlertRule.id == doomed.id))
        else:
            session.delete(session.get_one(AlertRule, doomed.id))
    with Session(migrated) as session:
        assert _count(session, TriggeredAlert) == 3 and _count(session, Delivery) == 3
        assert {a.rule_id for a in session.scalars(select(TriggeredAlert))} == {kept.id}


def test_deleting_a_user_keeps_their_rules_and_audit_trail(migrated: Engine) -> None:
    factory = make_session_factory(migrated)
    with session_scope(factory) as session:
        user = _user("dave")
        session.add(user)
        session.flush()
        session.add_all([
            ApiKey(user_id=user.id, name="k", prefix="p", key_hash="h"),
            RefreshToken(user_id=user.id, family_id="f", jti="j", expires_at=datetime.now(UTC)),
            AuditEvent(actor_user_id=user.id, action="create_rule"),
            AlertRule(name="r", threshold=1.0, owner_id=user.id),
        ])
    with session_scope(factory) as session:
        session.execute(delete(User).where(User.id == user.id))
    with Session(migrated) as session:
        assert _count(session, ApiKey) == 0 and _count(session, RefreshToken) == 0
        assert session.scalars(select(AuditEvent.actor_user_id)).one() is None
        assert session.scalars(select(AlertRule.owner_id)).one() is None
