"""FastAPI dependencies for authentication and authorization: import these in route modules.

``CurrentUser``  any signed-in user: an access token, or an API key with ``read``/``admin`` scope
                 acting for its owner (401 without or with bad credentials, 403 for other keys).
``AdminUser``    an admin (token of an admin, or an ``admin``-scoped key of an admin); 403 otherwise.
``ReadAccess``   anonymous when ``LOGFLOW_PUBLIC_READ`` is on, else a user or a ``read`` key.
``IngestAccess`` anonymous when ``LOGFLOW_INGEST_OPEN`` is on, else a user or an ``ingest`` key.

Credentials: ``Authorization: Bearer <access token>``, ``Authorization: Bearer lf_…`` (API key) or
``X-API-Key: lf_…``; for shippers also ``Authorization: Basic`` with the key as password and
``Authorization: ApiKey <key or base64(id:key)>``. Bad credentials are a 401 even where anonymous
access is allowed: a client whose token expired must learn so rather than silently getting the
public view.

The principal is resolved once per request (memoized on ``request.state``), which also charges the
per-principal API rate limit.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from logflow.auth import audit as audit_log
from logflow.auth.apikeys import looks_like_key
from logflow.auth.errors import AuthError, TokenError
from logflow.auth.principal import ANONYMOUS, Principal
from logflow.auth.ratelimit import RateLimited
from logflow.auth.service import DEFAULT_PASSWORD_WARNING, AuthService
from logflow.runtime import Runtime

__all__ = [
    "AdminUser",
    "AuthDep",
    "CurrentUser",
    "IngestAccess",
    "Principal",
    "ReadAccess",
    "audit",
    "client_ip",
    "get_auth",
    "require_admin",
    "require_ingest",
    "require_read",
    "require_user",
    "resolve_principal",
]

WARNING_HEADER = "X-LogFlow-Warning"
_BEARER = {"WWW-Authenticate": "Bearer"}


def get_auth(request: Request) -> AuthService:
    auth: AuthService = request.app.state.auth
    return auth


AuthDep = Annotated[AuthService, Depends(get_auth)]


def client_ip(request: Request) -> str:
    """The peer address (uvicorn rewrites it from X-Forwarded-For only for trusted proxies)."""
    return request.client.host if request.client else "unknown"


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers=_BEARER)


def _credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return ("api_key" if looks_like_key(value) else "token"), value
        if scheme in ("basic", "apikey") and value:
            # Shippers (rsyslog, Filebeat, Fluent Bit, Promtail, Vector) speak Basic or Elastic's
            # ApiKey scheme: the API key is the password (any user name) or the whole value.
            return "api_key", _key_from_shipper_header(scheme, value)
        raise unauthorized("Authorization must be 'Bearer <token or API key>', 'Basic' with an API key as "
                           "password, or 'ApiKey <API key>'")
    key = request.headers.get("x-api-key")
    if key is not None:
        return "api_key", key.strip()
    return None


def _key_from_shipper_header(scheme: str, value: str) -> str:
    """The API key inside a ``Basic`` or ``ApiKey`` credential (401 when there is none)."""
    if scheme == "apikey" and looks_like_key(value):
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized(f"{scheme} credentials are not valid base64") from None
    # Basic is "user:password"; Elastic's ApiKey is base64("id:key"). Either way the key is last.
    key = decoded.rpartition(":")[2].strip()
    if not looks_like_key(key):
        raise unauthorized("Basic/ApiKey credentials must carry a LogFlow API key (lf_…) as the password")
    return key


def _resolve(auth: AuthService, request: Request) -> Principal:
    creds = _credentials(request)
    if creds is None:
        return ANONYMOUS
    kind, value = creds
    try:
        principal, default_pw = (
            auth.principal_for_key(value) if kind == "api_key" else auth.principal_for_token(value)
        )
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    if default_pw:
        request.state.logflow_warning = DEFAULT_PASSWORD_WARNING
    return principal


def _charge(auth: AuthService, request: Request, principal: Principal | None) -> None:
    """One request against the API rate limit of the principal (or of the address)."""
    identity = principal.rate_key if principal is not None else None
    key = f"api:{identity}" if identity else f"api:addr:{client_ip(request)}"
    try:
        auth.limiter.hit(key, limit=auth.settings.rate_api_per_minute, window_s=60)
    except RateLimited as exc:
        raise AuthError(429, str(exc), retry_after=exc.retry_after) from None


async def resolve_principal(request: Request) -> Principal:
    """The caller (401 for bad credentials), resolved and rate-limited once per request."""
    cached: Principal | HTTPException | None = getattr(request.state, "principal", None)
    if cached is None:
        auth = get_auth(request)
        try:
            cached = await run_in_threadpool(_resolve, auth, request)
        except HTTPException as exc:
            cached = exc
        request.state.principal = cached
        await run_in_threadpool(_charge, auth, request, cached if isinstance(cached, Principal) else None)
    if isinstance(cached, HTTPException):
        raise cached
    return cached


async def rate_limit_request(request: Request) -> None:
    """App-wide dependency: charge every request to the API limit, whatever its route needs.

    Bad credentials are not an error here (login and /health ignore them); routes that need a
    principal raise the 401 from their own dependency.
    """
    try:
        await resolve_principal(request)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise


def _forbid_key_without(principal: Principal, *scopes: str) -> None:
    if principal.via == "api_key" and not any(principal.can(s) for s in scopes):
        raise HTTPException(403, f"this API key lacks the {' or '.join(scopes)} scope")


async def require_user(principal: Annotated[Principal, Depends(resolve_principal)]) -> Principal:
    if not principal.authenticated:
        raise unauthorized("not authenticated")
    _forbid_key_without(principal, "read", "admin")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "admin role required")
    return principal


async def require_read(
    request: Request, principal: Annotated[Principal, Depends(resolve_principal)]
) -> Principal:
    if not principal.authenticated:
        if get_auth(request).settings.effective_public_read:
            return principal
        raise unauthorized("not authenticated (LOGFLOW_PUBLIC_READ is off)")
    _forbid_key_without(principal, "read")
    return principal


async def require_ingest(
    request: Request, principal: Annotated[Principal, Depends(resolve_principal)]
) -> Principal:
    if not principal.authenticated:
        if get_auth(request).settings.ingest_open:
            return principal
        raise unauthorized("ingest needs an API key with the ingest scope or a user token")
    _forbid_key_without(principal, "ingest")
    return principal


CurrentUser = Annotated[Principal, Depends(require_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]
ReadAccess = Annotated[Principal, Depends(require_read)]
IngestAccess = Annotated[Principal, Depends(require_ingest)]


def charge_ingest_bytes(request: Request, principal: Principal, size: int) -> None:
    """Count ``size`` body bytes against the principal's ingest budget (open anonymous ingest is free)."""
    if principal.rate_key is None:
        return
    auth = get_auth(request)
    try:
        auth.limiter.hit(
            f"ingest-bytes:{principal.rate_key}",
            limit=auth.settings.rate_ingest_bytes_per_minute,
            window_s=60,
            amount=size,
            what="ingest bytes",
        )
    except RateLimited as exc:
        raise AuthError(429, str(exc), retry_after=exc.retry_after) from None


def audit(
    runtime: Runtime,
    principal: Principal,
    action: str,
    target: str,
    request: Request | None,
    detail: dict[str, Any],
) -> None:
    """Write one audit event now (its own transaction). Synchronous: call it from a worker thread
    (``run_in_threadpool``) or from synchronous code that already runs in one."""
    audit_log.record_now(
        runtime.database,
        action=action,
        actor_user_id=principal.user_id,
        target=target,
        client_ip=client_ip(request) if request is not None else None,
        detail={**detail, "via": principal.via},
    )
