"""rsyslog's ``omelasticsearch`` (bulk mode) shipping real Loghub lines into LogFlow's ``_bulk``.

A real ``rsyslogd`` runs as a subprocess with its own config and work directory: an ``imtcp``
input on a free port (no system socket, no /dev/log) bound to a ruleset whose only action is
``omelasticsearch`` pointed at LogFlow under uvicorn, authenticating with Basic (API key as the
password). Lines are sent as RFC 5424 frames carrying the Loghub level as syslog severity; the
events are read back through the search API and compared field by field, counts exact.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import LogFlow, loghub_rows
from tests.e2e.rsyslog import start_rsyslogd, stop_rsyslogd
from tests.serving import free_port, serve_app

SYSTEM = "Zookeeper"
# Loghub level -> (syslog severity number, the text rsyslog puts in log.level, LogFlow's level).
SEVERITIES = {"INFO": (6, "info", "INFO"), "WARN": (4, "warning", "WARN"), "ERROR": (3, "err", "ERROR")}
HOST = "zk-node-1"
APP = "zookeeper"

CONFIG = """
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
module(load="omelasticsearch")

template(name="lf_ecs" type="list") {{
  constant(value="{{")
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  constant(value=",")
  property(outname="message" name="msg" format="jsonf")
  constant(value=",")
  property(outname="host.name" name="hostname" format="jsonf")
  constant(value=",")
  property(outname="service.name" name="programname" format="jsonf")
  constant(value=",")
  property(outname="log.level" name="syslogseverity-text" format="jsonf")
  constant(value=",")
  property(outname="syslog_facility" name="syslogfacility-text" format="jsonf")
  constant(value="}}")
}}
template(name="lf_id" type="string" string="%msgid%")

ruleset(name="to_logflow") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" template="lf_ecs"
         searchIndex="rsyslog-test" bulkmode="on" dynbulkid="on" bulkid="lf_id"
         uid="rsyslog" pwd="{key}" errorFile="{errors}"
         queue.type="linkedList" queue.dequeueBatchSize="200"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
input(type="imtcp" port="{tcp_port}" address="127.0.0.1" ruleset="to_logflow")
"""


@dataclass
class Rsyslog:
    tcp_port: int
    errors: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def rsyslog(logflow: LogFlow, tmp_path: Path) -> Iterator[Rsyslog]:
    """rsyslogd forwarding to this test's LogFlow; stopped (SIGTERM, then SIGKILL) at the end."""
    with serve_app(logflow.client.app) as base_url:
        work = tmp_path / "rsyslog"
        tcp_port = free_port()
        errors = work / "es-errors.json"
        config = CONFIG.format(work=work, port=base_url.rsplit(":", 1)[1], key=logflow.ingest_key, errors=errors,
                               tcp_port=tcp_port)
        process, log = start_rsyslogd(config, work)
        try:
            wait_for_listener(tcp_port, process, log)
            yield Rsyslog(tcp_port=tcp_port, errors=errors, process=process, log=log)
        finally:
            stop_rsyslogd(process)


def wait_for_listener(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rsyslogd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"rsyslogd did not listen on {port}:\n{log.read_text(errors='replace')}")


