"""Operator tasks on the metadata database: default admin, backup, restore, interactive shell.

PostgreSQL goes through the client tools (``pg_dump``/``pg_restore``/``psql``), chosen to match the
server's major version; SQLite through the ``sqlite3`` online backup API, which copies a live
database consistently (WAL included) without stopping LogFlow.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from logflow.db.engine import normalize_url
from logflow.db.models import User
from logflow.db.passwords import hash_password
from logflow.db.session import make_session_factory

DEFAULT_ADMIN = {"username": "admin", "password": "admin123", "email": "admin@logflow.local"}
PG_CLIENT_HINT = "install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client)"
SQLITE_HINT = "install the SQLite shell (Debian/Ubuntu: apt-get install sqlite3)"
_PG_BIN_DIRS = "/usr/lib/postgresql/*/bin"


class MaintenanceError(Exception):
    """A task could not be done; the message says why and what to do."""


def create_default_admin(engine: Engine) -> bool:
    """Create the seed's ``admin`` user when the database has no user at all; True if created.

    Its ``password_changed_at`` stays NULL: the default password was never changed.
    """
    factory = make_session_factory(engine)
    with factory() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return False
        session.add(User(
            username=DEFAULT_ADMIN["username"], email=DEFAULT_ADMIN["email"],
            full_name="LogFlow Administrator", password_hash=hash_password(DEFAULT_ADMIN["password"]),
            is_admin=True, role="admin", password_changed_at=None,
        ))
        try:
            session.commit()
        except IntegrityError:  # another `init` won the race
            session.rollback()
            return False
    return True


# -- connection targets ----------------------------------------------------------------------------


def _url(url: str) -> URL:
    return make_url(normalize_url(url))


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for any other database."""
    parsed = _url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise MaintenanceError(f"{url}: an in-memory SQLite database has nothing to back up or open")
    return Path(parsed.database)


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL database as the libpq tools take it: a URI without password, plus environment."""

    uri: str
    env: dict[str, str]

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        parsed = _url(url)
        env = dict(os.environ)
        if parsed.password:
            env["PGPASSWORD"] = str(parsed.password)  # not on the command line, where `ps` shows it
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
        return cls(uri=uri, env=env)


def server_major(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def _tool_major(path: str) -> int | None:
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=True)
        out = result.stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\b(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def find_pg_tool(name: str, server: int | None) -> str:
    """``pg_dump``/``pg_restore``/``psql`` from PATH or ``/usr/lib/postgresql/<N>/bin``.

    Prefers the server's major version, else the oldest newer client (pg_dump refuses servers newer
    than itself; newer clients read older servers).
    """
    candidates = [p for p in [shutil.which(name), *sorted(glob.glob(f"{_PG_BIN_DIRS}/{name}"))] if p]
    versions = {path: major for path in dict.fromkeys(candidates) if (major := _tool_major(path)) is not None}
    if not versions:
        raise MaintenanceError(f"{name} not found: {PG_CLIENT_HINT}")
    if server is None:
        return max(versions, key=lambda p: versions[p])
    usable = sorted((major, path) for path, major in versions.items() if major >= server)
    if not usable:
        found = ", ".join(f"{p} ({v})" for p, v in versions.items())
        raise MaintenanceError(f"{name} is older than the PostgreSQL {server} server (found {found}): "
                               f"install postgresql-client-{server}")
    return usable[0][1]


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise MaintenanceError(f"{Path(argv[0]).name} failed (exit {result.returncode}): {detail}")


# -- backup and restore ----------------------------------------------------------------------------


def _sqlite_copy(source: Path, target: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(source)) as src, \
                contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        raise MaintenanceError(f"copying {source} to {target} failed: {exc}") from None


def _check_sqlite_backup(path: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            ok = conn.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{path} is not a SQLite database: {exc}") from None
    if ok is None or ok[0] != "ok":
        raise MaintenanceError(f"{path} is damaged: {ok}")
    if "alembic_version" not in tables:
        raise MaintenanceError(f"{path} is not a LogFlow metadata backup (no alembic_version table)")


def backup(url: str, engine: Engine, file: Path) -> None:
    """Write a consistent copy of the database to ``file`` (replaced atomically when done)."""
    file = file.resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(file.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        path = sqlite_path(url)
        if path is not None:
            if not path.exists():
                raise MaintenanceError(f"no database at {path}: run `logflow db init` first")
            _sqlite_copy(path, partial)
        else:
            target = PgTarget.from_url(url)
            tool = find_pg_tool("pg_dump", server_major(engine))
            _run([tool, "--format=custom", "--no-password", f"--file={partial}", f"--dbname={target.uri}"],
                 target.env)
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)


def restore(url: str, engine: Engine, file: Path) -> None:
    """Replace the database's contents with the backup in ``file`` (all or nothing)."""
    engine.dispose()  # no pooled connection of ours holds locks or stale state
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_backup(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(file, path)
        return
    target = PgTarget.from_url(url)
    tool = find_pg_tool("pg_restore", server_major(engine))
    _run([tool, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--no-password",
          f"--dbname={target.uri}", str(file)], target.env)


def shell_command(url: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of an interactive SQL shell on the database."""
    path = sqlite_path(url)
    if path is not None:
        sqlite = shutil.which("sqlite3")
        if sqlite is None:
            raise MaintenanceError(f"sqlite3 not found: {SQLITE_HINT}")
        return [sqlite, str(path)], dict(os.environ)
    target = PgTarget.from_url(url)
    return [find_pg_tool("psql", None), target.uri], target.env
