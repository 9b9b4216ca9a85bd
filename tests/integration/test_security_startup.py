"""Start-up checks (as functions and as a real `logflow serve`), security headers, CORS and docs CSP."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from logflow.app import create_app
from logflow.auth import startup
from logflow.auth.errors import StartupRefused
from logflow.auth.users import find_user, set_password
from logflow.runtime import Runtime
from logflow.settings import Settings

STRONG_SECRET = "0123456789abcdef" * 4
STRONG_ADMIN = "correct-horse-battery-staple"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Each call its own data directory (one queue writer per directory), all on one metadata DB."""
    count = iter(range(1000))

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"data{next(count)}",
            "database_url": f"sqlite:///{tmp_path / 'metadata.db'}",
        }
        return Settings(**{**values, **overrides})

    return factory


@pytest.fixture
def runtimes() -> Iterator[Callable[[Settings], Runtime]]:
    built: list[Runtime] = []

    def build(settings: Settings) -> Runtime:
        runtime = Runtime.build(settings)
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.close()


def test_development_creates_and_warns_about_the_default_admin(
    make_settings: Callable[..., Settings],
    runtimes: Callable[[Settings], Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = runtimes(make_settings())
    with caplog.at_level(logging.WARNING, logger="logflow.auth"):
        report = startup.prepare(runtime)
    assert report.created_admin == "default"
    assert any("default password" in w for w in report.warnings)
    assert "admin123" in caplog.text and "SECURITY" in caplog.text


def test_production_refuses_default_admin_weak_secret_and_cors_wildcard(
    make_settings: Callable[..., Settings], runtimes: Callable[[Settings], Runtime]
) -> None:
    dev = runtimes(make_settings())
    startup.prepare(dev)  # the seed's admin/admin123 now exists in this database
    prod = runtimes(make_settings(env="production", secret_key=STRONG_SECRET))
    with pytest.raises(StartupRefused, match=r"admin admin \(the default password\)"):
        startup.check(prod)
    with pytest.raises(StartupRefused):
        create_app(prod)
    weak = runtimes(make_settings(env="production", secret_key="changeme"))
    with pytest.raises(StartupRefused, match="LOGFLOW_SECRET_KEY"):
        create_app(weak)
    cors = make_settings(cors_origins="*")
    assert any("CORS" in p for p in startup.config_problems(cors))
    assert not startup.config_problems(make_settings(cors_origins="*", cors_allow_credentials=False))
    with Session(prod.database) as session, session.begin():  # a well-known password is no better
        user = find_user(session, "admin")
        assert user is not None
        set_password(session, user, "password123")
    with pytest.raises(StartupRefused, match="well-known password 'password123'"):
        startup.check(prod)
    with Session(prod.database) as session, session.begin():
        user = find_user(session, "admin")
        assert user is not None
        set_password(session, user, STRONG_ADMIN, strict=True)
    assert startup.check(prod) == []
    app = create_app(prod)
    assert TestClient(app).get("/api/v1/logs/recent").status_code == 401  # no public reads in production


def test_production_first_admin_comes_from_logflow_admin_password(
    make_settings: Callable[..., Settings], runtimes: Callable[[Settings], Runtime]
) -> None:
    nobody = runtimes(make_settings(env="production", secret_key=STRONG_SECRET))
    assert startup.ensure_first_admin(nobody) is None  # production never creates admin/admin123
    weak = runtimes(make_settings(env="production", secret_key=STRONG_SECRET, admin_password="admin123"))
    with pytest.raises(StartupRefused, match="LOGFLOW_ADMIN_PASSWORD"):
        startup.ensure_first_admin(weak)
    good = runtimes(make_settings(env="production", secret_key=STRONG_SECRET, admin_password=STRONG_ADMIN))
    client = TestClient(create_app(good))
    resp = client.post("/api/v1/auth/login", data={"username": "admin", "password": STRONG_ADMIN})
    assert resp.status_code == 200 and "x-logflow-warning" not in resp.headers
    assert client.get("/health").json()["warnings"] == []
    body = {"username": "eve", "email": "eve@example.com", "password": "eve-password-1"}
    assert client.post("/api/v1/auth/register", json=body).status_code == 403  # registration closed


def test_serve_refuses_to_start_in_production_with_the_default_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LOGFLOW_") or k.startswith("LOGFLOW_TEST_")
    }
    init = subprocess.run(
        [sys.executable, "-m", "logflow", "db", "init", "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    env.update({"LOGFLOW_ENV": "production", "LOGFLOW_SECRET_KEY": STRONG_SECRET})
    serve = subprocess.run(
        [sys.executable, "-m", "logflow", "serve", "--data-dir", str(data), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 2, serve.stderr[-2000:]
    assert "refusing to start" in serve.stderr and "admin admin (the default password)" in serve.stderr


# -- headers, CORS, docs ---------------------------------------------------------------------------


@pytest.fixture
def app_client(
    make_settings: Callable[..., Settings], runtimes: Callable[[Settings], Runtime]
) -> Callable[..., TestClient]:
    def make(base_url: str = "http://testserver", **overrides: Any) -> TestClient:
        return TestClient(create_app(runtimes(make_settings(**overrides))), base_url=base_url)

    return make


def test_security_headers_on_every_response(app_client: Callable[..., TestClient]) -> None:
    client = app_client()
    for method, path in (
        ("GET", "/health"),
        ("GET", "/api/v1/logs/recent"),
        ("GET", "/nope"),
        ("POST", "/api/v1/ingest"),
        ("GET", "/openapi.json"),
    ):
        resp = client.request(method, path)
        assert resp.headers["x-content-type-options"] == "nosniff", path
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        assert "strict-transport-security" not in resp.headers  # plain HTTP: HSTS would be ignored anyway
    tls = app_client(base_url="https://testserver")
    assert tls.get("/health").headers["strict-transport-security"].startswith("max-age=31536000")


def _csp_sources(csp: str, directive: str) -> list[str]:
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == directive:
            return words[1:]
    return []


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_under_their_csp(app_client: Callable[..., TestClient], page: str) -> None:
    """Every script, style and icon the page references is allowed by the page's CSP."""
    resp = app_client().get(page)
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    html = resp.text
    checks = [("script-src", url) for url in re.findall(r'<script[^>]+src="([^"]+)"', html)]
    checks += [
        ("style-src", url) for url in re.findall(r'<link[^>]+rel="stylesheet"[^>]*href="([^"]+)"', html)
    ]
    checks += [
        ("style-src", url) for url in re.findall(r'<link[^>]+href="([^"]+)"[^>]*rel="stylesheet"', html)
    ]
    checks += [
        ("img-src", url) for url in re.findall(r'<link[^>]+rel="shortcut icon"[^>]*href="([^"]+)"', html)
    ]
    assert checks, "no assets found: the docs page changed shape"
    for directive, url in checks:
        origin = re.match(r"https?://[^/]+", url)
        sources = _csp_sources(csp, directive) or _csp_sources(csp, "default-src")
        allowed = "'self'" in sources if origin is None else origin.group(0) in sources
        assert allowed, f"{page}: {url} blocked by {directive} {sources}"
    if "<script>" in html:  # the inline bootstrap script
        assert "'unsafe-inline'" in _csp_sources(csp, "script-src")
    spec = app_client().get("/openapi.json")  # what the page fetches: same origin
    assert spec.status_code == 200 and "'self'" in _csp_sources(csp, "connect-src")


def test_cors_allowlist(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins="https://dash.example")
    allowed = client.get("/health", headers={"Origin": "https://dash.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options(
        "/api/v1/auth/me",
        headers={
            "Origin": "https://dash.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status_code == 200 and preflight.headers["x-frame-options"] == "DENY"
    assert (
        "access-control-allow-origin"
        not in app_client().get("/health", headers={"Origin": "https://x"}).headers
    )
    with pytest.raises(StartupRefused, match="CORS"):
        app_client(cors_origins="*")