def frames(rows: list[dict[str, str]], base: datetime) -> tuple[bytes, list[dict[str, str]]]:
    """RFC 5424 frames, newline-delimited, and the event each should become."""
    out: list[bytes] = []
    expected: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        number, text, level = SEVERITIES[row["Level"]]
        stamp = base + timedelta(milliseconds=i)
        iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        msgid = f"zk-{row['LineId']}"
        pri = 1 * 8 + number  # facility user
        out.append(f"<{pri}>1 {iso} {HOST} {APP} - {msgid} - {row['Content']}".encode())
        expected.append({"id": msgid, "message": row["Content"], "level": level, "severity_text": text,
                         "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "000Z"})
    return b"\n".join(out) + b"\n", expected


def search_all(client: TestClient, service: str) -> list[dict[str, object]]:
    """Every event of ``service``, oldest first, paging through the search API."""
    logs: list[dict[str, object]] = []
    offset = 0
    while True:
        page = client.get("/api/v1/logs/search",
                          params={"service": service, "limit": 1000, "offset": offset, "sort": "asc"}).json()
        logs.extend(page["logs"])
        offset += len(page["logs"])
        if not page["logs"] or offset >= page["total"]:
            return logs


def wait_for_count(flow: LogFlow, service: str, count: int, rsyslog: Rsyslog, timeout: float = 90) -> int:
    """Poll until ``count`` events of ``service`` are searchable (rsyslog ships asynchronously)."""
    deadline = time.monotonic() + timeout
    total = -1
    while time.monotonic() < deadline:
        flow.settle()
        total = flow.client.get("/api/v1/logs/search", params={"service": service, "limit": 1}).json()["total"]
        if total >= count:
            return int(total)
        assert rsyslog.process.poll() is None, rsyslog.log.read_text(errors="replace")
        time.sleep(0.2)
    errors = rsyslog.errors.read_text(errors="replace") if rsyslog.errors.exists() else "(no error file)"
    raise AssertionError(f"{total} of {count} events arrived; rsyslog errors: {errors[:2000]}\n"
                         f"{rsyslog.log.read_text(errors='replace')[-2000:]}")


def test_rsyslog_omelasticsearch_ships_loghub_lines(logflow: LogFlow, rsyslog: Rsyslog) -> None:
    rows = [r for r in loghub_rows(SYSTEM) if r["Level"] in SEVERITIES][:600]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    payload, expected = frames(rows, base)
    with socket.create_connection(("127.0.0.1", rsyslog.tcp_port)) as sock:
        sock.sendall(payload)

    assert wait_for_count(logflow, APP, len(expected), rsyslog) == len(expected)
    stored = {str(log["id"]): log for log in search_all(logflow.client, APP)}
    assert len(stored) == len(expected)
    for want in expected:
        got = stored[want["id"]]  # the bulk _id (rsyslog's dynbulkid from the MSGID) is the event id
        assert got["message"] == want["message"]
        assert got["level"] == want["level"]
        assert got["service"] == APP and got["host"] == HOST
        assert got["timestamp"] == want["timestamp"]
        assert got["metadata"] == {"syslog_facility": "user", "_index": "rsyslog-test"}
    levels = {level: sum(1 for e in expected if e["level"] == level) for level in ("INFO", "WARN", "ERROR")}
    for level, count in levels.items():
        found = logflow.client.get("/api/v1/logs/search", params={"service": APP, "level": level, "limit": 1})
        assert found.json()["total"] == count
    assert all(levels.values()), levels  # the sample exercises every severity mapping
    assert not rsyslog.errors.exists() or not rsyslog.errors.read_text().strip()


def test_rsyslog_resend_is_idempotent(logflow: LogFlow, rsyslog: Rsyslog) -> None:
    """rsyslog retries a batch after a failure; the same bulk _id must never store an event twice."""
    rows = [r for r in loghub_rows(SYSTEM) if r["Level"] in SEVERITIES][:100]
    payload, expected = frames(rows, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30))
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", rsyslog.tcp_port)) as sock:
            sock.sendall(payload)
    # Both copies are shipped; wait until a marker sent after them is stored, then count.
    marker_row = {"LineId": "marker", "Level": "INFO", "Content": "rsyslog idempotency marker"}
    marker, _ = frames([marker_row], datetime.now(UTC) - timedelta(minutes=1))
    with socket.create_connection(("127.0.0.1", rsyslog.tcp_port)) as sock:
        sock.sendall(marker)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        logflow.settle()
        if logflow.client.get("/api/v1/logs/zk-marker").status_code == 200:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(rsyslog.log.read_text(errors="replace")[-2000:])
    logflow.settle()
    total = logflow.client.get("/api/v1/logs/search", params={"service": APP, "limit": 1}).json()["total"]
    assert total == len(expected) + 1
