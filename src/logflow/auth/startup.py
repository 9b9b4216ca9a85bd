"""Start-up: the first admin account and the checks that refuse an unsafe production start.

``prepare(runtime)`` is what ``create_app`` runs: it creates the first admin when there is no user,
then ``check`` collects every problem at once. Production refuses to start (StartupRefused,
listing them all) for a weak or missing secret, an admin on the default or a well-known password,
or a CORS wildcard with credentials; development starts and warns loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from logflow.auth.errors import AuthError, StartupRefused
from logflow.auth.secret import secret_problem
from logflow.auth.users import create_user, has_default_password, weak_password
from logflow.db.maintenance import DEFAULT_ADMIN, create_default_admin
from logflow.db.models import User
from logflow.runtime import Runtime
from logflow.settings import Settings

log = logging.getLogger("logflow.auth")


@dataclass
class StartupReport:
    """What start-up did and what it wants an operator to know."""

    created_admin: str | None = None  # "default" or "configured"
    warnings: list[str] = field(default_factory=list)


def ensure_first_admin(runtime: Runtime) -> str | None:
    """Create the first admin when the database has no user at all.

    ``LOGFLOW_ADMIN_PASSWORD`` gives it that password (it must be strong in production); else,
    outside production, the seed's ``admin``/``admin123``. Production without the setting creates
    nobody: create an admin with ``logflow users create --admin``.
    """
    settings = runtime.settings
    configured = settings.admin_password.get_secret_value() if settings.admin_password else None
    if configured is None:
        if settings.env == "production":
            return None
        return "default" if create_default_admin(runtime.database) else None
    with Session(runtime.database) as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        try:
            create_user(
                session,
                username=DEFAULT_ADMIN["username"],
                email=DEFAULT_ADMIN["email"],
                password=configured,
                full_name="LogFlow Administrator",
                is_admin=True,
                strict=settings.env == "production",
            )
            session.commit()
        except AuthError as exc:
            if exc.status == 409:  # another replica created it first
                return None
            raise StartupRefused(f"LOGFLOW_ADMIN_PASSWORD: {exc.detail}") from None
    return "configured"


def weak_admins(runtime: Runtime, *, thorough: bool) -> list[str]:
    """``name (why)`` for each active admin on the default (or, ``thorough``, a well-known) password.

    ``thorough`` costs one argon2 verification per admin and candidate, so only production runs it.
    """
    found = []
    with Session(runtime.database) as session:
        for user in session.scalars(select(User).where(User.is_admin.is_(True), User.is_active.is_(True))):
            if has_default_password(user):
                found.append(f"{user.username} (the default password)")
            elif thorough and (weak := weak_password(user)) is not None:
                found.append(f"{user.username} (the well-known password {weak!r})")
    return found


def config_problems(settings: Settings) -> list[str]:
    """Configuration refused in every environment, and more in production."""
    problems = []
    if "*" in settings.cors_origins and settings.cors_allow_credentials:
        problems.append(
            "LOGFLOW_CORS_ORIGINS='*' with credentials would let any web site act as a signed-in "
            "user: list the allowed origins, or set LOGFLOW_CORS_ALLOW_CREDENTIALS=false"
        )
    if settings.env == "production":
        problem = secret_problem(settings.secret_key.get_secret_value())
        if problem:
            problems.append(f"LOGFLOW_SECRET_KEY {problem}: set a random secret (`openssl rand -hex 32`)")
    return problems


def check(runtime: Runtime) -> list[str]:
    """Warnings for this start; StartupRefused listing every problem that forbids it."""
    settings = runtime.settings
    problems = config_problems(settings)
    warnings = []
    weak = weak_admins(runtime, thorough=settings.env == "production")
    if settings.env == "production":
        problems += [
            f"admin {entry}: set a strong password with `logflow users set-password`" for entry in weak
        ]
    else:
        warnings += [
            f"admin {entry}: change it before exposing LogFlow (ignored only outside production)"
            for entry in weak
        ]
    if problems:
        raise StartupRefused("refusing to start:\n  " + "\n  ".join(problems))
    if settings.env == "production":
        if settings.ingest_open:
            warnings.append("LOGFLOW_INGEST_OPEN=true: anyone who reaches the API can ingest")
        if settings.effective_public_read:
            warnings.append("LOGFLOW_PUBLIC_READ=true: anyone who reaches the API can read logs and metrics")
    return warnings


def prepare(runtime: Runtime) -> StartupReport:
    """First admin, then the checks; warnings are logged as well as returned."""
    report = StartupReport(created_admin=ensure_first_admin(runtime))
    if report.created_admin == "default":
        log.warning(
            "created the default admin user %r with password %r",
            DEFAULT_ADMIN["username"],
            DEFAULT_ADMIN["password"],
        )
    report.warnings = check(runtime)
    for warning in report.warnings:
        log.warning("SECURITY: %s", warning)
    return report
