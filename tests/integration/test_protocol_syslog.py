"""The syslog listeners (UDP, TCP, TLS) under uvicorn with real clients, on both shapes.

Python's own ``logging.handlers.SysLogHandler`` (UDP and TCP) and raw/TLS sockets send real
Loghub lines; the events are read back through the search API and compared exactly, and the
listener counters in ``/api/v1/pipeline/status`` must add up.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from logflow.app import create_app
from logflow.ingest.batching import ListenerCounters
from logflow.ingest.listeners import ListenerConfig as Config
from logflow.ingest.listeners import ListenerError, Listeners
from logflow.ingest.processor import Processor
from tests.conftest import LogFlow, loghub_rows, start_logflow, stop_logflow
from tests.integration.alert_receivers import make_cert
from tests.serving import free_port, serve_app


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP (syslog listens on both)."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no port free for both TCP and UDP")


@contextmanager
def listening(flow: LogFlow, **config: Any) -> Iterator[Listeners]:
    """The flow's runtime served by uvicorn with the given listeners (free ports), like ``logflow serve``."""
    listeners = Listeners(flow.runtime.pipeline, Config(**config))
    with serve_app(create_app(flow.runtime, listeners=listeners)) as base_url:
        listeners.base_url = base_url  # type: ignore[attr-defined]
        yield listeners


def wait_handled(listeners: Listeners, name: str, received: int, timeout: float = 30) -> ListenerCounters:
    """Poll until ``received`` messages arrived on ``name`` and every one has its outcome."""
    deadline = time.monotonic() + timeout
    counters = listeners.counters[name]
    while time.monotonic() < deadline:
        done = counters.accepted + counters.rejected + counters.malformed + counters.dropped
        if counters.received >= received and done == counters.received:
            return counters
        time.sleep(0.02)
    raise AssertionError(f"{name}: {counters} after {timeout}s, expected {received} received")


