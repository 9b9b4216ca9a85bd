"""``logflow db``: migrate, initialise, open, back up and restore the metadata database.

Works on the configured database (``LOGFLOW_DATABASE_URL``, default the SQLite file in the data
directory); ``--database-url`` and ``--data-dir`` override the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from logflow.cli.common import load
from logflow.db import maintenance
from logflow.db.engine import make_engine
from logflow.db.maintenance import DEFAULT_ADMIN, MaintenanceError
from logflow.db.migrate import current_revision, head_revision, upgrade

F = TypeVar("F", bound=Callable[..., Any])


def database_options(func: F) -> F:
    func = click.option("--database-url", default=None, metavar="URL",
                        help="Database URL [env LOGFLOW_DATABASE_URL; default SQLite in the data dir]")(func)
    func = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Data directory [env LOGFLOW_DATA_DIR; default ./logflow-data]")(func)
    return func


def _database_url(data_dir: Path | None, database_url: str | None) -> str:
    return load(data_dir=data_dir, database_url=database_url).effective_database_url


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    """An engine for one command; database and tool errors become one clean line, exit status 1."""
    engine = make_engine(url)
    try:
        yield engine
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"database {_safe(url)}: {detail}") from None
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


def _describe(revision: str | None) -> str:
    head = head_revision()
    if revision is None:
        return "none (empty database: run `logflow db migrate`)"
    if revision == head:
        return f"{revision} (head)"
    return f"{revision} (head is {head}: run `logflow db migrate`)"


@click.group()
def db() -> None:
    """Metadata database (users, API keys, alert rules): migrations, backup, restore, shell."""


@db.command()
@database_options
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Upgrade the database schema to the newest revision."""
    url = _database_url(data_dir, database_url)
    with _engine(url) as engine:
        reached = upgrade(engine)
    click.echo(f"{_safe(url)} at revision {_describe(reached)}")


@db.command()
@database_options
def init(data_dir: Path | None, database_url: str | None) -> None:
    """Migrate, then create the default admin user if the database has no user yet."""
    url = _database_url(data_dir, database_url)
    with _engine(url) as engine:
        reached = upgrade(engine)
        created = maintenance.create_default_admin(engine)
    click.echo(f"{_safe(url)} at revision {_describe(reached)}")
    if not created:
        click.echo("users exist already: default admin not created")
        return
    click.echo(f"created default admin user {DEFAULT_ADMIN['username']!r} <{DEFAULT_ADMIN['email']}>")
    click.secho(
        f"WARNING: the admin password is the published default {DEFAULT_ADMIN['password']!r}. "
        "Change it before exposing LogFlow to anyone.",
        fg="red", bold=True, err=True,
    )


@db.command()
@database_options
def current(data_dir: Path | None, database_url: str | None) -> None:
    """Show the database's schema revision."""
    url = _database_url(data_dir, database_url)
    with _engine(url) as engine:
        click.echo(_describe(current_revision(engine)))


@db.command()
@database_options
def shell(data_dir: Path | None, database_url: str | None) -> None:
    """Open psql (PostgreSQL) or sqlite3 (SQLite) on the database."""
    url = _database_url(data_dir, database_url)
    try:
        argv, env = maintenance.shell_command(url)
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    os.execvpe(argv[0], argv, env)


@db.command()
@database_options
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def backup(data_dir: Path | None, database_url: str | None, file: Path) -> None:
    """Write a consistent backup of the database to FILE (pg_dump custom format, or a SQLite file)."""
    url = _database_url(data_dir, database_url)
    with _engine(url) as engine:
        maintenance.backup(url, engine, file)
    click.echo(f"backed up {_safe(url)} to {file} ({file.stat().st_size} bytes)")


@db.command()
@database_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation")
def restore(data_dir: Path | None, database_url: str | None, file: Path, yes: bool) -> None:
    """Replace the database's contents with the backup in FILE (made by `logflow db backup`)."""
    url = _database_url(data_dir, database_url)
    if not yes:
        click.confirm(f"Replace everything in {_safe(url)} with {file}?", abort=True)
    with _engine(url) as engine:
        maintenance.restore(url, engine, file)
        revision = current_revision(engine)
    click.echo(f"restored {file} into {_safe(url)}; revision {_describe(revision)}")
