"""Who is making a request: a user (token), a machine (API key acting for its owner) or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a user's token may do, by role. An API key may do the intersection of its scopes and this.
ROLE_SCOPES = {"user": frozenset({"read", "ingest"}), "admin": frozenset({"read", "ingest", "admin"})}


@dataclass(frozen=True)
class Principal:
    """The caller. ``scopes`` are effective: ``admin`` implies ``read`` and ``ingest``."""

    user_id: int | None
    username: str | None
    is_admin: bool
    scopes: frozenset[str]
    via: Literal["token", "api_key", "anonymous"]
    key_id: int | None = None  # the API key, when via == "api_key"
    family: str | None = None  # the login session, when via == "token"

    @property
    def authenticated(self) -> bool:
        return self.via != "anonymous"

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def rate_key(self) -> str | None:
        """Identity the API rate limit counts under (None: count by client address)."""
        if self.via == "api_key":
            return f"key:{self.key_id}"
        if self.via == "token":
            return f"user:{self.user_id}"
        return None


ANONYMOUS = Principal(user_id=None, username=None, is_admin=False, scopes=frozenset(), via="anonymous")


def for_user(user_id: int, username: str, is_admin: bool, family: str) -> Principal:
    return Principal(
        user_id=user_id,
        username=username,
        is_admin=is_admin,
        scopes=ROLE_SCOPES["admin" if is_admin else "user"],
        via="token",
        family=family,
    )


def for_key(key_id: int, scopes: list[str], user_id: int, username: str, owner_is_admin: bool) -> Principal:
    allowed = ROLE_SCOPES["admin" if owner_is_admin else "user"]
    effective = frozenset(scopes) & allowed  # an owner demoted from admin takes the key's admin power along
    return Principal(
        user_id=user_id,
        username=username,
        is_admin="admin" in effective,
        scopes=effective,
        via="api_key",
        key_id=key_id,
    )
