"""``/api/v1/auth``: register, login, me, refresh, logout and API keys (the seed's auth flow)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from logflow.auth import apikeys, audit, users
from logflow.auth.deps import AuthDep, CurrentUser, Principal, client_ip
from logflow.auth.errors import AuthError
from logflow.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    LogoutIn,
    MeUpdateIn,
    RefreshIn,
    RegisterIn,
    TokenOut,
    UserOut,
)
from logflow.auth.service import DEFAULT_PASSWORD_WARNING, AuthService
from logflow.db.models import User
from logflow.db.passwords import verify_password
from logflow.db.session import session_scope

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid credentials"},
    403: {"description": "not allowed"},
}


def _token_only(principal: Principal) -> None:
    # Machines must not manage credentials: a read-only key could otherwise mint itself an ingest
    # key, or change its owner's password.
    if principal.via != "token":
        raise HTTPException(403, "use a user access token (not an API key) for this")


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses={
        403: {"description": "registration disabled"},
        409: {"description": "username or email taken"},
    },
)
async def register(body: RegisterIn, request: Request, auth: AuthDep) -> UserOut:
    """Create an account with the ``user`` role (public unless LOGFLOW_ALLOW_REGISTRATION is off)."""
    if not auth.settings.effective_allow_registration:
        raise HTTPException(403, "self-registration is disabled: ask an admin for an account")

    def run() -> UserOut:
        with session_scope(auth.sessions) as session:
            user = users.create_user(
                session,
                username=body.username,
                email=body.email,
                password=body.password,
                full_name=body.full_name,
            )
            audit.record(
                session,
                action="user_registered",
                actor_user_id=user.id,
                target=f"user:{user.username}",
                client_ip=client_ip(request),
            )
            return UserOut.of(user)

    return await run_in_threadpool(run)


@router.post(
    "/login", response_model=TokenOut, responses={401: ERRORS[401], 429: {"description": "rate limited"}}
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, auth: AuthDep
) -> TokenOut:
    """OAuth2 password flow (``application/x-www-form-urlencoded``): an access and a refresh token."""
    pair, default_password = await run_in_threadpool(
        auth.login, form.username, form.password, client_ip(request)
    )
    if default_password:
        request.state.logflow_warning = DEFAULT_PASSWORD_WARNING
    return TokenOut(**pair.to_json())  # type: ignore[arg-type]


@router.post("/refresh", response_model=TokenOut, responses={401: ERRORS[401]})
async def refresh(body: RefreshIn, request: Request, auth: AuthDep) -> TokenOut:
    """Trade a refresh token for a new pair. Each works once; reusing one ends its login session."""
    pair = await run_in_threadpool(auth.refresh, body.refresh_token, client_ip(request))
    return TokenOut(**pair.to_json())  # type: ignore[arg-type]


@router.post("/logout", status_code=204, responses=ERRORS)
async def logout(
    principal: CurrentUser, request: Request, auth: AuthDep, body: Annotated[LogoutIn | None, Body()] = None
) -> Response:
    """End this login session: its access and refresh tokens stop working."""
    _token_only(principal)
    await run_in_threadpool(auth.logout, principal, body.refresh_token if body else None, client_ip(request))
    return Response(status_code=204)


def _load_user(auth: AuthService, principal: Principal) -> User:
    with auth.sessions() as session:
        user = session.get(User, principal.user_id)
        if user is None:
            raise HTTPException(401, "account no longer exists", headers={"WWW-Authenticate": "Bearer"})
        return user


@router.get("/me", response_model=UserOut, responses=ERRORS)
async def me(principal: CurrentUser, auth: AuthDep) -> UserOut:
    """The signed-in user (for an API key: its owner)."""
    return UserOut.of(await run_in_threadpool(_load_user, auth, principal))


@router.put("/me", response_model=UserOut, responses={**ERRORS, 409: {"description": "email taken"}})
async def update_me(body: MeUpdateIn, principal: CurrentUser, request: Request, auth: AuthDep) -> UserOut:
    """Change email, full name or password. A password change needs ``current_password`` and ends
    every login session of the account (sign in again afterwards)."""
    _token_only(principal)

    def run() -> UserOut:
        with session_scope(auth.sessions) as session:
            user = session.get(User, principal.user_id)
            if user is None:
                raise AuthError(401, "account no longer exists")
            if body.email is not None and body.email.lower() != user.email.lower():
                if users.email_taken(session, body.email):
                    raise AuthError(409, "email already registered")
                user.email = body.email
            if body.full_name is not None:
                user.full_name = body.full_name
            if body.password is not None:
                if body.current_password is None or not verify_password(
                    body.current_password, user.password_hash
                ):
                    raise AuthError(403, "current_password is missing or wrong")
                users.set_password(session, user, body.password, strict=auth.strict_passwords)
                audit.record(
                    session,
                    action="password_changed",
                    actor_user_id=user.id,
                    target=f"user:{user.username}",
                    client_ip=client_ip(request),
                )
            return UserOut.of(user)

    return await run_in_threadpool(run)


# -- API keys ---------------------------------------------------------------------------------------


def _key_out(row: apikeys.KeyView) -> ApiKeyOut:
    return ApiKeyOut(**row.__dict__)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated, responses=ERRORS)
async def create_api_key(
    body: ApiKeyIn, principal: CurrentUser, request: Request, auth: AuthDep
) -> ApiKeyCreated:
    """A key for machines (``ingest``, ``read``, ``admin`` scopes). The key is in this answer only."""
    _token_only(principal)

    def run() -> ApiKeyCreated:
        with session_scope(auth.sessions) as session:
            owner = session.get(User, principal.user_id)
            if owner is None:
                raise AuthError(401, "account no longer exists")
            row, plaintext = apikeys.create_key(
                session, owner, name=body.name, scopes=list(body.scopes), expires_at=body.expires_at
            )
            audit.record(
                session,
                action="api_key_created",
                actor_user_id=owner.id,
                target=f"api_key:{row.id}",
                client_ip=client_ip(request),
                detail={"name": row.name, "prefix": row.prefix, "scopes": list(row.scopes)},
            )
            return ApiKeyCreated(**apikeys.KeyView.of(row).__dict__, key=plaintext)

    return await run_in_threadpool(run)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=ERRORS)
async def list_api_keys(
    principal: CurrentUser,
    auth: AuthDep,
    all_users: Annotated[bool, Query(alias="all", description="admins: every user's keys")] = False,
) -> list[ApiKeyOut]:
    """Your keys (prefix, scopes, expiry, last use), never the keys themselves."""
    if all_users and not principal.is_admin:
        raise HTTPException(403, "admin role required for all=true")

    def run() -> list[ApiKeyOut]:
        with auth.sessions() as session:
            rows = apikeys.list_keys(session, None if all_users else principal.user_id)
            return [_key_out(apikeys.KeyView.of(row)) for row in rows]

    return await run_in_threadpool(run)


@router.delete(
    "/api-keys/{key_id}", status_code=204, responses={**ERRORS, 404: {"description": "no such key"}}
)
async def revoke_api_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: CurrentUser, request: Request, auth: AuthDep
) -> Response:
    """Revoke one of your keys (admins: anyone's). Someone else's key is a 404, not a 403."""
    _token_only(principal)

    def run() -> None:
        with session_scope(auth.sessions) as session:
            row = apikeys.revoke_key(
                session, key_id, user_id=None if principal.is_admin else principal.user_id
            )
            if row is None:
                raise AuthError(404, f"no API key {key_id}")
            audit.record(
                session,
                action="api_key_revoked",
                actor_user_id=principal.user_id,
                target=f"api_key:{row.id}",
                client_ip=client_ip(request),
                detail={"prefix": row.prefix, "owner_id": row.user_id},
            )

    await run_in_threadpool(run)
    return Response(status_code=204)
