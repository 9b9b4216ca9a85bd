"""Alembic, driven from code: the migration scripts ship inside the package (``db/migrations``).

No ``alembic.ini`` is needed: ``alembic_config`` builds the configuration and hands the caller's
connection to ``migrations/env.py``. ``upgrade`` is safe to run from several processes at once
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``) and is all or
nothing on both databases (their DDL is transactional).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate.api import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from logflow.db.engine import make_engine
from logflow.db.models import Base, UTCDateTime

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_KEY = 0x6C66_6462  # "lfdb": serializes concurrent upgrades on one PostgreSQL database


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate renders the UTC type as the portable ``sa.DateTime(timezone=True)``."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def context_options(connection: Connection) -> dict[str, Any]:
    """``MigrationContext``/``EnvironmentContext.configure`` options shared by env.py and tests."""
    return {
        "target_metadata": Base.metadata,
        "render_as_batch": connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        "compare_type": True,
        "render_item": _render_item,
    }


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for the packaged scripts; env.py uses ``connection`` if given, else ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of LogFlow."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine_or_url: Engine | str) -> str | None:
    """The database's revision; None for a database that was never migrated."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            return _current(conn)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def _upgrade_sqlite(conn: Connection, revision: str) -> None:
    # Batch migrations recreate tables, which must not fire ON DELETE CASCADE: foreign keys are
    # off during the upgrade (the pragma only works outside a transaction) and checked at the end.
    conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # we issue BEGIN/COMMIT ourselves
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now: one migrator at a time
        try:
            command.upgrade(alembic_config(connection=conn), revision)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows violating foreign keys: {broken[:5]}")
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
    finally:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: head); returns the revision reached."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                _upgrade_sqlite(conn, revision)
            else:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                    command.upgrade(alembic_config(connection=conn), revision)
            return _current(conn)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def drift(engine_or_url: Engine | str) -> list[Any]:
    """Differences between the models and the database (empty when the migrations match the models)."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            opts = {k: v for k, v in context_options(conn).items() if k != "target_metadata"}
            ctx = MigrationContext.configure(conn, opts=opts)
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def new_revision(engine_or_url: Engine | str, message: str) -> str:
    """Autogenerate the next numbered revision (``0002_<slug>.py``…) against a database at head.

    For developers adding a migration after changing ``models.py``; returns the new file's path.
    """
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            rev_id = f"{int(head_revision()) + 1:04d}"
            script = command.revision(alembic_config(connection=conn), message=message,
                                      autogenerate=True, rev_id=rev_id)
            assert script is not None and not isinstance(script, list)
            return str(script.path)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
