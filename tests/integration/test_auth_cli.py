"""`logflow users` and `logflow api-keys` on a real SQLite file, checked through the API."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from logflow.app import create_app
from logflow.cli.main import cli
from logflow.runtime import Runtime
from logflow.settings import Settings


def run(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_and_api_keys_from_the_cli(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert "created admin 'ops'" in run(
        "users",
        "create",
        "ops",
        "--email",
        "ops@example.com",
        "--admin",
        "--password-stdin",
        *data,
        stdin="ops-password-1\n",
    )
    prompted = run(
        "users", "create", "bob", "--email", "bob@example.com", *data, stdin="bob-pass-12\nbob-pass-12\n"
    )
    assert "created user 'bob'" in prompted
    short = CliRunner().invoke(
        cli, ["users", "create", "x", "--email", "x@e.io", "--password-stdin", *data], input="short\n"
    )
    assert short.exit_code == 1 and "at least 8" in short.output
    listing = run("users", "list", *data)
    assert "ops" in listing and "admin" in listing and "bob" in listing
    run("users", "set-password", "bob", "--password-stdin", *data, stdin="bob-new-pass-1\n")
    run("users", "set-role", "bob", "admin", *data)
    created = run("api-keys", "create", "bob", "--name", "shipper", "--scope", "ingest", *data)
    key = created.splitlines()[0]
    assert key.startswith("lf_")
    assert "shipper" in run("api-keys", "list", *data) and key not in run("api-keys", "list", *data)

    runtime = Runtime.build(Settings(data_dir=tmp_path))
    try:
        client = TestClient(create_app(runtime))
        assert (
            client.post("/api/v1/auth/login", data={"username": "bob", "password": "bob-new-pass-1"}).json()[
                "token_type"
            ]
            == "bearer"
        )
        assert (
            client.post("/api/v1/ingest", json={"message": "m"}, headers={"X-API-Key": key}).status_code
            == 202
        )
        key_id = run("api-keys", "list", *data).splitlines()[1].split()[0]
        run("api-keys", "revoke", key_id, *data)
        assert (
            client.post("/api/v1/ingest", json={"message": "m"}, headers={"X-API-Key": key}).status_code
            == 401
        )
        token = client.post(
            "/api/v1/auth/login", data={"username": "ops", "password": "ops-password-1"}
        ).json()
        events = client.get(
            "/api/v1/admin/audit", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        actions = {e["action"] for e in events.json()}
        assert {
            "user_created",
            "password_changed",
            "role_changed",
            "api_key_created",
            "api_key_revoked",
        } <= actions
    finally:
        runtime.close()