def search(flow: LogFlow, **params: Any) -> dict[str, Any]:
    flow.settle()
    response = flow.client.get("/api/v1/logs/search", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def logger_with(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test.syslog.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger


LEVELS = [(logging.INFO, "INFO"), (logging.WARNING, "WARN"), (logging.ERROR, "ERROR"), (logging.DEBUG, "DEBUG"),
          (logging.CRITICAL, "CRITICAL")]


def test_sysloghandler_udp_with_loghub_openssh(logflow: LogFlow) -> None:
    rows = loghub_rows("OpenSSH")[:300]
    port = free_udp_tcp_port()
    with listening(logflow, syslog_port=port) as listeners:
        handler = logging.handlers.SysLogHandler(("127.0.0.1", port), facility=logging.handlers.SysLogHandler.LOG_AUTH)
        logger = logger_with(handler)
        try:
            for start in range(0, len(rows), 50):  # UDP has no flow control: let the listener keep up
                for i, row in enumerate(rows[start:start + 50], start=start):
                    logger.log(LEVELS[i % 4][0], "sshd[%s]: %s", row["Pid"], row["Content"])
                wait_handled(listeners, "syslog_udp", start + len(rows[start:start + 50]))
        finally:
            handler.close()
        counters = wait_handled(listeners, "syslog_udp", len(rows))
        assert (counters.accepted, counters.rejected, counters.dropped, counters.unparsed) == (300, 0, 0, 0)
        status = logflow.client.get("/api/v1/pipeline/status").json()["listeners"]
        assert status == {}  # the fixture's own app runs no listeners
        served = listeners.stats()
        assert served["syslog_udp"]["accepted"] == 300 and served["syslog_tcp"]["received"] == 0

    logs = search(logflow, service="sshd")["logs"]
    assert len(logs) == 300
    got = Counter((log["message"], log["level"], log["metadata"]["procid"]) for log in logs)
    want = Counter((row["Content"], LEVELS[i % 4][1], row["Pid"]) for i, row in enumerate(rows))
    assert got == want
    assert {(log["host"], log["metadata"]["facility"]) for log in logs} == {("127.0.0.1", "auth")}
    assert all("flags" not in log for log in logs)


def test_sysloghandler_tcp_with_loghub_linux_and_a_traceback(logflow: LogFlow) -> None:
    rows = [r for r in loghub_rows("Linux") if " " not in r["Component"] and r["PID"]][:300]
    port = free_udp_tcp_port()
    with listening(logflow, syslog_port=port) as listeners:
        handler = logging.handlers.SysLogHandler(("127.0.0.1", port), socktype=socket.SOCK_STREAM,
                                                 facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
        logger = logger_with(handler)
        try:
            for i, row in enumerate(rows):
                logger.log(LEVELS[i % 5][0], "%s[%s]: %s", row["Component"], row["PID"], row["Content"])
            try:
                raise ValueError("disk quota exceeded")
            except ValueError:
                logger.exception("backup[77]: nightly backup failed")
        finally:
            handler.close()
        counters = wait_handled(listeners, "syslog_tcp", len(rows) + 1)
        assert (counters.accepted, counters.rejected, counters.unparsed) == (len(rows) + 1, 0, 0)

    for component, count in Counter(r["Component"] for r in rows).items():
        logs = search(logflow, service=component)["logs"]
        want = Counter((r["Content"], LEVELS[i % 5][1], r["PID"]) for i, r in enumerate(rows)
                       if r["Component"] == component)
        assert Counter((log["message"], log["level"], log["metadata"]["procid"]) for log in logs) == want
        assert len(logs) == count
    [failure] = search(logflow, service="backup")["logs"]
    assert failure["level"] == "ERROR" and failure["metadata"] == {"procid": "77", "facility": "authpriv"}
    assert failure["message"].startswith("nightly backup failed\nTraceback (most recent call last):\n")
    assert failure["message"].endswith("ValueError: disk quota exceeded")  # the whole multi-line record, one event


SD = '[exampleSDID@32473 iut="3" eventSource="App\\]lication" eventID="1011"]'


def octet(message: str) -> bytes:
    data = message.encode()
    return b"%d %s" % (len(data), data)


def test_raw_tcp_mixed_framing_unparsed_lines_keep_the_connection_open(logflow: LogFlow) -> None:
    port = free_udp_tcp_port()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    counted = octet(f"<165>1 {now} mymachine.example.com evntslog 4711 ID47 {SD} \ufeffAn application event")
    with listening(logflow, syslog_port=port) as listeners, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"this line is not syslog\n" + counted[:20])
        conn.sendall(counted[20:] + b"<13>plain: newline framed after a counted frame\n")
        counters = wait_handled(listeners, "syslog_tcp", 3)
        assert (counters.accepted, counters.unparsed, counters.connections) == (3, 1, 1)
        [raw] = search(logflow, query="not syslog")["logs"]
        assert raw["message"] == "this line is not syslog" and raw["flags"] == ["syslog_unparsed"]
        assert (raw["host"], raw["service"], raw["level"]) == ("127.0.0.1", "unknown", "INFO")
        [event] = search(logflow, field="sd.exampleSDID@32473.eventID:1011")["logs"]
        assert event["message"] == "An application event"
        assert (event["service"], event["host"], event["level"]) == ("evntslog", "mymachine.example.com", "INFO")
        assert event["timestamp"] == now.replace("Z", ".000000Z")
        assert event["metadata"] == {
            "procid": "4711", "msgid": "ID47", "facility": "local4", "sd.exampleSDID@32473.iut": "3",
            "sd.exampleSDID@32473.eventSource": "App]lication", "sd.exampleSDID@32473.eventID": "1011"}
        # The same connection still takes frames after the unparsed one.
        conn.sendall(octet("<11>1 - - later - - - still connected"))
        wait_handled(listeners, "syslog_tcp", 4)
        [later] = search(logflow, service="later")["logs"]
        assert (later["message"], later["level"]) == ("still connected", "ERROR")
        assert listeners.counters["syslog_tcp"].connections == 1


def test_tls_listener_with_a_self_signed_certificate(logflow: LogFlow, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    rows = loghub_rows("Zookeeper")[:120]
    port = free_port()
    with listening(logflow, syslog_tls_port=port, syslog_tls_cert=str(cert), syslog_tls_key=str(key)) as listeners:
        context = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as conn:
            payload = b"".join(octet(f"<134>1 - zk-1 zookeeper - ZK{row['LineId']} - {row['Content']}")
                               for row in rows)
            conn.sendall(payload)
            counters = wait_handled(listeners, "syslog_tls", len(rows))
        assert (counters.accepted, counters.rejected) == (len(rows), 0)
        assert set(listeners.stats()) == {"syslog_tls"}
    logs = search(logflow, service="zookeeper")["logs"]
    assert Counter((log["message"], log["metadata"]["msgid"]) for log in logs) == Counter(
        (row["Content"], f"ZK{row['LineId']}") for row in rows)
    assert {(log["host"], log["level"], log["metadata"]["facility"]) for log in logs} == {("zk-1", "INFO", "local0")}


def test_status_lists_the_listeners_of_the_serving_app(logflow: LogFlow) -> None:
    import httpx

    port, gelf_port = free_udp_tcp_port(), free_port(socket.SOCK_DGRAM)
    with listening(logflow, syslog_port=port, gelf_port=gelf_port) as listeners:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"<14>app: one", ("127.0.0.1", port))
            udp.sendto(b"no pri at all", ("127.0.0.1", port))
        wait_handled(listeners, "syslog_udp", 2)
        body = httpx.get(f"{listeners.base_url}/api/v1/pipeline/status").json()  # type: ignore[attr-defined]
    assert set(body["listeners"]) == {"syslog_udp", "syslog_tcp", "gelf_udp"}
    udp_status = body["listeners"]["syslog_udp"]
    assert udp_status["addresses"] == [f"127.0.0.1:{port}"]
    assert (udp_status["received"], udp_status["accepted"], udp_status["unparsed"]) == (2, 2, 1)
    assert body["listeners"]["gelf_udp"]["addresses"] == [f"127.0.0.1:{gelf_port}"]


def test_a_port_in_use_stops_start_up_naming_the_port_and_setting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {**os.environ, "LOGFLOW_DATA_DIR": str(tmp_path / "data")}
        result = subprocess.run(
            [sys.executable, "-m", "logflow", "api", "--port", str(free_port()), "--syslog-port", str(busy),
             "--gelf-port", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{busy}" in result.stderr and "LOGFLOW_SYSLOG_PORT (or --syslog-port)" in result.stderr
    with pytest.raises(ListenerError, match="LOGFLOW_SYSLOG_TLS_CERT"):
        Listeners(None, Config(syslog_tls_port=free_port(), syslog_tls_cert=str(tmp_path / "missing.pem"),  # type: ignore[arg-type]
                               syslog_tls_key=str(tmp_path / "missing.key"))).bind()


def test_tcp_backpressure_waits_for_the_queue_and_udp_counts_drops(make_settings: Any) -> None:
    """Embedded queue with a 1 MiB backlog and no processor yet: TCP senders wait, nothing is lost."""
    flow = start_logflow(make_settings(queue_max_backlog_bytes=1024 * 1024), processors=0)
    total = 6000  # ~2.8 MiB of events: well past the backlog limit
    port = free_udp_tcp_port()
    try:
        with listening(flow, syslog_port=port) as listeners:
            def send() -> None:
                with socket.create_connection(("127.0.0.1", port)) as conn:
                    conn.sendall(b"".join(f"<14>bp[{i}]: {'x' * 400}\n".encode() for i in range(total)))

            sender = threading.Thread(target=send)
            sender.start()
            deadline = time.monotonic() + 60
            while listeners.counters["syslog_tcp"].retries == 0:  # the queue refused: the listener waits
                assert time.monotonic() < deadline, listeners.counters["syslog_tcp"]
                time.sleep(0.05)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(b"<14>udp: while the queue is full", ("127.0.0.1", port))
            udp_counters = wait_handled(listeners, "syslog_udp", 1)
            assert (udp_counters.dropped, udp_counters.accepted) == (1, 0)
            processor = Processor(flow.runtime.queue, flow.runtime.store, group=flow.runtime.settings.processor_group,
                                  batch_size=2000)
            thread = threading.Thread(target=processor.run, args=(flow.stop,), daemon=True)
            thread.start()
            flow.threads.append(thread)
            sender.join(timeout=120)
            counters = wait_handled(listeners, "syslog_tcp", total, timeout=120)
            assert (counters.accepted, counters.dropped, counters.rejected) == (total, 0, 0)
        assert search(flow, service="bp", limit=1)["total"] == total
        assert search(flow, service="udp", limit=1)["total"] == 0
    finally:
        stop_logflow(flow)
