"""Shared fixtures: isolated settings, a running LogFlow (API + processor) per shape, Loghub data.

The distributed shape needs the real engines from ``scripts/stack.sh``; their URLs arrive as
``LOGFLOW_TEST_*`` variables (``scripts/test.sh`` sets them). In CI a missing engine is a failure,
never a skip.
"""

from __future__ import annotations

import csv
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from logflow.app import create_app
from logflow.auth import apikeys, sessions
from logflow.auth.service import AuthService
from logflow.auth.users import find_user
from logflow.bench.cleanup import drop_indices
from logflow.db.session import session_scope
from logflow.ingest.processor import Processor
from logflow.runtime import Runtime
from logflow.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOGFLOW_SHARED_DIR", REPO.parent / "shared"))
TEST_URLS = {
    "kafka": os.environ.get("LOGFLOW_TEST_KAFKA_URL"),
    "opensearch": os.environ.get("LOGFLOW_TEST_OPENSEARCH_URL"),
    "postgres": os.environ.get("LOGFLOW_TEST_POSTGRES_URL"),
    "redis": os.environ.get("LOGFLOW_TEST_REDIS_URL"),
}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Tests build their settings explicitly; a developer's LOGFLOW_* environment must not leak in.
for _name in [n for n in os.environ if n.startswith("LOGFLOW_") and not n.startswith("LOGFLOW_TEST_")]:
    if _name != "LOGFLOW_SHARED_DIR":
        del os.environ[_name]


def require_engine(name: str) -> str:
    """The engine's URL; fails in CI and skips elsewhere when it is not configured."""
    url = TEST_URLS[name]
    if url:
        return url
    message = f"{name} not configured: run scripts/test.sh (it starts the real engines) or set LOGFLOW_TEST_*"
    if IN_CI or os.environ.get("LOGFLOW_REQUIRE_DISTRIBUTED"):
        pytest.fail(message)
    pytest.skip(message)


def distributed_overrides() -> dict[str, Any]:
    """Settings for the distributed shape, isolated per test by unique topic and index names."""
    unique = uuid.uuid4().hex[:10]
    return {
        "queue_url": require_engine("kafka"),
        "store_url": require_engine("opensearch"),
        "database_url": require_engine("postgres"),
        "cache_url": require_engine("redis"),
        "kafka_topic": f"lf-test-{unique}",
        "kafka_dead_letter_topic": f"lf-test-{unique}-dlq",
        "kafka_partitions": 3,
        "processor_group": f"lf-test-{unique}",
        "store_index_prefix": f"lf-test-{unique}",
    }


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "processor_batch": 2000}
        values.update(overrides)
        return Settings(**values)

    return factory


