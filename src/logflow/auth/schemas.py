"""Request and response models of the auth and admin APIs (shapes from the seed where it has one)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from logflow.auth.users import PASSWORD_MAX, PASSWORD_MIN
from logflow.db.models import User

Username = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# A light check only: the seed's default admin address (admin@logflow.local) must pass.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
Password = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Username
    email: str = Field(max_length=255, pattern=EMAIL_PATTERN)
    password: str = Password
    full_name: str | None = Field(None, max_length=255)


class AdminCreateUserIn(RegisterIn):
    role: Literal["user", "admin"] = "user"


class UserOut(BaseModel):
    """The seed's user shape, plus ``role`` and timestamps."""

    id: int
    username: str
    email: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    role: str
    created_at: datetime
    password_changed_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            full_name=user.full_name,
            is_active=user.is_active,
            is_admin=user.is_admin,
            role=user.role,
            created_at=user.created_at,
            password_changed_at=user.password_changed_at,
        )


class MeUpdateIn(BaseModel):
    """``PUT /me``: changing the password requires the current one."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=255, pattern=EMAIL_PATTERN)
    full_name: str | None = Field(None, max_length=255)
    password: str | None = Field(None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    current_password: str | None = Field(None, max_length=PASSWORD_MAX)


class UserPatchIn(BaseModel):
    """Admin changes to a user."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None


class AdminPasswordIn(BaseModel):
    """``PUT /admin/users/{id}/password``: an admin sets a user's password (no current one needed)."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds")


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(None, max_length=4096)


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["ingest", "read", "admin"]] = Field(min_length=1, max_length=3)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    user_id: int
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the API key: shown this once, store it now")


class AuditOut(BaseModel):
    id: int
    at: str
    action: str
    actor_user_id: int | None
    actor: str | None
    target: str | None
    client_ip: str | None
    detail: dict[str, Any]
