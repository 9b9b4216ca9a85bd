"""API keys for machines: ``lf_`` + 43 random characters, shown once, stored as SHA-256.

Why SHA-256 and not argon2: a key is 256 random bits, not a human password, so guessing it is
hopeless however fast the hash is; a fast, unsalted digest lets a request find its key with one
indexed equality lookup (``key_hash`` is unique) instead of a slow hash per stored key. A stolen
database still yields no usable key. The first 11 characters (``prefix``) are kept in clear so a
person can tell keys apart in listings and logs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from logflow.auth.errors import AuthError
from logflow.db.models import ApiKey, User

KEY_PREFIX = "lf_"
PREFIX_CHARS = 11  # "lf_" + 8 characters: enough to tell keys apart, far too little to guess the rest
SCOPES = ("ingest", "read", "admin")
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


@dataclass(frozen=True)
class KeyView:
    """An API key as listed (never the key itself)."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    user_id: int
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            user_id=key.user_id,
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


def normalize_scopes(scopes: list[str], *, owner_is_admin: bool) -> list[str]:
    """Deduplicated, validated scopes; only admins may hand out ``admin``."""
    if not scopes:
        raise AuthError(422, f"scopes: give at least one of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise AuthError(422, f"scopes: unknown {', '.join(unknown)}; valid: {', '.join(SCOPES)}")
    if "admin" in scopes and not owner_is_admin:
        raise AuthError(403, "only admins can create keys with the admin scope")
    return [s for s in SCOPES if s in scopes]


def create_key(
    session: Session, owner: User, *, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key for ``owner``; returns the row and the plaintext key (the only time it exists)."""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise AuthError(422, "expires_at must be in the future")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        user_id=owner.id,
        name=name,
        prefix=plaintext[:PREFIX_CHARS],
        key_hash=digest(plaintext),
        scopes=normalize_scopes(scopes, owner_is_admin=owner.is_admin),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def authenticate(session: Session, plaintext: str) -> tuple[ApiKey, User] | None:
    """The live key and its active owner for ``plaintext``; None if unknown, revoked or expired."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest(plaintext)))
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    owner = session.get(User, row.user_id)
    if owner is None or not owner.is_active:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row, owner


def list_keys(session: Session, user_id: int | None) -> list[ApiKey]:
    """Keys of ``user_id`` (every user's when None), newest first."""
    query = select(ApiKey).order_by(ApiKey.id.desc())
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list(session.scalars(query))


def revoke_key(session: Session, key_id: int, *, user_id: int | None) -> ApiKey | None:
    """Revoke a key of ``user_id`` (any user's when None); None when there is no such key for them."""
    row = session.get(ApiKey, key_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        return None
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    return row