@dataclass
class LogFlow:
    """A running LogFlow: the API app under a TestClient plus a processor thread.

    ``client`` sends no credentials (anonymous); ``admin`` is the same app signed in as the
    default admin; ``ingest`` sends an ``ingest``-scoped API key (``ingest_key``) unless the call
    passes its own ``headers``. ``token_for``/``client_as`` sign in any user without the login
    endpoint (so tests do not spend the login rate limit).
    """

    runtime: Runtime
    client: TestClient
    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)
    processors: list[Processor] = field(default_factory=list)  # run by ``threads``
    admin: TestClient = field(init=False)
    ingest_key: str = field(init=False, default="")
    clients: list[TestClient] = field(init=False, default_factory=list)  # closed by stop_logflow

    def __post_init__(self) -> None:
        self.admin = self.client_as("admin")
        self.ingest_key = self.api_key("admin", ["ingest"])

    @property
    def auth(self) -> AuthService:
        service: AuthService = self.client.app.state.auth  # type: ignore[attr-defined]
        return service

    def token_for(self, username: str) -> str:
        """A fresh access token for ``username`` (its own login session)."""
        with session_scope(self.auth.sessions) as session:
            user = find_user(session, username)
            assert user is not None, f"no user {username!r}"
            return sessions.issue(session, self.auth.codec, user.id).access_token

    def api_key(self, username: str, scopes: list[str]) -> str:
        """A new API key of ``username`` with ``scopes``."""
        with session_scope(self.auth.sessions) as session:
            user = find_user(session, username)
            assert user is not None, f"no user {username!r}"
            return apikeys.create_key(session, user, name="test", scopes=scopes)[1]

    def client_as(self, username: str) -> TestClient:
        """A client of the same app that sends ``username``'s bearer token."""
        client = TestClient(self.client.app, headers={"Authorization": f"Bearer {self.token_for(username)}"})
        self.clients.append(client)
        return client

    def ingest(self, payload: Any, **kwargs: Any) -> Any:
        kwargs["headers"] = {"X-API-Key": self.ingest_key, **(kwargs.get("headers") or {})}
        if isinstance(payload, bytes | str):
            return self.client.post("/api/v1/ingest", content=payload, **kwargs)
        return self.client.post("/api/v1/ingest", json=payload, **kwargs)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the processor has stored everything queued so far."""
        deadline = time.monotonic() + timeout
        group = self.runtime.settings.processor_group
        while time.monotonic() < deadline:
            stats = self.runtime.queue.stats(group)
            if stats.partitions and all(p.lag == 0 for p in stats.partitions):
                self.runtime.store.refresh()
                self.runtime.cache.clear(None)
                return
            time.sleep(0.05)
        raise AssertionError(f"processor did not drain the queue within {timeout}s: {stats}")


def start_logflow(settings: Settings, processors: int = 1) -> LogFlow:
    runtime = Runtime.build(settings)
    stop = threading.Event()
    flow = LogFlow(runtime=runtime, client=TestClient(create_app(runtime)), stop=stop)
    for _ in range(processors):
        proc = Processor(runtime.queue, runtime.store, group=settings.processor_group,
                         batch_size=settings.processor_batch, prepare_worker=settings.processor_prepare_worker)
        thread = threading.Thread(target=proc.run, args=(stop,), daemon=True)
        thread.start()
        flow.threads.append(thread)
        flow.processors.append(proc)
    return flow


def stop_logflow(flow: LogFlow) -> None:
    flow.stop.set()
    for thread in flow.threads:
        thread.join(timeout=30)
    for client in flow.clients:
        client.close()
    flow.client.close()
    flow.runtime.close()


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards (isolated, repeatable)."""
    from logflow.db.engine import make_engine

    base = require_engine("postgres")
    schema = f"lf_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield f"{base}?options=-csearch_path%3D{schema}"
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture(params=["embedded", pytest.param("distributed", marks=pytest.mark.distributed)])
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def logflow(shape: str, make_settings: Callable[..., Settings]) -> Iterator[LogFlow]:
    """LogFlow in the requested shape; the same tests run against both."""
    overrides = distributed_overrides() if shape == "distributed" else {}
    flow = start_logflow(make_settings(**overrides))
    flow.runtime.cache.clear(None)  # Redis is shared: start from an empty cache like the embedded shape
    try:
        yield flow
    finally:
        stop_logflow(flow)
        if shape == "distributed":
            drop_distributed_resources(flow.runtime.settings, flow.runtime.queue)


def drop_distributed_resources(settings: Settings, queue: Any) -> None:
    """Delete a test's Kafka topics/groups and OpenSearch indices/template (the engines are shared)."""
    from tests.contracts.kafka_factory import delete_topics

    delete_topics(settings.queue_url, queue)
    drop_indices(settings.store_url, settings.store_index_prefix)


# -- Loghub: real logs from 12 systems (https://github.com/logpai/loghub) ---------------------------
LOGHUB_SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "Linux", "OpenSSH", "OpenStack",
                  "Proxifier", "Spark", "Zookeeper")


def loghub_rows(system: str) -> list[dict[str, str]]:
    path = SHARED / "data" / "loghub" / system / f"{system}_2k.log_structured.csv"
    if not path.exists():
        pytest.fail(f"Loghub data missing at {path} (set LOGFLOW_SHARED_DIR)")
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return list(csv.DictReader(fh))


def loghub_events(system: str, *, now_us: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Loghub lines as LogFlow events: real messages, recent timestamps one second apart."""
    rows = loghub_rows(system)[:limit]
    now = time.time_ns() // 1000 if now_us is None else now_us
    events = []
    for i, row in enumerate(rows):
        event: dict[str, Any] = {
            "timestamp": now - (len(rows) - i) * 1_000_000,
            "service": system.lower(),
            "message": row["Content"],
            "metadata": {"event_id": row["EventId"], "line": int(row["LineId"])},
        }
        level = row.get("Level")
        if level and level.lower() in ("info", "warn", "warning", "error", "fatal", "debug", "trace"):
            event["level"] = level
        events.append(event)
    return events
