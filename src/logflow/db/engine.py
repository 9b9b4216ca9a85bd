"""Engine creation and health for the metadata database."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default driver would be psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


_LOCK_WAIT_S = 30.0


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # The busy timeout first: the switch to WAL below needs a lock that other connections may hold.
    cursor.execute(f"PRAGMA busy_timeout={int(_LOCK_WAIT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # WAL is kept in the file: once
        _switch_to_wal(cursor)
    cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Set WAL mode, retrying while concurrent first connections hold the file.

    Changing the journal mode can fail with "database is locked" at once, without waiting for
    the busy timeout: SQLite does not wait for a lock it would have to upgrade while another
    connection holds one (deadlock avoidance). Seen once in CI with four concurrent migrations
    of a new file (tests/contracts/test_metadata_db.py).
    """
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)


def ping(engine: Engine) -> str | None:
    """None when the database answers, else the error text."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return str(exc).splitlines()[0]
    return None
