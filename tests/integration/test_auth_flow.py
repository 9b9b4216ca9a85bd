"""The seed's auth flow and the issue's hardening over HTTP: SQLite + in-process cache, and
PostgreSQL + Redis (each test in its own PostgreSQL schema)."""

from __future__ import annotations

import base64
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from logflow.auth.users import find_user
from logflow.db.models import ApiKey, AuditEvent, User
from logflow.db.session import session_scope
from logflow.settings import Settings
from tests.conftest import LogFlow, postgres_schema, require_engine, start_logflow, stop_logflow
from tests.unit.test_auth_tokens import RSA_PUBLIC_PEM, claims, forge

LOGIN = "/api/v1/auth/login"
GENEROUS = {"rate_login_per_address": 10_000, "rate_login_per_account": 10_000}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.distributed)])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Database and cache overrides: a SQLite file + memory cache, or PostgreSQL + Redis."""
    if request.param == "sqlite":
        yield {}
        return
    redis_url = require_engine("redis")
    forget_test_client_limits(redis_url)
    with postgres_schema() as url:
        yield {"database_url": url, "cache_url": redis_url}


def forget_test_client_limits(redis_url: str) -> None:
    """Every TestClient request comes from the address ``testclient``, and Redis keeps counting across
    tests (that sharing is the point in production): start each test from zero for that address."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="logflow:rate:*testclient*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def boot(backend: dict[str, Any], make_settings: Callable[..., Settings]) -> Iterator[Callable[..., LogFlow]]:
    """Start LogFlow on ``backend`` with extra settings; everything started is stopped afterwards."""
    started: list[LogFlow] = []

    def start(**overrides: Any) -> LogFlow:
        flow = start_logflow(make_settings(**{**GENEROUS, **backend, **overrides}))
        started.append(flow)
        return flow

    yield start
    for flow in started:
        stop_logflow(flow)


@pytest.fixture
def flow(boot: Callable[..., LogFlow]) -> LogFlow:
    return boot()


