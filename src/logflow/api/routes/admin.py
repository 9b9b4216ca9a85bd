"""``/api/v1/admin``: user management and the audit trail (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from logflow.auth import audit, users
from logflow.auth.deps import AdminUser, AuthDep, client_ip
from logflow.auth.errors import AuthError
from logflow.auth.schemas import AdminCreateUserIn, AdminPasswordIn, AuditOut, UserOut, UserPatchIn
from logflow.db.models import User
from logflow.db.session import session_scope

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated"},
    403: {"description": "admin role required"},
}


def _user_or_404(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AuthError(404, f"no user {user_id}")
    return user


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
async def list_users(_: AdminUser, auth: AuthDep) -> list[UserOut]:
    """Every account."""

    def run() -> list[UserOut]:
        with auth.sessions() as session:
            return [UserOut.of(u) for u in session.query(User).order_by(User.id)]

    return await run_in_threadpool(run)


@router.post(
    "/users", status_code=201, response_model=UserOut, responses={**ERRORS, 409: {"description": "taken"}}
)
async def create_user(body: AdminCreateUserIn, admin: AdminUser, request: Request, auth: AuthDep) -> UserOut:
    """Create an account (the way to add users when self-registration is off)."""

    def run() -> UserOut:
        with session_scope(auth.sessions) as session:
            user = users.create_user(
                session,
                username=body.username,
                email=body.email,
                password=body.password,
                full_name=body.full_name,
                is_admin=body.role == "admin",
                strict=auth.strict_passwords,
            )
            audit.record(
                session,
                action="user_created",
                actor_user_id=admin.user_id,
                target=f"user:{user.username}",
                client_ip=client_ip(request),
                detail={"role": user.role},
            )
            return UserOut.of(user)

    return await run_in_threadpool(run)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    responses={**ERRORS, 404: {"description": "no such user"}, 409: {"description": "last admin"}},
)
async def update_user(
    user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: UserPatchIn,
    admin: AdminUser,
    request: Request,
    auth: AuthDep,
) -> UserOut:
    """Change a user's role or (de)activate them. Deactivation ends their sessions and API keys' use;
    the last active admin can be neither demoted nor deactivated."""

    def run() -> UserOut:
        with session_scope(auth.sessions) as session:
            user = _user_or_404(session, user_id)
            ip = client_ip(request)
            loses_admin = (
                user.is_admin and user.is_active and ((body.role == "user") or body.is_active is False)
            )
            if loses_admin and users.active_admin_count(session) <= 1:
                raise AuthError(409, "this is the last active admin: promote another user first")
            if body.role is not None and body.role != user.role:
                before = user.role
                users.set_role(user, body.role)
                audit.record(
                    session,
                    action="role_changed",
                    actor_user_id=admin.user_id,
                    target=f"user:{user.username}",
                    client_ip=ip,
                    detail={"from": before, "to": body.role},
                )
            if body.is_active is not None and body.is_active != user.is_active:
                user.is_active = body.is_active
                if not body.is_active:
                    users.revoke_all_sessions(session, user.id)
                audit.record(
                    session,
                    action="user_activated" if body.is_active else "user_deactivated",
                    actor_user_id=admin.user_id,
                    target=f"user:{user.username}",
                    client_ip=ip,
                )
            return UserOut.of(user)

    return await run_in_threadpool(run)


@router.put(
    "/users/{user_id}/password",
    response_model=UserOut,
    responses={**ERRORS, 404: {"description": "no such user"}, 422: {"description": "password refused"}},
)
async def reset_password(
    user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: AdminPasswordIn,
    admin: AdminUser,
    request: Request,
    auth: AuthDep,
) -> UserOut:
    """Set a user's password (a forgotten one, or a suspected leak): ends all their login sessions.

    The same password policy as everywhere applies (in production, admins need a strong one).
    """

    def run() -> UserOut:
        with session_scope(auth.sessions) as session:
            user = _user_or_404(session, user_id)
            users.set_password(session, user, body.password, strict=auth.strict_passwords)
            audit.record(
                session,
                action="password_reset",
                actor_user_id=admin.user_id,
                target=f"user:{user.username}",
                client_ip=client_ip(request),
            )
            return UserOut.of(user)

    return await run_in_threadpool(run)


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
async def audit_events(
    _: AdminUser,
    auth: AuthDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    action: Annotated[str | None, Query(max_length=64, description="e.g. login_failed")] = None,
    actor_user_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> list[AuditOut]:
    """Security-relevant actions, newest first."""

    def run() -> list[AuditOut]:
        with auth.sessions() as session:
            events = audit.query(
                session, limit=limit, offset=offset, action=action, actor_user_id=actor_user_id
            )
            ids = {e.actor_user_id for e in events if e.actor_user_id is not None}
            names = dict(session.query(User.id, User.username).filter(User.id.in_(ids)).all()) if ids else {}
            return [AuditOut(**audit.to_json(e, names)) for e in events]

    return await run_in_threadpool(run)
