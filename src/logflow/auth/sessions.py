"""Login sessions: refresh token families with rotation and reuse detection.

Each login starts a *family*. A refresh token works once: refreshing marks it used and issues the
next token of the same family. Presenting a used token again means it was stolen (or replayed),
so the whole family is revoked, logging out both the thief and the victim. Access tokens carry
their family (``fam``), so revoking a family (logout, reuse, password change) also ends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from logflow.auth.errors import TokenError
from logflow.auth.tokens import REFRESH, TokenCodec, new_id
from logflow.db.models import RefreshToken, User


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    family: str

    def to_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


def issue(session: Session, codec: TokenCodec, user_id: int, family: str | None = None) -> TokenPair:
    """An access and refresh token; a new family unless continuing ``family`` (rotation)."""
    family = family or new_id()
    jti = new_id()
    refresh, expires_at = codec.refresh_token(user_id, family, jti)
    session.add(RefreshToken(user_id=user_id, family_id=family, jti=jti, expires_at=expires_at))
    return TokenPair(
        access_token=codec.access_token(user_id, family),
        refresh_token=refresh,
        expires_in=codec.access_ttl_s,
        refresh_expires_in=codec.refresh_ttl_s,
        family=family,
    )


def revoke_family(session: Session, family: str) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


def family_revoked(session: Session, family: str) -> bool:
    """Whether the login session ``family`` was ended (logout, reuse, password change)."""
    row = session.scalar(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_not(None))
        .limit(1)
    )
    return row is not None


@dataclass(frozen=True)
class Rotation:
    """The outcome of a refresh: a new pair, or the reuse that revoked a family."""

    pair: TokenPair | None
    user_id: int
    reused: bool


def rotate(session: Session, codec: TokenCodec, token: str) -> Rotation:
    """Spend ``token`` and issue the next pair; TokenError when it is invalid, revoked or expired.

    A second use returns ``reused=True`` after revoking the family (the caller commits that and
    answers 401). The ``UPDATE … WHERE used_at IS NULL`` makes two concurrent uses of one token
    count as a reuse rather than both succeeding.
    """
    claims = codec.decode(token, REFRESH)
    row = session.scalar(select(RefreshToken).where(RefreshToken.jti == claims.jti))
    if row is None or row.user_id != claims.user_id:
        raise TokenError("unknown refresh token")
    if row.revoked_at is not None:
        raise TokenError("refresh token revoked")
    now = datetime.now(UTC)
    spent = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if getattr(spent, "rowcount", 0) != 1:
        revoke_family(session, row.family_id)
        return Rotation(pair=None, user_id=row.user_id, reused=True)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise TokenError("account disabled")
    # Forget this user's long-expired tokens while we are here (keeps the table small).
    session.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == row.user_id, RefreshToken.expires_at < now - timedelta(days=1)
        )
    )
    return Rotation(pair=issue(session, codec, row.user_id, row.family_id), user_id=row.user_id, reused=False)
