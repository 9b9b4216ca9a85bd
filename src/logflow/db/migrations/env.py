"""Alembic environment for LogFlow's metadata database (see ``logflow.db.migrate``).

Run from code: ``logflow.db.migrate`` passes an open connection in ``config.attributes``. A URL
(``config.attributes["url"]`` or the ``sqlalchemy.url`` option) also works, for ad-hoc use.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from logflow.db.engine import make_engine
from logflow.db.migrate import context_options

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **context_options(connection))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or url via logflow.db.migrate.alembic_config")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
