"""Accounts: creation, password rules, password changes, roles; shared by the API and the CLI.

Password rules follow the seed (8–72 characters). Admin passwords in production must also be
strong (``strict``): at least 12 characters and not a well-known password, because production
refuses to start while an admin's password is the default or weak.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from logflow.auth.errors import AuthError
from logflow.db.maintenance import DEFAULT_ADMIN
from logflow.db.models import RefreshToken, User
from logflow.db.passwords import hash_password, verify_password

PASSWORD_MIN = 8
PASSWORD_MAX = 72
STRICT_MIN = 12
ROLES = ("user", "admin")
# Checked against admins' hashes at production start-up: each costs one argon2 verification.
WEAK_PASSWORDS = (
    DEFAULT_ADMIN["password"],
    "admin",
    "administrator",
    "password",
    "password123",
    "changeme",
    "12345678",
    "123456789",
    "qwerty123",
    "logflow",
    "letmein123",
)


def password_problem(password: str, *, username: str | None = None, strict: bool = False) -> str | None:
    """Why ``password`` is not acceptable, or None. ``strict`` adds the production admin rules."""
    if len(password) < PASSWORD_MIN:
        return f"password must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"password must be at most {PASSWORD_MAX} characters"
    if strict:
        if len(password) < STRICT_MIN:
            return f"an admin password in production must be at least {STRICT_MIN} characters"
        lowered = password.lower()
        if lowered in WEAK_PASSWORDS or (username and username.lower() in lowered):
            return "password is too easy to guess"
    return None


def check_password(password: str, *, username: str | None = None, strict: bool = False) -> None:
    """Raise AuthError(422) when ``password`` breaks the rules."""
    problem = password_problem(password, username=username, strict=strict)
    if problem:
        raise AuthError(422, problem)


def create_user(
    session: Session,
    *,
    username: str,
    email: str,
    password: str,
    full_name: str | None = None,
    is_admin: bool = False,
    strict: bool = False,
) -> User:
    """Insert a user (flushes); AuthError 409 when the username or email is taken, 422 for the password."""
    check_password(password, username=username, strict=strict and is_admin)
    taken = session.scalar(
        select(User.username).where(
            (func.lower(User.username) == username.lower()) | (func.lower(User.email) == email.lower())
        )
    )
    if taken is not None:
        raise AuthError(409, "username or email already registered")
    user = User(
        username=username,
        email=email,
        full_name=full_name,
        password_hash=hash_password(password),
        is_admin=is_admin,
        role="admin" if is_admin else "user",
        is_active=True,
        password_changed_at=datetime.now(UTC),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # a concurrent registration won the unique constraint
        raise AuthError(409, "username or email already registered") from None
    return user


def set_password(session: Session, user: User, password: str, *, strict: bool = False) -> None:
    """Change the password and end every login session of the user (refresh token families)."""
    check_password(password, username=user.username, strict=strict and user.is_admin)
    user.password_hash = hash_password(password)
    user.password_changed_at = datetime.now(UTC)
    revoke_all_sessions(session, user.id)


def set_role(user: User, role: str) -> None:
    """``admin`` or ``user``; keeps ``is_admin`` in step with ``role``."""
    if role not in ROLES:
        raise AuthError(422, f"role must be one of {', '.join(ROLES)}")
    user.role = role
    user.is_admin = role == "admin"


def revoke_all_sessions(session: Session, user_id: int) -> None:
    """Revoke every refresh token of the user, which also kills their access tokens."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


def find_user(session: Session, username: str) -> User | None:
    """The user with this username (case-insensitive)."""
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def email_taken(session: Session, email: str) -> bool:
    return session.scalar(select(User.id).where(func.lower(User.email) == email.lower())) is not None


def active_admin_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(User).where(User.is_admin.is_(True), User.is_active.is_(True))
        )
        or 0
    )


def has_default_password(user: User) -> bool:
    """True while the user's password is the seed's published default.

    Cheap for almost everyone: a password set through LogFlow records ``password_changed_at``, so
    only users that never changed theirs cost an argon2 verification.
    """
    return user.password_changed_at is None and verify_password(DEFAULT_ADMIN["password"], user.password_hash)


def weak_password(user: User) -> str | None:
    """Which well-known password the user has, if any (one argon2 verification per candidate)."""
    for candidate in WEAK_PASSWORDS:
        if verify_password(candidate, user.password_hash):
            return candidate
    return None
