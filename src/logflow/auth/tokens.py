"""JSON Web Tokens: access tokens (short-lived, stateless) and refresh tokens (one use, in the DB).

The algorithm is pinned by the server: ``decode`` passes exactly one allowed algorithm to PyJWT,
so a token's own ``alg`` header (``none``, ``RS256`` with a public key as HMAC secret…) can only
make verification fail. Every token carries ``iss``, ``aud``, ``sub``, ``iat``, ``exp`` and ``jti``,
and all are required; ``typ`` keeps a refresh token from being used as an access token.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from logflow.auth.errors import TokenError

ACCESS = "access"
REFRESH = "refresh"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True)
class Claims:
    """The verified content of a token."""

    user_id: int
    jti: str
    family: str
    expires_at: datetime


def new_id() -> str:
    """A random token or family id (128 bits)."""
    return secrets.token_urlsafe(16)


class TokenCodec:
    """Signs and verifies LogFlow's tokens with one secret and one pinned HMAC algorithm."""

    def __init__(
        self,
        secret: str,
        algorithm: str,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
        leeway_s: int = 10,
    ) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._leeway = leeway_s  # clock skew between API replicas

    def _encode(self, user_id: int, typ: str, jti: str, family: str, ttl_s: int) -> tuple[str, datetime]:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": jti,
            "typ": typ,
            "fam": family,
        }
        token = jwt.encode(payload, self._secret, algorithm=self._algorithm)
        return token, datetime.fromtimestamp(now + ttl_s, UTC)

    def access_token(self, user_id: int, family: str) -> str:
        """An access token for ``user_id`` belonging to login session ``family``."""
        return self._encode(user_id, ACCESS, new_id(), family, self.access_ttl_s)[0]

    def refresh_token(self, user_id: int, family: str, jti: str) -> tuple[str, datetime]:
        """A refresh token and its expiry; the caller stores ``jti`` to make it single-use."""
        return self._encode(user_id, REFRESH, jti, family, self.refresh_ttl_s)

    def decode(self, token: str, typ: str) -> Claims:
        """The verified claims of a token of kind ``typ``; TokenError for anything else."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        sub, jti, family = payload.get("sub"), payload.get("jti"), payload.get("fam")
        if payload.get("typ") != typ:
            raise TokenError(f"not an {typ} token" if typ == ACCESS else f"not a {typ} token")
        if not (isinstance(sub, str) and sub.isdigit() and isinstance(jti, str) and isinstance(family, str)):
            raise TokenError("invalid token: malformed claims")
        return Claims(
            user_id=int(sub),
            jti=jti,
            family=family,
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
