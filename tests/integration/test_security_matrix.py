"""The authorization matrix, generated from the OpenAPI document.

``POLICY`` declares once, per route, who may call it. The test walks every operation in
``app.openapi()`` and calls it as each actor, expecting the status the policy gives; a route
missing from ``POLICY`` fails the test, so a new endpoint cannot ship unprotected by accident.

Actors: anonymous, ``user``, ``other`` (a second plain user), ``admin``, an ``ingest`` key and a
``read`` key (both owned by ``user``). Runs with public reads on (the seed's default) and off.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow

ACTORS = ("anonymous", "user", "other", "admin", "ingest_key", "read_key")
OK = "ok"  # a 2xx answer (or, for ``lenient`` routes, anything but 401/403/5xx)

# Who may do what, per policy: "ok" or the exact refusal status.
RULES: dict[str, dict[str, Any]] = {
    "public": dict.fromkeys(ACTORS, OK),
    # anonymous depends on LOGFLOW_PUBLIC_READ (filled in per run)
    "read": {"anonymous": None, "user": OK, "other": OK, "admin": OK, "ingest_key": 403, "read_key": OK},
    "ingest": {"anonymous": 401, "user": OK, "other": OK, "admin": OK, "ingest_key": OK, "read_key": 403},
    "user": {"anonymous": 401, "user": OK, "other": OK, "admin": OK, "ingest_key": 403, "read_key": OK},
    # credential management and logout: a person's token, never a machine key
    "token": {"anonymous": 401, "user": OK, "other": OK, "admin": OK, "ingest_key": 403, "read_key": 403},
    # objects only their owner may see (API keys): someone else's is a 404
    "owner_private": {
        "anonymous": 401,
        "user": OK,
        "other": 404,
        "admin": OK,
        "ingest_key": 403,
        "read_key": 403,
    },
    # objects everyone may list (alert rules): someone else's is a 403
    "owner_visible": {
        "anonymous": 401,
        "user": OK,
        "other": 403,
        "admin": OK,
        "ingest_key": 403,
        "read_key": OK,
    },
    "admin": {"anonymous": 401, "user": 403, "other": 403, "admin": OK, "ingest_key": 403, "read_key": 403},
}


@dataclass
class Call:
    """How to make a valid request to a route; ``prepare`` may create the object it acts on."""

    policy: str
    json: Callable[[Ctx], Any] | None = None
    form: Callable[[Ctx], dict[str, str]] | None = None
    path: Callable[[Ctx], dict[str, Any]] = field(default=lambda ctx: {})
    lenient: bool = False  # objects the fixture cannot make (e.g. fired alerts): 404/409 count as allowed


@dataclass
class Ctx:
    flow: LogFlow
    event_id: str

    def new_user(self) -> str:
        name = f"mx{uuid.uuid4().hex[:8]}"
        assert (
            self.flow.admin.post(
                "/api/v1/admin/users",
                json={"username": name, "email": f"{name}@example.com", "password": "matrix-pass-1"},
            ).status_code
            == 201
        )
        return name

    def user_id(self, name: str) -> int:
        users = self.flow.admin.get("/api/v1/admin/users").json()
        return int(next(u["id"] for u in users if u["username"] == name))

    def key_of(self, username: str) -> int:
        headers = {"Authorization": f"Bearer {self.flow.token_for(username)}"}
        resp = self.flow.client.post(
            "/api/v1/auth/api-keys", json={"name": "victim", "scopes": ["read"]}, headers=headers
        )
        return int(resp.json()["id"])

    def rule_of(self, username: str) -> int:
        headers = {"Authorization": f"Bearer {self.flow.token_for(username)}"}
        resp = self.flow.client.post("/api/v1/alerts/rules", json=SEED_RULE, headers=headers)
        assert resp.status_code == 201, resp.text
        return int(resp.json()["id"])

    def refresh_token(self) -> str:
        resp = self.flow.client.post(
            "/api/v1/auth/login", data={"username": "mxuser", "password": "matrix-pass-1"}
        )
        return str(resp.json()["refresh_token"])


SEED_RULE = {
    "name": "My Alert",
    "condition": "greater_than",
    "threshold": 50,
    "levels": ["ERROR"],
    "notification_channel": "console",
}

POLICY: dict[tuple[str, str], Call] = {
    ("GET", "/"): Call("public"),
    ("GET", "/health"): Call("public"),
    ("POST", "/api/v1/auth/register"): Call(
        "public",
        json=lambda ctx: {
            "username": f"r{uuid.uuid4().hex[:8]}",
            "email": f"{uuid.uuid4().hex[:8]}@example.com",
            "password": "register-pass-1",
        },
    ),
    ("POST", "/api/v1/auth/login"): Call(
        "public", form=lambda ctx: {"username": "mxuser", "password": "matrix-pass-1"}
    ),
    ("POST", "/api/v1/auth/refresh"): Call("public", json=lambda ctx: {"refresh_token": ctx.refresh_token()}),
    ("POST", "/api/v1/auth/logout"): Call("token"),
    ("GET", "/api/v1/auth/me"): Call("user"),
    ("PUT", "/api/v1/auth/me"): Call("token", json=lambda ctx: {"full_name": "Matrix"}),
    ("POST", "/api/v1/auth/api-keys"): Call("token", json=lambda ctx: {"name": "k", "scopes": ["read"]}),
    ("GET", "/api/v1/auth/api-keys"): Call("user"),
    ("DELETE", "/api/v1/auth/api-keys/{key_id}"): Call(
        "owner_private", path=lambda ctx: {"key_id": ctx.key_of("mxuser")}
    ),
    ("GET", "/api/v1/admin/users"): Call("admin"),
    ("POST", "/api/v1/admin/users"): Call(
        "admin",
        json=lambda ctx: {
            "username": f"a{uuid.uuid4().hex[:8]}",
            "email": f"{uuid.uuid4().hex[:8]}@example.com",
            "password": "admin-made-pass-1",
        },
    ),
    ("PATCH", "/api/v1/admin/users/{user_id}"): Call(
        "admin", json=lambda ctx: {"is_active": True}, path=lambda ctx: {"user_id": ctx.user_id("mxother")}
    ),
    ("PUT", "/api/v1/admin/users/{user_id}/password"): Call(
        "admin", json=lambda ctx: {"password": "matrix-pass-1"}, path=lambda ctx: {"user_id": ctx.user_id("mxother")}
    ),
    ("GET", "/api/v1/admin/audit"): Call("admin"),
    ("GET", "/api/v1/cache/stats"): Call("read"),
    ("DELETE", "/api/v1/cache/clear"): Call("admin"),
    ("GET", "/api/v1/pipeline/status"): Call("read"),
    ("GET", "/api/v1/pipeline/dead-letters"): Call("read"),
    ("POST", "/api/v1/pipeline/dead-letters/replay"): Call("admin"),
    ("POST", "/api/v1/ingest"): Call("ingest", json=lambda ctx: {"message": "matrix"}),
    ("POST", "/_bulk"): Call("ingest", json=lambda ctx: {"index": {}}),
    ("POST", "/v1/logs"): Call("ingest", json=lambda ctx: {"resourceLogs": []}),
    ("POST", "/loki/api/v1/push"): Call("ingest", json=lambda ctx: {"streams": []}),
    ("POST", "/gelf"): Call("ingest", json=lambda ctx: {"short_message": "matrix", "host": "mx"}),
    ("POST", "/{index}/_bulk"): Call("ingest", json=lambda ctx: {"index": {}}, path=lambda ctx: {"index": "mx"}),
    ("GET", "/api/v1/logs/search"): Call("read"),
    ("POST", "/api/v1/logs/search"): Call("read", json=lambda ctx: {}),
    ("GET", "/api/v1/logs/recent"): Call("read"),
    ("GET", "/api/v1/logs/{event_id}"): Call("read", path=lambda ctx: {"event_id": ctx.event_id}),
    ("GET", "/api/v1/metrics/overview"): Call("read"),
    ("GET", "/api/v1/metrics/service/{service_name}"): Call(
        "read", path=lambda ctx: {"service_name": "matrix"}
    ),
    ("GET", "/api/v1/metrics/system"): Call("read"),
    ("GET", "/api/v1/metrics/timeseries"): Call("read"),
    # Alerting (the seed's table): listing is public reading; changes need a user, the owner or an admin.
    ("GET", "/api/v1/alerts/rules"): Call("read"),
    ("POST", "/api/v1/alerts/rules"): Call("user", json=lambda ctx: SEED_RULE),
    ("GET", "/api/v1/alerts/rules/{rule_id}"): Call(
        "read", path=lambda ctx: {"rule_id": ctx.rule_of("mxuser")}
    ),
    ("PUT", "/api/v1/alerts/rules/{rule_id}"): Call(
        "owner_visible", json=lambda ctx: SEED_RULE, path=lambda ctx: {"rule_id": ctx.rule_of("mxuser")}
    ),
    ("DELETE", "/api/v1/alerts/rules/{rule_id}"): Call(
        "owner_visible", path=lambda ctx: {"rule_id": ctx.rule_of("mxuser")}
    ),
    ("POST", "/api/v1/alerts/rules/test"): Call("user", json=lambda ctx: SEED_RULE),
    ("POST", "/api/v1/alerts/rules/{rule_id}/test"): Call(
        "user", path=lambda ctx: {"rule_id": ctx.rule_of("mxuser")}
    ),
    ("GET", "/api/v1/alerts/triggered"): Call("read"),
    ("GET", "/api/v1/alerts/triggered/{alert_id}"): Call(
        "read", path=lambda ctx: {"alert_id": 1}, lenient=True
    ),
    ("POST", "/api/v1/alerts/triggered/{alert_id}/acknowledge"): Call(
        "user", path=lambda ctx: {"alert_id": 1}, json=lambda ctx: {}, lenient=True
    ),
    ("POST", "/api/v1/alerts/triggered/{alert_id}/resolve"): Call(
        "user", path=lambda ctx: {"alert_id": 1}, json=lambda ctx: {}, lenient=True
    ),
}


@pytest.fixture(params=[True, False], ids=["public-read", "closed-read"])
def matrix_flow(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[Ctx]:
    flow = start_logflow(
        make_settings(
            public_read=request.param,
            rate_api_per_minute=0,
            rate_login_per_account=0,
            rate_login_per_address=0,
        )
    )
    try:
        for name in ("mxuser", "mxother"):
            assert (
                flow.admin.post(
                    "/api/v1/admin/users",
                    json={"username": name, "email": f"{name}@example.com", "password": "matrix-pass-1"},
                ).status_code
                == 201
            )
        resp = flow.ingest({"message": "matrix event", "service": "matrix"})
        event_id = resp.json()["results"][0]["id"]
        flow.settle()
        yield Ctx(flow=flow, event_id=event_id)
    finally:
        stop_logflow(flow)


def credentials(ctx: Ctx, actor: str) -> dict[str, str]:
    """Fresh credentials per request (logout and password changes consume a login session)."""
    flow = ctx.flow
    if actor == "anonymous":
        return {}
    if actor in ("user", "other", "admin"):
        name = {"user": "mxuser", "other": "mxother", "admin": "admin"}[actor]
        return {"Authorization": f"Bearer {flow.token_for(name)}"}
    return {"X-API-Key": flow.api_key("mxuser", ["ingest" if actor == "ingest_key" else "read"])}


def operations(ctx: Ctx) -> list[tuple[str, str]]:
    spec = ctx.flow.client.app.openapi()  # type: ignore[attr-defined]
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def test_every_route_has_a_policy(matrix_flow: Ctx) -> None:
    missing = [f"{m} {p}" for m, p in operations(matrix_flow) if (m, p) not in POLICY]
    assert not missing, f"routes without an authorization policy (add them to POLICY): {missing}"


def test_authorization_matrix(matrix_flow: Ctx) -> None:
    ctx = matrix_flow
    public_read = ctx.flow.runtime.settings.effective_public_read
    failures = []
    checked = 0
    for method, path in operations(ctx):
        call = POLICY.get((method, path))
        if call is None:
            continue  # reported by test_every_route_has_a_policy
        for actor in ACTORS:
            expected = RULES[call.policy][actor]
            if expected is None:
                expected = OK if public_read else 401
            kwargs: dict[str, Any] = {"headers": credentials(ctx, actor)}
            if call.json is not None:
                kwargs["json"] = call.json(ctx)
            if call.form is not None:
                kwargs["data"] = call.form(ctx)
            url = path.format(**call.path(ctx))
            status = ctx.flow.client.request(method, url, **kwargs).status_code
            checked += 1
            if expected == OK:
                allowed = status < 300 or (call.lenient and status in (404, 409, 422))
                if not allowed:
                    failures.append(f"{method} {path} as {actor}: {status}, expected success")
            elif status != expected:
                failures.append(f"{method} {path} as {actor}: {status}, expected {expected}")
    assert checked >= 6 * 25
    assert not failures, "\n".join(failures)