def avoid_window_edge(window_s: int, need_s: float = 5.0) -> None:
    """Rate limits use fixed windows aligned to the clock: start a counting test well inside one."""
    left = window_s - time.time() % window_s
    if left < need_s:
        time.sleep(left + 0.05)


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def register(client: TestClient, name: str, password: str = "alicepass123") -> dict[str, Any]:
    resp = client.post(
        "/api/v1/auth/register",
        json={
            "username": name,
            "email": f"{name}@example.com",
            "password": password,
            "full_name": name.title(),
        },
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def login(client: TestClient, name: str, password: str = "alicepass123") -> dict[str, Any]:
    resp = client.post(LOGIN, data={"username": name, "password": password})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_actions(flow: LogFlow) -> list[str]:
    return [e["action"] for e in flow.admin.get("/api/v1/admin/audit", params={"limit": 1000}).json()]


def test_seed_flow_register_login_me(flow: LogFlow) -> None:
    c, name = flow.client, unique("alice")
    user = register(c, name)
    assert set(user) >= {"id", "username", "email", "full_name", "is_active", "is_admin"}
    assert (user["username"], user["is_active"], user["is_admin"]) == (name, True, False)
    tokens = login(c, name)
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"] and tokens["expires_in"] == 1800
    me = c.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name
    assert me.headers["cache-control"] == "no-store"
    put = c.put("/api/v1/auth/me", json={"full_name": "Alice Smith"}, headers=bearer(tokens["access_token"]))
    assert put.status_code == 200 and put.json()["full_name"] == "Alice Smith"
    assert c.get("/api/v1/auth/me").status_code == 401
    assert c.get("/api/v1/auth/me").headers["www-authenticate"] == "Bearer"


def test_duplicates_and_password_rules(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    register(c, name)
    body = {"username": name, "email": f"other-{name}@example.com", "password": "longenough1"}
    assert c.post("/api/v1/auth/register", json=body).status_code == 409
    body = {"username": unique(), "email": f"{name.upper()}@EXAMPLE.com", "password": "longenough1"}
    assert c.post("/api/v1/auth/register", json=body).status_code == 409
    for bad in ("short", "x" * 73):
        body = {"username": unique(), "email": f"{unique()}@example.com", "password": bad}
        assert c.post("/api/v1/auth/register", json=body).status_code == 422
    assert c.post("/api/v1/auth/register", json={**body, "password": "x" * 72}).status_code == 201


def test_refresh_rotates_and_reuse_revokes_the_family(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    register(c, name)
    first = login(c, name)
    second = c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    pair = second.json()
    assert c.get("/api/v1/auth/me", headers=bearer(pair["access_token"])).status_code == 200
    reused = c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # The thief's replay ended the whole login session: the newest tokens of the family are dead too.
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert c.get("/api/v1/auth/me", headers=bearer(pair["access_token"])).status_code == 401
    other = login(c, name)  # another login session is unaffected
    assert c.get("/api/v1/auth/me", headers=bearer(other["access_token"])).status_code == 200
    assert "refresh_token_reused" in audit_actions(flow)
    refresh_as_access = c.get("/api/v1/auth/me", headers=bearer(other["refresh_token"]))
    assert refresh_as_access.status_code == 401


def test_logout_revokes_access_and_refresh(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    register(c, name)
    tokens = login(c, name)
    out = c.post(
        "/api/v1/auth/logout",
        headers=bearer(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert out.status_code == 204
    assert c.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_password_change_needs_current_and_ends_sessions(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    register(c, name)
    tokens = login(c, name)
    h = bearer(tokens["access_token"])
    assert c.put("/api/v1/auth/me", json={"password": "brandnewpass1"}, headers=h).status_code == 403
    wrong = {"password": "brandnewpass1", "current_password": "nope-nope"}
    assert c.put("/api/v1/auth/me", json=wrong, headers=h).status_code == 403
    ok = c.put(
        "/api/v1/auth/me", json={"password": "brandnewpass1", "current_password": "alicepass123"}, headers=h
    )
    assert ok.status_code == 200
    assert c.get("/api/v1/auth/me", headers=h).status_code == 401
    assert c.post(LOGIN, data={"username": name, "password": "alicepass123"}).status_code == 401
    login(c, name, "brandnewpass1")


def test_unknown_user_and_wrong_password_look_the_same(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    register(c, name)
    login(c, name)  # warm up both paths (the dummy hash is computed once)
    c.post(LOGIN, data={"username": unique("nobody"), "password": "whatever123"})

    def timed(username: str) -> tuple[float, int, str]:
        started = time.perf_counter()
        resp = c.post(LOGIN, data={"username": username, "password": "wrong-password"})
        return time.perf_counter() - started, resp.status_code, resp.text

    known = [timed(name) for _ in range(7)]
    unknown = [timed(unique("nobody")) for _ in range(7)]
    assert (
        {(s, t) for _, s, t in known}
        == {(s, t) for _, s, t in unknown}
        == {(401, '{"detail":"incorrect username or password"}')}
    )
    ratio = statistics.median(t for t, _, _ in unknown) / statistics.median(t for t, _, _ in known)
    assert 0.5 < ratio < 2.0, ratio
    assert audit_actions(flow).count("login_failed") >= 14


def test_login_rehashes_legacy_scrypt_hashes(flow: LogFlow) -> None:
    import base64
    import hashlib
    import os

    c, name = flow.client, unique()
    register(c, name)
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"legacy-pass-1", salt=salt, n=2**14, r=8, p=1, dklen=32)

    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    with session_scope(flow.auth.sessions) as session:
        session.execute(
            update(User)
            .where(User.username == name)
            .values(password_hash=f"scrypt${2**14}$8$1${enc(salt)}${enc(digest)}")
        )
    login(c, name, "legacy-pass-1")
    with flow.auth.sessions() as session:
        user = find_user(session, name)
        assert user is not None and user.password_hash.startswith("$argon2id$")
    login(c, name, "legacy-pass-1")


def test_default_admin_is_flagged_until_its_password_changes(flow: LogFlow) -> None:
    c = flow.client
    health = c.get("/health").json()
    assert any("default password" in w for w in health["warnings"])
    resp = c.post(LOGIN, data={"username": "admin", "password": "admin123"})
    assert resp.status_code == 200 and "default password" in resp.headers["x-logflow-warning"]
    token = resp.json()["access_token"]
    assert "x-logflow-warning" in c.get("/api/v1/auth/me", headers=bearer(token)).headers
    assert "x-logflow-warning" not in c.get("/api/v1/logs/recent").headers
    change = {"password": "a-much-better-admin-pw", "current_password": "admin123"}
    assert c.put("/api/v1/auth/me", json=change, headers=bearer(token)).status_code == 200
    assert c.get("/health").json()["warnings"] == []
    fresh = c.post(LOGIN, data={"username": "admin", "password": "a-much-better-admin-pw"})
    assert "x-logflow-warning" not in fresh.headers


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_api_key_lifecycle(flow: LogFlow, header: str) -> None:
    c, name = flow.client, unique()
    register(c, name)
    h = bearer(login(c, name)["access_token"])
    created = c.post("/api/v1/auth/api-keys", json={"name": "agent", "scopes": ["ingest"]}, headers=h)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("lf_") and created.json()["prefix"] == key[:11]
    listed = c.get("/api/v1/auth/api-keys", headers=h).json()
    assert [k["prefix"] for k in listed] == [key[:11]] and "key" not in listed[0]
    with flow.auth.sessions() as session:  # stored hashed, never in clear
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == key[:11]))
        assert row is not None and key not in row.key_hash and len(row.key_hash) == 64
    creds = bearer(key) if header == "bearer" else {"X-API-Key": key}
    assert c.post("/api/v1/ingest", json={"message": "from a key"}, headers=creds).status_code == 202
    assert c.get("/api/v1/auth/api-keys", headers=h).json()[0]["last_used_at"] is not None
    assert c.get("/api/v1/auth/me", headers=creds).status_code == 403  # an ingest key is not a user
    assert (
        c.post("/api/v1/auth/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=h).status_code == 403
    )
    assert c.delete(f"/api/v1/auth/api-keys/{created.json()['id']}", headers=h).status_code == 204
    assert c.post("/api/v1/ingest", json={"message": "revoked"}, headers=creds).status_code == 401
    actions = audit_actions(flow)
    assert "api_key_created" in actions and "api_key_revoked" in actions


def test_expired_key_and_other_users_key(flow: LogFlow) -> None:
    c, alice, bob = flow.client, unique("alice"), unique("bob")
    register(c, alice)
    register(c, bob)
    ha, hb = bearer(login(c, alice)["access_token"]), bearer(login(c, bob)["access_token"])
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = c.post(
        "/api/v1/auth/api-keys", json={"name": "short", "scopes": ["read"], "expires_at": soon}, headers=ha
    ).json()
    assert c.get("/api/v1/logs/recent", headers={"X-API-Key": created["key"]}).status_code == 200
    assert c.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=hb).status_code == 404  # not 403
    with session_scope(flow.auth.sessions) as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert c.get("/api/v1/logs/recent", headers={"X-API-Key": created["key"]}).status_code == 401


def test_admin_user_management(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    uid = register(c, name)["id"]
    user_token = flow.token_for(name)
    key = flow.api_key(name, ["read"])
    assert c.get("/api/v1/admin/users", headers=bearer(user_token)).status_code == 403
    assert any(u["username"] == name for u in flow.admin.get("/api/v1/admin/users").json())
    promoted = flow.admin.patch(f"/api/v1/admin/users/{uid}", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["is_admin"] is True
    assert (
        c.get("/api/v1/admin/users", headers=bearer(user_token)).status_code == 200
    )  # role read per request
    flow.admin.patch(f"/api/v1/admin/users/{uid}", json={"role": "user"})
    off = flow.admin.patch(f"/api/v1/admin/users/{uid}", json={"is_active": False})
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert c.get("/api/v1/auth/me", headers=bearer(user_token)).status_code == 401
    assert c.get("/api/v1/logs/recent", headers={"X-API-Key": key}).status_code == 401
    assert c.post(LOGIN, data={"username": name, "password": "alicepass123"}).status_code == 401
    assert flow.admin.patch("/api/v1/admin/users/999999", json={"is_active": False}).status_code == 404
    with flow.auth.sessions() as session:
        admin_id = session.scalar(select(User.id).where(User.username == "admin"))
    assert flow.admin.patch(f"/api/v1/admin/users/{admin_id}", json={"role": "user"}).status_code == 409
    made = flow.admin.post(
        "/api/v1/admin/users",
        json={
            "username": unique(),
            "email": f"{unique()}@x.io",
            "password": "created-by-admin",
            "role": "user",
        },
    )
    assert made.status_code == 201
    actions = audit_actions(flow)
    for action in ("role_changed", "user_deactivated", "user_created", "user_registered"):
        assert action in actions
    with flow.auth.sessions() as session:
        change = session.scalar(select(AuditEvent).where(AuditEvent.action == "role_changed"))
        assert change is not None and change.detail["to"] == "admin" and change.client_ip == "testclient"


def test_admin_resets_a_forgotten_password(flow: LogFlow) -> None:
    c, name = flow.client, unique()
    uid = register(c, name)["id"]
    old = login(c, name)
    path = f"/api/v1/admin/users/{uid}/password"
    assert c.put(path, json={"password": "reset-by-admin-1"}, headers=bearer(old["access_token"])).status_code == 403
    assert flow.admin.put(path, json={"password": "short"}).status_code == 422
    assert flow.admin.put("/api/v1/admin/users/999999/password", json={"password": "reset-by-admin-1"}).status_code \
        == 404
    done = flow.admin.put(path, json={"password": "reset-by-admin-1"})
    assert done.status_code == 200 and done.json()["password_changed_at"] is not None
    # The old sessions end with the old password; the new password works.
    assert c.get("/api/v1/auth/me", headers=bearer(old["access_token"])).status_code == 401
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}).status_code == 401
    assert c.post(LOGIN, data={"username": name, "password": "alicepass123"}).status_code == 401
    assert login(c, name, "reset-by-admin-1")["access_token"]
    assert "password_reset" in audit_actions(flow)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_shipper_style_credentials_carry_api_keys(flow: LogFlow) -> None:
    """rsyslog, Filebeat, Promtail and Vector send Basic auth or Elastic's ApiKey scheme."""
    c, key = flow.client, flow.ingest_key
    accepted = [
        _basic("logflow", key),
        _basic("", key),
        {"Authorization": f"ApiKey {key}"},
        {"Authorization": "ApiKey " + base64.b64encode(f"someid:{key}".encode()).decode()},
    ]
    for headers in accepted:
        resp = c.post("/api/v1/ingest", json={"message": "shipped"}, headers=headers)
        assert resp.status_code == 202, (headers, resp.text)
    refused = [
        _basic("admin", "admin123"),  # a user's password is not accepted here: only API keys
        _basic("x", key[:-1] + ("A" if key[-1] != "A" else "B")),  # a wrong key
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "ApiKey "},
        {"Authorization": "Digest abc"},
    ]
    for headers in refused:
        resp = c.post("/api/v1/ingest", json={"message": "refused"}, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["detail"]


def test_brute_force_is_rate_limited_per_account_and_per_address(boot: Callable[..., LogFlow]) -> None:
    flow = boot(rate_login_per_account=5, rate_login_per_address=12)
    avoid_window_edge(300)
    c, name = flow.client, unique()
    register(c, name)
    codes = [c.post(LOGIN, data={"username": name, "password": f"guess-{i}"}).status_code for i in range(6)]
    assert codes == [401] * 5 + [429]
    limited = c.post(LOGIN, data={"username": name, "password": "alicepass123"})  # even the right one
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 300
    # Spraying many accounts from one address hits the address limit.
    spray = [c.post(LOGIN, data={"username": unique("v"), "password": "x" * 8}).status_code for _ in range(8)]
    assert 429 in spray and spray.index(429) == 12 - 7


def test_api_request_and_ingest_byte_limits(boot: Callable[..., LogFlow]) -> None:
    flow = boot(rate_api_per_minute=20, rate_ingest_bytes_per_minute=4096)
    avoid_window_edge(60)
    codes = [flow.client.get("/api/v1/logs/recent").status_code for _ in range(25)]
    assert codes.count(429) >= 4 and codes[0] == 200  # some were spent by the fixture's own setup
    last = flow.client.get("/api/v1/logs/recent")
    assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1
    key = flow.api_key("admin", ["ingest"])
    big = [{"message": "x" * 1000} for _ in range(3)]
    assert flow.client.post("/api/v1/ingest", json=big, headers={"X-API-Key": key}).status_code == 202
    assert flow.client.post("/api/v1/ingest", json=big, headers={"X-API-Key": key}).status_code == 429


@pytest.mark.parametrize(
    "kind", ["alg-none", "hs-rs-confusion", "tampered", "expired", "wrong-aud", "wrong-iss"]
)
def test_token_attacks_over_http_are_401(flow: LogFlow, kind: str) -> None:
    secret = flow.auth.codec._secret.encode()
    now = int(time.time())
    tokens = {
        "alg-none": forge({"alg": "none"}, claims(sub="1"), None),
        "hs-rs-confusion": forge({"alg": "RS256"}, claims(sub="1"), RSA_PUBLIC_PEM.encode()),
        "tampered": forge({"alg": "HS256"}, claims(sub="1"), b"not-the-server-secret"),
        "expired": forge({"alg": "HS256"}, claims(sub="1", iat=now - 7200, exp=now - 3600), secret),
        "wrong-aud": forge({"alg": "HS256"}, claims(sub="1", aud="someone-else"), secret),
        "wrong-iss": forge({"alg": "HS256"}, claims(sub="1", iss="evil"), secret),
    }
    for path in ("/api/v1/auth/me", "/api/v1/admin/users", "/api/v1/logs/recent"):
        assert flow.client.get(path, headers=bearer(tokens[kind])).status_code == 401


def test_closed_reads_and_open_ingest(boot: Callable[..., LogFlow]) -> None:
    flow = boot(public_read=False, ingest_open=True)
    assert flow.client.get("/api/v1/logs/recent").status_code == 401
    assert flow.client.get("/api/v1/metrics/overview").status_code == 401
    assert flow.admin.get("/api/v1/logs/recent").status_code == 200
    assert flow.client.post("/api/v1/ingest", json={"message": "open"}).status_code == 202
    assert flow.client.get("/health").status_code == 200
