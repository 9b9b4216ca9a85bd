"""``AuthService``: the per-app auth state (signing key, rate limiter, DB sessions) and its flows.

Everything here is synchronous and touches the database: the API calls it in a worker thread.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from logflow.auth import audit, sessions
from logflow.auth.apikeys import authenticate
from logflow.auth.errors import AuthError, TokenError
from logflow.auth.principal import Principal, for_key, for_user
from logflow.auth.ratelimit import RateLimited, RateLimiter
from logflow.auth.secret import resolve_secret_key
from logflow.auth.tokens import ACCESS, TokenCodec
from logflow.auth.users import find_user, has_default_password
from logflow.db.models import User
from logflow.db.passwords import dummy_verify, hash_password, needs_rehash, verify_password
from logflow.db.session import make_session_factory, session_scope
from logflow.runtime import Runtime

log = logging.getLogger("logflow.auth")

BAD_LOGIN = "incorrect username or password"
DEFAULT_PASSWORD_WARNING = (
    "this account uses the published default password admin123: "
    "change it with PUT /api/v1/auth/me or `logflow users set-password admin`"
)


class AuthService:
    """Shared by every request of one app; thread-safe."""

    def __init__(self, runtime: Runtime, secret: str) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.codec = TokenCodec(
            secret,
            settings.algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl_s=settings.access_token_expire_minutes * 60,
            refresh_ttl_s=settings.refresh_token_expire_days * 86400,
        )
        self.sessions: sessionmaker[Session] = make_session_factory(runtime.database)
        self.limiter = RateLimiter(runtime.cache)
        # (user id, password hash) -> uses the default password; avoids an argon2 run per request.
        self._default_memo: dict[tuple[int, str], bool] = {}
        self._memo_lock = threading.Lock()

    @property
    def strict_passwords(self) -> bool:
        """Production applies the strong-password rules to admins (users.check_password)."""
        return self.settings.env == "production"

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> AuthService:
        """Resolve the signing key (StartupRefused in production when it is weak) and build the service."""
        return cls(runtime, resolve_secret_key(runtime.settings))

    # -- default password ----------------------------------------------------------------------------

    def uses_default_password(self, user: User) -> bool:
        if user.password_changed_at is not None:
            return False
        memo_key = (user.id, user.password_hash)
        with self._memo_lock:
            known = self._default_memo.get(memo_key)
        if known is None:
            known = has_default_password(user)
            with self._memo_lock:
                self._default_memo[memo_key] = known
        return known

    def default_password_accounts(self) -> list[str]:
        """Active admins still on the default password (for /health and the start-up log)."""
        with self.sessions() as session:
            candidates = session.scalars(
                select(User).where(
                    User.is_admin.is_(True), User.is_active.is_(True), User.password_changed_at.is_(None)
                )
            )
            return [u.username for u in candidates if self.uses_default_password(u)]

    # -- credentials -> principal --------------------------------------------------------------------

    def principal_for_token(self, token: str) -> tuple[Principal, bool]:
        """The principal of an access token and whether its account is on the default password."""
        claims = self.codec.decode(token, ACCESS)
        with self.sessions() as session:
            user = session.get(User, claims.user_id)
            if user is None or not user.is_active:
                raise TokenError("account missing or disabled")
            if sessions.family_revoked(session, claims.family):
                raise TokenError("session ended (logged out or revoked)")
            return (
                for_user(user.id, user.username, user.is_admin, claims.family),
                self.uses_default_password(user),
            )

    def principal_for_key(self, plaintext: str) -> tuple[Principal, bool]:
        with session_scope(self.sessions) as session:
            found = authenticate(session, plaintext)
            if found is None:
                raise TokenError("unknown, revoked or expired API key")
            key, owner = found
            return (
                for_key(key.id, list(key.scopes), owner.id, owner.username, owner.is_admin),
                self.uses_default_password(owner),
            )

    # -- flows ---------------------------------------------------------------------------------------

    def _limit_login(self, username: str, client_ip: str) -> None:
        s = self.settings
        try:
            self.limiter.hit(
                f"login:addr:{client_ip}",
                limit=s.rate_login_per_address,
                window_s=s.rate_login_window_s,
                what="login attempts from this address",
            )
            self.limiter.hit(
                f"login:user:{username.lower()[:64]}",
                limit=s.rate_login_per_account,
                window_s=s.rate_login_window_s,
                what="login attempts for this account",
            )
        except RateLimited as exc:
            log.warning("login rate limit: user=%r ip=%s (%s)", username, client_ip, exc)
            raise AuthError(429, str(exc), retry_after=exc.retry_after) from None

    def login(self, username: str, password: str, client_ip: str) -> tuple[sessions.TokenPair, bool]:
        """Tokens for valid credentials, and whether the account is on the default password.

        AuthError 401 (same text, same argon2 cost, for an unknown user and a wrong password) or 429.
        """
        self._limit_login(username, client_ip)
        with session_scope(self.sessions) as session:
            user = find_user(session, username)
            if user is None:
                dummy_verify(password)  # the same argon2 work as a real check: timing tells nothing
                ok, reason = False, "unknown user"
            else:
                ok = verify_password(password, user.password_hash)
                reason = "wrong password" if not ok else "account disabled" if not user.is_active else ""
                ok = ok and user.is_active
            if not ok or user is None:
                audit.record(
                    session,
                    action="login_failed",
                    actor_user_id=user.id if user else None,
                    target=f"user:{username[:64]}",
                    client_ip=client_ip,
                    detail={"reason": reason},
                )
            else:
                if needs_rehash(user.password_hash):  # scrypt (or weaker argon2) -> current argon2id
                    user.password_hash = hash_password(password)
                pair = sessions.issue(session, self.codec, user.id)
                audit.record(
                    session,
                    action="login",
                    actor_user_id=user.id,
                    target=f"user:{user.username}",
                    client_ip=client_ip,
                    detail={},
                )
                return pair, self.uses_default_password(user)
        raise AuthError(401, BAD_LOGIN)

    def refresh(self, token: str, client_ip: str) -> sessions.TokenPair:
        with self.sessions() as session:
            try:
                rotation = sessions.rotate(session, self.codec, token)
            except TokenError as exc:
                session.rollback()
                raise AuthError(401, str(exc)) from None
            if rotation.pair is None:
                audit.record(
                    session,
                    action="refresh_token_reused",
                    actor_user_id=rotation.user_id,
                    target=f"user:{rotation.user_id}",
                    client_ip=client_ip,
                    detail={"effect": "session family revoked"},
                )
                session.commit()
                raise AuthError(401, "refresh token already used: this login session was revoked")
            session.commit()
            return rotation.pair

    def logout(self, principal: Principal, refresh_token: str | None, client_ip: str) -> None:
        """End the caller's login session (and the one ``refresh_token`` belongs to, if the caller's)."""
        families = {principal.family} if principal.family else set()
        if refresh_token:
            try:
                claims = self.codec.decode(refresh_token, "refresh")
            except TokenError:
                claims = None
            if claims is not None and claims.user_id == principal.user_id:
                families.add(claims.family)
        with session_scope(self.sessions) as session:
            for family in families:
                sessions.revoke_family(session, family)
            audit.record(
                session,
                action="logout",
                actor_user_id=principal.user_id,
                target=f"user:{principal.username}",
                client_ip=client_ip,
                detail={},
            )
