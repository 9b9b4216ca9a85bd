"""``logflow users`` and ``logflow api-keys``: accounts and machine keys from the command line.

They work on the configured metadata database directly (no running server needed), migrating it
first. Passwords are prompted for (hidden, confirmed) or read from standard input with
``--password-stdin``; never taken as an argument, where ``ps`` and shell history would keep them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from logflow.auth import apikeys, audit, users
from logflow.auth.errors import AuthError
from logflow.cli.common import load
from logflow.cli.db import database_options
from logflow.db.engine import make_engine
from logflow.db.migrate import upgrade
from logflow.db.models import User
from logflow.db.session import make_session_factory, session_scope
from logflow.settings import Settings


@contextmanager
def _session(data_dir: Path | None, database_url: str | None) -> Iterator[tuple[Session, Settings]]:
    settings = load(data_dir=data_dir, database_url=database_url)
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        with session_scope(make_session_factory(engine)) as session:
            yield session, settings
    except AuthError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _user(session: Session, username: str) -> User:
    user = users.find_user(session, username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


def _cli_audit(session: Session, action: str, target: str, **detail: object) -> None:
    audit.record(
        session,
        action=action,
        actor_user_id=None,
        target=target,
        client_ip="cli",
        detail={"via": "cli", **detail},
    )


@click.group("users")
def users_group() -> None:
    """User accounts: create, set passwords and roles, list."""


@users_group.command("create")
@database_options
@click.argument("username")
@click.option("--email", required=True)
@click.option("--full-name", default=None)
@click.option("--admin", "is_admin", is_flag=True, help="Give the admin role")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
def create(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    email: str,
    full_name: str | None,
    is_admin: bool,
    password_stdin: bool,
) -> None:
    """Create a user (an admin with --admin)."""
    password = _password(password_stdin)
    with _session(data_dir, database_url) as (session, settings):
        user = users.create_user(
            session,
            username=username,
            email=email,
            password=password,
            full_name=full_name,
            is_admin=is_admin,
            strict=settings.env == "production",
        )
        _cli_audit(session, "user_created", f"user:{user.username}", role=user.role)
    click.echo(f"created {user.role} {username!r} <{email}>")


@users_group.command("set-password")
@database_options
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
def set_password(
    data_dir: Path | None, database_url: str | None, username: str, password_stdin: bool
) -> None:
    """Set a user's password; ends all their login sessions."""
    password = _password(password_stdin)
    with _session(data_dir, database_url) as (session, settings):
        user = _user(session, username)
        users.set_password(session, user, password, strict=settings.env == "production")
        _cli_audit(session, "password_changed", f"user:{user.username}")
    click.echo(f"password of {username!r} changed; their sessions were ended")


@users_group.command("set-role")
@database_options
@click.argument("username")
@click.argument("role", type=click.Choice(users.ROLES))
def set_role(data_dir: Path | None, database_url: str | None, username: str, role: str) -> None:
    """Make a user an admin or a plain user."""
    with _session(data_dir, database_url) as (session, _):
        user = _user(session, username)
        before = user.role
        if before == "admin" and role != "admin" and users.active_admin_count(session) <= 1:
            raise click.ClickException("this is the last active admin: promote another user first")
        users.set_role(user, role)
        _cli_audit(session, "role_changed", f"user:{user.username}", **{"from": before, "to": role})
    click.echo(f"{username!r} is now {role}")


@users_group.command("list")
@database_options
def list_users(data_dir: Path | None, database_url: str | None) -> None:
    """Every account with its role and state."""
    with _session(data_dir, database_url) as (session, _):
        rows = list(session.scalars(select(User).order_by(User.id)))
        click.echo(f"{'ID':>4}  {'USERNAME':<20} {'ROLE':<6} {'ACTIVE':<6} EMAIL")
        for user in rows:
            click.echo(
                f"{user.id:>4}  {user.username:<20} {user.role:<6} {'yes' if user.is_active else 'no':<6} "
                f"{user.email}"
            )


@click.group("api-keys")
def api_keys_group() -> None:
    """API keys for machines (ingest agents, dashboards): create, list, revoke."""


@api_keys_group.command("create")
@database_options
@click.argument("username")
@click.option("--name", required=True, help="What the key is for")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(apikeys.SCOPES),
    help="Repeatable: ingest, read, admin",
)
@click.option(
    "--expires-days", type=click.IntRange(1, 3650), default=None, help="Expire after this many days"
)
def create_key(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    name: str,
    scopes: tuple[str, ...],
    expires_days: int | None,
) -> None:
    """Create a key owned by USERNAME and print it (the only time it is shown)."""
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with _session(data_dir, database_url) as (session, _):
        owner = _user(session, username)
        row, plaintext = apikeys.create_key(
            session, owner, name=name, scopes=list(scopes), expires_at=expires
        )
        _cli_audit(
            session, "api_key_created", f"api_key:{row.id}", prefix=row.prefix, scopes=list(row.scopes)
        )
    click.echo(plaintext)
    click.echo(
        f"key {row.id} ({row.prefix}…, {', '.join(row.scopes)}): store it now, it is not shown again",
        err=True,
    )


@api_keys_group.command("list")
@database_options
@click.option("--user", "username", default=None, help="Only this user's keys")
def list_keys(data_dir: Path | None, database_url: str | None, username: str | None) -> None:
    """Keys with prefix, scopes, expiry and last use (never the keys)."""
    with _session(data_dir, database_url) as (session, _):
        user_id = _user(session, username).id if username else None
        names = {uid: name for uid, name in session.execute(select(User.id, User.username))}
        click.echo(
            f"{'ID':>4}  {'PREFIX':<12} {'OWNER':<16} {'SCOPES':<18} {'STATE':<8} {'LAST USED':<20} NAME"
        )
        for row in apikeys.list_keys(session, user_id):
            state = (
                "revoked"
                if row.revoked_at
                else "expired"
                if row.expires_at and row.expires_at <= datetime.now(UTC)
                else "active"
            )
            used = row.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if row.last_used_at else "never"
            click.echo(
                f"{row.id:>4}  {row.prefix:<12} {names.get(row.user_id, '?'):<16} "
                f"{','.join(row.scopes):<18} {state:<8} {used:<20} {row.name}"
            )


@api_keys_group.command("revoke")
@database_options
@click.argument("key_id", type=int)
def revoke_key(data_dir: Path | None, database_url: str | None, key_id: int) -> None:
    """Revoke key KEY_ID: requests with it fail from now on."""
    with _session(data_dir, database_url) as (session, _):
        row = apikeys.revoke_key(session, key_id, user_id=None)
        if row is None:
            raise click.ClickException(f"no API key {key_id}")
        _cli_audit(session, "api_key_revoked", f"api_key:{row.id}", prefix=row.prefix)
    click.echo(f"revoked key {key_id} ({row.prefix}…)")
