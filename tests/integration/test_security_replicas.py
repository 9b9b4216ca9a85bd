"""Two API replicas sharing one PostgreSQL and one Redis: limits and sessions hold across them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logflow.settings import Settings
from tests.conftest import LogFlow, postgres_schema, require_engine, start_logflow, stop_logflow
from tests.integration.test_auth_flow import avoid_window_edge, forget_test_client_limits

pytestmark = pytest.mark.distributed
SECRET = "fedcba9876543210" * 4  # replicas must share the signing secret


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[..., tuple[LogFlow, LogFlow]]]:
    started: list[LogFlow] = []
    redis_url = require_engine("redis")
    forget_test_client_limits(redis_url)
    with postgres_schema() as db_url:

        def start(**overrides: object) -> tuple[LogFlow, LogFlow]:
            pair = []
            for i in range(2):
                settings = Settings(
                    data_dir=tmp_path / f"replica{len(started)}-{i}",
                    database_url=db_url,
                    cache_url=redis_url,
                    secret_key=SECRET,
                    **overrides,
                )  # type: ignore[arg-type]
                flow = start_logflow(settings)
                started.append(flow)
                pair.append(flow)
            return pair[0], pair[1]

        yield start
        for flow in started:
            stop_logflow(flow)


def test_login_limit_is_shared_across_replicas(replicas: Callable[..., tuple[LogFlow, LogFlow]]) -> None:
    a, b = replicas(rate_login_per_account=6, rate_login_per_address=1000)
    avoid_window_edge(300)
    name = f"r{uuid.uuid4().hex[:8]}"
    body = {"username": name, "email": f"{name}@example.com", "password": "replica-pass-1"}
    assert a.client.post("/api/v1/auth/register", json=body).status_code == 201
    codes = []
    for i in range(8):  # alternate replicas, as a load balancer would
        client = (a if i % 2 == 0 else b).client
        codes.append(
            client.post("/api/v1/auth/login", data={"username": name, "password": "bad"}).status_code
        )
    assert codes == [401] * 6 + [429, 429]


def test_api_limit_is_shared_across_replicas(replicas: Callable[..., tuple[LogFlow, LogFlow]]) -> None:
    a, b = replicas(rate_api_per_minute=30)
    avoid_window_edge(60)
    key = a.api_key("admin", ["read"])
    codes = [
        (a if i % 2 else b).client.get("/api/v1/logs/recent", headers={"X-API-Key": key}).status_code
        for i in range(40)
    ]
    assert codes.count(200) == 30 and codes[30:] == [429] * 10


def test_sessions_work_and_end_across_replicas(replicas: Callable[..., tuple[LogFlow, LogFlow]]) -> None:
    a, b = replicas()
    name = f"r{uuid.uuid4().hex[:8]}"
    body = {"username": name, "email": f"{name}@example.com", "password": "replica-pass-1"}
    assert a.client.post("/api/v1/auth/register", json=body).status_code == 201
    tokens = a.client.post("/api/v1/auth/login", data={"username": name, "password": "replica-pass-1"}).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert b.client.get("/api/v1/auth/me", headers=auth).status_code == 200
    first = b.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    replay = a.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    new_auth = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert b.client.get("/api/v1/auth/me", headers=new_auth).status_code == 401
