"""``logflow db`` against a real SQLite file and a real PostgreSQL database (no mocks).

PostgreSQL gets a fresh database per test (created from ``logflow_test``, dropped afterwards):
backup and restore work on whole databases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from logflow.cli.db import db
from logflow.db.engine import make_engine
from logflow.db.migrate import head_revision
from logflow.db.models import User
from logflow.db.passwords import verify_password
from tests.conftest import require_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.distributed)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)  # no stray logflow.toml from the working directory
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'metadata.db'}"
        return
    base = require_engine("postgres")
    name = f"lf_cli_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    try:
        with admin.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.rsplit("/", 1)[0] + f"/{name}"
        _drop_database(admin, name)
    finally:
        admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    # Plain DROP DATABASE, not WITH (FORCE): it makes an autovacuum worker on the database exit,
    # where FORCE fails for a non-superuser. Retried while a worker is still winding down.
    for attempt in range(20):
        try:
            with admin.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{name}"')
            return
        except OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(db, list(args), input=input, catch_exceptions=False)


def usernames(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return set(session.scalars(select(User.username)))
    finally:
        engine.dispose()


def add_user(url: str, name: str) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            session.add(User(username=name, email=f"{name}@example.com", password_hash="x"))
    finally:
        engine.dispose()


def test_current_migrate_current(db_url: str) -> None:
    result = run("current", "--database-url", db_url)
    assert result.exit_code == 0 and result.stdout.startswith("none")
    result = run("migrate", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert f"at revision {head_revision()} (head)" in result.stdout
    assert "logflow:logflow@" not in result.output  # passwords are masked
    result = run("current", "--database-url", db_url)
    assert result.stdout.strip() == f"{head_revision()} (head)"


def test_init_creates_the_default_admin_once(db_url: str) -> None:
    result = run("init", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "created default admin user 'admin'" in result.stdout
    assert "WARNING" in result.stderr and "admin123" in result.stderr
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            admin = session.scalars(select(User)).one()
    finally:
        engine.dispose()
    assert (admin.username, admin.email, admin.role) == ("admin", "admin@logflow.local", "admin")
    assert admin.is_admin is True and admin.password_changed_at is None
    assert verify_password("admin123", admin.password_hash)
    assert not verify_password("admin", admin.password_hash)

    again = run("init", "--database-url", db_url)
    assert again.exit_code == 0 and "users exist already" in again.stdout and again.stderr == ""
    assert usernames(db_url) == {"admin"}


def test_backup_mutate_restore(db_url: str, tmp_path: Path) -> None:
    assert run("init", "--database-url", db_url).exit_code == 0
    dump = tmp_path / "backups" / "metadata.backup"
    dump.parent.mkdir()
    result = run("backup", "--database-url", db_url, str(dump))
    assert result.exit_code == 0, result.output
    assert dump.stat().st_size > 0 and not list(dump.parent.glob("*.partial"))

    add_user(db_url, "mallory")
    assert usernames(db_url) == {"admin", "mallory"}

    declined = run("restore", "--database-url", db_url, str(dump), input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert usernames(db_url) == {"admin", "mallory"}

    result = run("restore", "--database-url", db_url, str(dump), input="y\n")
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()} (head)" in result.stdout
    assert usernames(db_url) == {"admin"}

    # Restoring twice (objects now exist) and restoring after more changes both work.
    add_user(db_url, "trent")
    assert run("restore", "--yes", "--database-url", db_url, str(dump)).exit_code == 0
    assert usernames(db_url) == {"admin"}


def test_restore_rejects_a_file_that_is_not_a_backup(db_url: str, tmp_path: Path) -> None:
    assert run("init", "--database-url", db_url).exit_code == 0
    bogus = tmp_path / "bogus.backup"
    bogus.write_bytes(b"not a backup\n" * 100)
    result = run("restore", "--yes", "--database-url", db_url, str(bogus))
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert usernames(db_url) == {"admin"}


def _cli_subprocess(
    args: list[str], stdin: str, env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from logflow.cli.db import db; db()", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_shell_runs_the_database_client(db_url: str) -> None:
    assert run("init", "--database-url", db_url).exit_code == 0
    done = _cli_subprocess(["shell", "--database-url", db_url], "SELECT username, email FROM users;\n")
    assert done.returncode == 0, done.stderr
    assert "admin" in done.stdout and "admin@logflow.local" in done.stdout


def test_shell_names_the_package_when_sqlite3_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    done = _cli_subprocess(["shell", "--data-dir", str(tmp_path / "data")], "", env)
    assert done.returncode == 1
    assert "sqlite3 not found" in done.stderr and "apt-get install sqlite3" in done.stderr


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("init", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "metadata.db").exists()
    assert usernames(f"sqlite:///{tmp_path / 'data' / 'metadata.db'}") == {"admin"}


@pytest.mark.distributed
def test_unreachable_database_is_one_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = require_engine("postgres").replace("logflow:logflow@", "logflow:wrong-password@")
    result = run("current", "--database-url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: database postgresql://logflow:***@")
    assert "password authentication failed" in result.stderr and "wrong-password" not in result.output
