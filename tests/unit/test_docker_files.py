"""Docker files checked as text: CI has a ``docker`` client but no engine, so nothing is built or run.

``docker-compose.yml`` is parsed and cross-checked against the code (CLI commands, settings
schemes), ``Dockerfile`` against the repository (COPY sources, ``.dockerignore``), and
``scripts/start-all-docker.sh`` is linted and run against stub ``docker``/``curl`` commands.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from logflow.cli.main import cli
from logflow.settings import CACHE_SCHEMES, DATABASE_SCHEMES, QUEUE_SCHEMES, STORE_SCHEMES, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.docker.example"
START_SCRIPT = REPO / "scripts" / "start-all-docker.sh"

OFFICIAL_IMAGES = {
    "kafka": "apache/kafka:4.1.1",
    "opensearch": "opensearchproject/opensearch:2.19.1",
    "opensearch-dashboards": "opensearchproject/opensearch-dashboards:2.19.1",
    "postgres": "postgres:16",
    "redis": "redis:7",
}
LOGFLOW_SERVICES = {"migrate", "api", "processor", "alerting", "generator"}
HTTP_COMMANDS = {"api", "serve"}  # the roles that answer the image's HEALTHCHECK (/health)
ONE_SHOT_COMMANDS = {"db", "generate"}  # exit when done: must not be restarted
# Commands other engineers are still building, and how the compose file must treat them meanwhile.
PROFILED_UNTIL_BUILT = {"alerting": "alerting"}  # command -> the profile it hides behind
PENDING_ENV = {"LOGFLOW_SECRET_KEY", "LOGFLOW_ACCESS_TOKEN_EXPIRE_MINUTES"}  # auth settings (issue #4)

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


# ------------------------------------------------------------------ helpers


def is_built(service: dict[str, Any]) -> bool:
    build = service.get("build")
    context = build.get("context", ".") if isinstance(build, dict) else build
    return context in (".", "./")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_of(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def settings_kwargs(env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("LOGFLOW_").lower(): v for k, v in env.items() if k.startswith("LOGFLOW_")}


def registry_host(image: str) -> str | None:
    """The registry part of an image reference (``host[:port]/...``), None for the default registry."""
    first, sep, _ = image.partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else None


def healthcheck_disabled(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("disable")) or check.get("test") in (["NONE"], "NONE")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def dockerignored(path: str) -> bool:
    """Simplified .dockerignore matching (patterns, ``**/``, ``!`` exceptions; last match wins)."""
    patterns = [p.strip() for p in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # the path and its parents
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").strip("/")
        forms = [pat, pat.removeprefix("**/")] if pat.startswith("**/") else [pat]
        hit = any(
            fnmatch.fnmatchcase(c, f) or (pat.startswith("**/") and fnmatch.fnmatchcase(c.split("/")[-1], f))
            for c in candidates
            for f in forms
        )
        if hit:
            excluded = not negate
    return excluded


# ------------------------------------------------------------------ docker-compose.yml


def test_compose_shape() -> None:
    assert "version" not in COMPOSE, "the Compose spec has no version key"
    assert set(SERVICES) == LOGFLOW_SERVICES | set(OFFICIAL_IMAGES)


def test_images_are_official_or_the_local_build() -> None:
    for name, service in SERVICES.items():
        if name in LOGFLOW_SERVICES:
            assert is_built(service), f"{name}: LogFlow services build ./Dockerfile"
            assert service.get("image", "logflow:local") == "logflow:local", name
        else:
            assert "build" not in service, name
            assert service.get("image") == OFFICIAL_IMAGES[name], name
        image = service.get("image")
        if image:
            assert registry_host(image) is None, f"{name}: {image} names a registry host"


@pytest.mark.parametrize("name", sorted(LOGFLOW_SERVICES))
def test_logflow_service_runs_a_real_command(name: str) -> None:
    service = SERVICES[name]
    command = service["command"]
    assert isinstance(command, list) and command and all(isinstance(a, str) for a in command), name
    sub, args = command[0], command[1:]
    profiles = service.get("profiles") or []
    if sub not in cli.commands:
        if sub in PROFILED_UNTIL_BUILT:
            # Not built yet: allowed only while the service stays behind its profile.
            assert profiles == [PROFILED_UNTIL_BUILT[sub]], (
                f"{name}: `logflow {sub}` missing and not profiled"
            )
            return
        if sub == "db":
            pytest.xfail("`logflow db` is not built yet; `api` waits for `migrate`, so compose needs it")
        pytest.fail(f"{name}: `logflow {sub}` is not a logflow command ({sorted(cli.commands)})")
    command_obj = cli.commands[sub]
    if isinstance(command_obj, click.Group):
        assert args and args[0] in command_obj.commands, f"{name}: `logflow {sub} {args[:1]}` unknown"
        command_obj, sub, args = command_obj.commands[args[0]], args[0], args[1:]
    with command_obj.make_context(sub, list(args)):  # parses options: unknown ones or bad values raise
        pass


def test_alerting_and_demo_are_profiles() -> None:
    assert SERVICES["alerting"]["command"] == ["alerting"]
    assert SERVICES["alerting"].get("profiles") == ["alerting"]
    assert SERVICES["generator"].get("profiles") == ["demo"]
    assert SERVICES["generator"]["command"] == [
        "generate",
        "--target",
        "http://api:8000",
        "--rate",
        "200",
        "--duration",
        "3600",
    ]
    core = [n for n, s in SERVICES.items() if not s.get("profiles")]
    assert "api" in core and "processor" in core and "migrate" in core


def test_depends_on_targets_exist_and_conditions_hold() -> None:
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for target, condition in depends_of(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target}"
            assert condition in valid, f"{name} -> {target}: {condition}"
            dep = SERVICES[target]
            if condition == "service_healthy":
                has_check = "test" in (dep.get("healthcheck") or {}) or is_built(dep)  # image HEALTHCHECK
                assert has_check and not healthcheck_disabled(dep), f"{name} waits for {target}'s health"
            if condition == "service_completed_successfully":
                assert str(dep.get("restart")) in ("no", "on-failure"), f"{target} would be restarted"
            if not service.get("profiles"):
                assert not dep.get("profiles"), f"{name} (always on) depends on profiled {target}"
    api = depends_of(SERVICES["api"])
    for engine in ("kafka", "opensearch", "postgres", "redis"):
        assert api[engine] == "service_healthy", engine
    assert api["migrate"] == "service_completed_successfully"
    assert SERVICES["migrate"]["command"] == ["db", "migrate"]


def test_healthchecks() -> None:
    for name in OFFICIAL_IMAGES:
        if name != "opensearch-dashboards":
            assert SERVICES[name]["healthcheck"]["test"], name
    kafka_check = " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in kafka_check and "localhost:9092" in kafka_check
    assert "_cluster/health" in " ".join(SERVICES["opensearch"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for name in LOGFLOW_SERVICES:  # the image's check asks /health: only HTTP roles may keep it
        serves_http = SERVICES[name]["command"][0] in HTTP_COMMANDS
        assert healthcheck_disabled(SERVICES[name]) != serves_http, name


def test_one_shot_services_are_not_restarted() -> None:
    for name in LOGFLOW_SERVICES:
        if SERVICES[name]["command"][0] in ONE_SHOT_COMMANDS:
            assert str(SERVICES[name].get("restart")) in ("no", "on-failure"), name
        else:
            assert SERVICES[name].get("restart") == "unless-stopped", name


def test_logflow_environment_builds_valid_distributed_settings() -> None:
    shared = {str(k): str(v) for k, v in COMPOSE["x-logflow-env"].items()}
    for name in LOGFLOW_SERVICES:
        assert env_of(SERVICES[name]) == shared, f"{name} does not use x-logflow-env"
    settings = Settings(**settings_kwargs(shared))  # type: ignore[arg-type]
    urls = {
        "kafka": (settings.queue_url, QUEUE_SCHEMES, "kafka"),
        "opensearch": (settings.store_url, STORE_SCHEMES, "opensearch"),
        "postgres": (settings.database_url, DATABASE_SCHEMES, "postgresql"),
        "redis": (settings.cache_url, CACHE_SCHEMES, "redis"),
    }
    for service, (url, allowed, scheme) in urls.items():
        parts = urlsplit(url)
        assert parts.scheme == scheme and parts.scheme in allowed, url
        assert parts.hostname == service and service in SERVICES, url
    # The URLs agree with the engines' own configuration.
    pg_env, db = env_of(SERVICES["postgres"]), urlsplit(settings.database_url)
    assert (db.username, db.password, db.path.lstrip("/"), db.port) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
        5432,
    )
    kafka_env = env_of(SERVICES["kafka"])
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://" + urlsplit(settings.queue_url).netloc
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert settings.kafka_partitions >= SERVICES["processor"]["deploy"]["replicas"] >= 2
    assert "LOGFLOW_ENV" not in shared  # production is an option, left commented out
    assert "# LOGFLOW_ENV: production" in COMPOSE_FILE.read_text(encoding="utf-8")


def test_published_ports_are_loopback_only() -> None:
    published: dict[int, str] = {}
    for name, service in SERVICES.items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip, host_port = port.get("host_ip", ""), int(port["published"])
            else:
                *ip, host_port_s, container = str(port).split(":")
                host_ip, host_port = (ip[0] if ip else ""), int(host_port_s)
                if container.endswith("/udp"):
                    host_port = -host_port  # UDP and TCP on one port number are two publications
            assert host_ip == "127.0.0.1", f"{name}: {port} is open beyond localhost (no auth yet)"
            published[host_port] = name
    assert {8000: "api", 9200: "opensearch", 5601: "opensearch-dashboards"}.items() <= published.items()
    # The protocol listeners the api process runs: syslog TCP and UDP, GELF UDP (docs/protocols/).
    assert {5514: "api", -5514: "api", -12201: "api"}.items() <= published.items()
    assert not SERVICES["processor"].get("ports"), "a scaled service cannot publish a fixed port"


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = set()
    for service in SERVICES.values():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used == declared
    assert "logflow-data:/data" in SERVICES["api"]["volumes"]


# ------------------------------------------------------------------ .env.docker.example, .dockerignore


def test_env_example() -> None:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key == key.strip() and key.isupper(), line
            values[key] = value.split(" #")[0].strip()
    assert all(key.startswith("LOGFLOW_") for key in values), sorted(values)
    fields = {k: v for k, v in values.items() if k.removeprefix("LOGFLOW_").lower() in Settings.model_fields}
    assert set(values) - set(fields) <= PENDING_ENV, sorted(set(values) - set(fields))
    Settings(**settings_kwargs(fields))  # type: ignore[arg-type]
    shared = {str(k): str(v) for k, v in COMPOSE["x-logflow-env"].items()}
    for key in ("LOGFLOW_QUEUE_URL", "LOGFLOW_STORE_URL", "LOGFLOW_DATABASE_URL", "LOGFLOW_CACHE_URL"):
        assert values[key] == shared[key], key
    assert values["LOGFLOW_ACCESS_TOKEN_EXPIRE_MINUTES"] == "30"
    assert "change-me" in values["LOGFLOW_SECRET_KEY"]  # a placeholder, never a real secret


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (
        ".git",
        ".venv",
        ".stack",
        ".bench",
        "logflow-data",
        ".env.docker",
        "src/logflow/__pycache__/x.pyc",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
    ):
        assert dockerignored(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "src/logflow/__init__.py",
        "src/logflow/db/migrations/env.py",
    ):
        assert not dockerignored(path), path


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    by_kind: dict[str, list[str]] = {}
    for kind, args in instructions:
        by_kind.setdefault(kind, []).append(args)
    froms = by_kind["FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    assert all(registry_host(f.split()[0]) is None for f in froms)
    assert instructions[-1][0] in ("CMD", "ENTRYPOINT")
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "runs as non-root"
    assert any("--uid 10001" in run and user in run for run in by_kind["RUN"])
    assert json.loads(by_kind["ENTRYPOINT"][-1]) == ["logflow"]
    assert json.loads(by_kind["CMD"][-1]) == ["serve"]
    assert {"8000", "5514/tcp", "5514/udp", "12201/udp"} <= set(" ".join(by_kind["EXPOSE"]).split())
    assert "/data" in by_kind["VOLUME"][-1]
    env = " ".join(by_kind["ENV"])
    assert "LOGFLOW_DATA_DIR=/data" in env and "LOGFLOW_HOST=0.0.0.0" in env
    check = by_kind["HEALTHCHECK"][-1]
    assert "/health" in check and "urllib" in check and "curl" not in check
    for run in by_kind["RUN"]:
        if "pip install" in run or "pip wheel" in run:
            assert run.count("--no-cache-dir") >= run.count("pip install") + run.count("pip wheel"), run
    assert any("[distributed]" in run for run in by_kind["RUN"])


def test_dockerfile_copy_sources_exist_and_reach_the_build() -> None:
    copied = []
    for kind, args in dockerfile_instructions():
        if kind not in ("COPY", "ADD"):
            continue
        tokens = args.split()
        if any(t.startswith("--from=") for t in tokens):
            continue  # from another stage
        sources = [t for t in tokens if not t.startswith("--")][:-1]
        assert sources, args
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} missing"
            assert not dockerignored(source), f"COPY source {source} excluded by .dockerignore"
            copied.append(source)
    assert {"pyproject.toml", "README.md", "src"} <= set(copied)


# ------------------------------------------------------------------ scripts/start-all-docker.sh


def test_start_script_lints() -> None:
    assert START_SCRIPT.stat().st_mode & stat.S_IXUSR, "executable"
    text = START_SCRIPT.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(START_SCRIPT)], check=True, timeout=30)
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        done = subprocess.run([shellcheck, str(START_SCRIPT)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _run_start(tmp_path: Path, docker: str, curl: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "docker", docker)
    _stub(bin_dir, "curl", curl)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(
        ["bash", str(START_SCRIPT)], capture_output=True, text=True, env=full_env, timeout=60
    )


def test_start_script_without_compose_points_to_make_run(tmp_path: Path) -> None:
    done = _run_start(tmp_path, docker="exit 1", curl="exit 0")
    assert done.returncode != 0
    assert "docker compose" in done.stderr and "make run" in done.stderr
    assert "LogFlow is running" not in done.stdout


def test_start_script_starts_waits_and_prints_the_services(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    done = _run_start(tmp_path, docker=f'echo "$*" >> "{log}"', curl="exit 0")
    assert done.returncode == 0, done.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0] == "compose version" and "compose up -d --build" in calls
    for expected in (
        "✅ LogFlow is running!",
        "http://localhost:8000",
        "http://localhost:8000/docs",
        "http://localhost:9200",
        "http://localhost:5601",
    ):
        assert expected in done.stdout, expected


def test_start_script_gives_up_when_never_healthy(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    done = _run_start(tmp_path, docker=f'echo "$*" >> "{log}"', curl="exit 7", LOGFLOW_DOCKER_TIMEOUT="0")
    assert done.returncode == 1
    assert "not healthy" in done.stderr and "LogFlow is running" not in done.stdout
    assert any(call.startswith("compose logs") for call in log.read_text(encoding="utf-8").splitlines())
