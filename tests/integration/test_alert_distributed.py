"""Several alert engines against one metadata database: only the lease holder evaluates and sends.

On real PostgreSQL (``distributed``): two ``logflow alerting`` processes, the leader killed with
SIGKILL mid-incident, the survivor taking over without dropping or repeating a notification.
In-process engines hammering one database (SQLite and PostgreSQL) still notify exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from logflow.alerting.engine import AlertEngine
from logflow.db.engine import make_engine
from logflow.db.models import AlertEngineLease, utcnow
from logflow.db.session import make_session_factory
from logflow.settings import Settings
from tests.conftest import LogFlow, postgres_schema, start_logflow, stop_logflow
from tests.integration.alert_receivers import HttpReceiver, ensure_alert_routes, wait_until


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema of its own (search_path), dropped afterwards."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


def _flow(make_settings: Callable[..., Settings], database_url: str) -> LogFlow:
    flow = start_logflow(
        make_settings(
            database_url=database_url,
            webhook_allowed_hosts="127.0.0.1",
            alert_interval_s=0.3,
            alert_lease_s=2,
            webhook_retries=0,
        )
    )
    ensure_alert_routes(flow.client.app)
    return flow


def _spike(flow: LogFlow, service: str, count: int = 10) -> None:
    now_us = int(utcnow().timestamp() * 1_000_000)
    events = [
        {"timestamp": now_us - i * 1000, "service": service, "level": "ERROR", "message": "boom"}
        for i in range(count)
    ]
    assert flow.ingest(events).status_code == 202
    flow.settle()


def _rule(flow: LogFlow, hook: HttpReceiver, **fields: Any) -> int:
    body = {
        "name": "spike",
        "threshold": 5,
        "levels": ["ERROR"],
        "notification_channel": "webhook",
        "notification_config": {"url": f"{hook.url}/hook"},
        **fields,
    }
    response = flow.admin.post("/api/v1/alerts/rules", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _kinds(hook: HttpReceiver) -> list[tuple[str, int]]:
    return sorted((r.json()["kind"], r.json()["rule"]["id"]) for r in hook.requests)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.distributed)])
def test_engines_racing_on_one_database_notify_once(
    database: str,
    make_settings: Callable[..., Settings],
    hook: HttpReceiver,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url = request.getfixturevalue("pg_url") if database == "postgres" else f"sqlite:///{tmp_path / 'meta.db'}"
    flow = _flow(make_settings, url)
    stop = threading.Event()
    engines, threads = [], []
    try:
        rule_id = _rule(flow, hook)
        for n in range(3):  # three replicas, each with its own connection pool, evaluating every 0.3 s
            database_engine = make_engine(url)
            engine = AlertEngine(
                flow.runtime.store, database_engine, flow.runtime.settings, holder=f"replica-{n}"
            )
            engines.append((engine, database_engine))
            threads.append(threading.Thread(target=engine.run, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        _spike(flow, "payment-service")
        hook.wait_for(1)
        time.sleep(1.5)  # five more rounds
        assert _kinds(hook) == [("firing", rule_id)]
        with make_session_factory(flow.runtime.database)() as session:
            leases = session.scalars(select(AlertEngineLease)).all()
        assert len(leases) == 1 and leases[0].holder.startswith("replica-")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        for _engine, database_engine in engines:
            database_engine.dispose()
        stop_logflow(flow)


class AlertingProcess:
    """``logflow alerting`` in a process of its own."""

    FIELDS = ("data_dir", "database_url", "webhook_allowed_hosts", "alert_interval_s", "alert_lease_s",
              "webhook_retries", "smtp_host", "smtp_port", "smtp_from", "smtp_starttls", "smtp_ssl")

    def __init__(self, settings: Settings, log_path: Path) -> None:
        values = settings.model_dump()
        env = {**os.environ, **{f"LOGFLOW_{name.upper()}": str(values[name]) for name in self.FIELDS}}
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from logflow.cli.alerting import alerting; alerting()"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def close(self) -> None:
        self.signal(signal.SIGTERM)
        self._log.close()


def _leader_pid(flow: LogFlow) -> int | None:
    with make_session_factory(flow.runtime.database)() as session:
        lease = session.scalars(select(AlertEngineLease)).first()
    if lease is None or lease.expires_ms == 0:
        return None
    return int(lease.holder.split(":")[1])


@pytest.mark.distributed
def test_two_alerting_processes_on_postgres_failover_neither_drops_nor_doubles(
    pg_url: str, make_settings: Callable[..., Settings], hook: HttpReceiver, tmp_path: Path
) -> None:
    flow = _flow(make_settings, pg_url)
    processes: list[AlertingProcess] = []
    try:
        first_rule = _rule(flow, hook, name="payments", services=["payment-service"])
        processes = [AlertingProcess(flow.runtime.settings, tmp_path / f"alerting-{n}.log") for n in range(2)]
        _spike(flow, "payment-service")
        hook.wait_for(1, timeout=20)
        time.sleep(1.0)
        assert _kinds(hook) == [("firing", first_rule)]

        leader = wait_until(lambda: _leader_pid(flow), what="a leader")
        (dead,) = [p for p in processes if p.proc.pid == leader]
        dead.signal(signal.SIGKILL)  # no clean release: the survivor must wait for the lease to expire
        # While nobody leads, a user resolves the alert (its "resolved" notice is now owed) and a new
        # incident starts: both must be sent exactly once by the survivor.
        (alert,) = flow.client.get("/api/v1/alerts/triggered").json()["alerts"]
        assert flow.admin.post(f"/api/v1/alerts/triggered/{alert['id']}/resolve").status_code == 200
        second_rule = _rule(flow, hook, name="orders", services=["order-service"])
        _spike(flow, "order-service")
        # The manual resolve closed the payments alert; its spike is still in the window, so the
        # survivor opens a new payments alert too: four notifications in all, each exactly once.
        hook.wait_for(4, timeout=20)
        new_leader = wait_until(lambda: _leader_pid(flow), what="a new leader")
        assert new_leader != leader
        time.sleep(1.5)
        assert _kinds(hook) == sorted(
            [
                ("firing", first_rule),
                ("resolved", first_rule),
                ("firing", second_rule),
                ("firing", first_rule),
            ]
        )
        keys = [r.headers["x-logflow-delivery"] for r in hook.requests]
        assert len(keys) == len(set(keys))  # no notification was delivered twice
    finally:
        for process in processes:
            process.close()
        stop_logflow(flow)
