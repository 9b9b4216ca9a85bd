"""``logflow.handler.LogFlowHandler`` against a real LogFlow on a socket (both shapes), and at exit/fork."""

from __future__ import annotations

import contextlib
import datetime
import logging
import logging.config
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from logflow.domain.events import format_timestamp
from logflow.handler import LogFlowHandler
from tests.conftest import SHARED, LogFlow
from tests.integration.test_shipper import PortServer, search_all, wait_for
from tests.serving import free_port, serve_app

ZOOKEEPER = (SHARED / "data" / "loghub" / "Zookeeper" / "Zookeeper_2k.log").read_text().splitlines()


class Collect(logging.Handler):
    """Keeps the records themselves, to compare what LogFlow stored with what logging produced."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def make_logger(handler: logging.Handler, collect: Collect) -> logging.Logger:
    logger = logging.getLogger(f"test.handler.{uuid.uuid4().hex[:8]}")
    logger.setLevel(1)
    logger.propagate = False
    logger.addHandler(handler)
    logger.addHandler(collect)
    return logger


def test_records_at_every_level_with_extra_and_exceptions_arrive_exactly(logflow: LogFlow) -> None:
    with serve_app(logflow.client.app) as url:
        handler = LogFlowHandler(url, api_key=logflow.ingest_key, service="zk", batch_size=4, flush_interval=0.1)
        collect = Collect()
        logger = make_logger(handler, collect)
        lines = ZOOKEEPER[:6]
        logger.log(5, lines[0])
        logger.debug(lines[1])
        logger.info("%s", lines[2], extra={"request_id": "req-7", "order": 42, "ratio": 0.5,
                                           "nested": {"a": [1, 2]}, "when": datetime.date(2026, 1, 2)})
        logger.warning(lines[3])
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            logger.exception(lines[4])
        assert handler.drain(30)
        # dictConfig closes every handler yet leaves it on its logger: the next record reopens it.
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logger.critical(lines[5], stack_info=True)
        assert handler.drain(30)
        handler.close()
    assert (handler.sent, handler.rejected, handler.dropped) == (6, 0, 0)
    logs = {log["message"]: log for log in search_all(logflow, "zk")}
    assert sorted(logs) == sorted(lines)
    for record in collect.records:
        log = logs[record.getMessage()]
        assert log["timestamp"] == format_timestamp(round(record.created * 1_000_000))
        meta = log["metadata"]
        assert (meta["logger"], meta["module"], meta["function"], meta["line"]) == \
            (record.name, "test_shipper_handler", record.funcName, record.lineno)
        assert (meta["thread"], meta["process"], log["service"]) == (record.threadName, record.process, "zk")
    assert [logs[line]["level"] for line in lines] == ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"]
    info = logs[lines[2]]
    assert info["request_id"] == "req-7"
    assert {k: info["metadata"][k] for k in ("order", "ratio", "nested", "when")} == \
        {"order": 42, "ratio": 0.5, "nested": {"a": [1, 2]}, "when": "datetime.date(2026, 1, 2)"}
    error = logs[lines[4]]["metadata"]
    assert error["exception_type"] == "ZeroDivisionError"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert error["exception"].endswith("ZeroDivisionError: division by zero")
    assert "test_records_at_every_level" in logs[lines[5]]["metadata"]["stack"]


def test_logflow_down_emit_stays_bounded_and_later_records_arrive(logflow: LogFlow) -> None:
    server = PortServer(logflow.client.app)  # not started yet: LogFlow is down
    handler = LogFlowHandler(server.url, api_key=logflow.ingest_key, service="down", batch_size=10,
                             flush_interval=0.05, max_queue=50, timeout=2)
    handler.backoff_max = 0.2
    collect = Collect()
    logger = make_logger(handler, collect)
    emitted = [f"{line} #{i}" for i, line in enumerate(ZOOKEEPER[:500])]
    for message in emitted:  # returns although nothing can be sent: emit never waits for the network
        logger.error(message)
    queued, inflight = len(handler._queue), handler._inflight
    assert queued <= 50 and inflight <= 10
    assert handler.dropped == 500 - queued - inflight and handler.dropped >= 440
    assert handler.sent == 0 and not handler.drain(0.2)
    assert handler.last_error is not None and "URLError" in handler.last_error
    server.start()
    try:
        assert handler.drain(30)  # what was kept while LogFlow was down is delivered now
        assert handler.sent == 500 - handler.dropped
        later = [f"{line} (after recovery)" for line in ZOOKEEPER[500:520]]
        for message in later:
            logger.warning(message)
        assert handler.drain(30)
        handler.close()
    finally:
        server.stop()
    stored = [log["message"] for log in search_all(logflow, "down")]
    assert len(stored) == handler.sent == 500 - handler.dropped + len(later)
    assert set(emitted[-50:]) <= set(stored) and set(later) <= set(stored)  # the oldest are the ones dropped
    assert set(stored) <= set(emitted) | set(later)


SCRIPT = """
import logging, os, sys
from logflow.handler import LogFlowHandler
handler = LogFlowHandler(sys.argv[1], api_key=sys.argv[2], service=sys.argv[3], timeout=2, flush_interval=0.05)
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
"""


def run_script(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(SCRIPT) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_interpreter_exit_does_not_hang_while_logflow_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = run_script("""
        for i in range(2000):
            logging.info("record %d", i)
        print("application finished")
    """, url, "key", "exit-test")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "application finished\n"
    assert "logflow.handler: LogFlow unreachable" in done.stderr  # told once, not once per record
    assert done.stderr.count("logflow.handler:") == 1


def test_after_fork_the_child_sends_its_own_records_only(logflow: LogFlow) -> None:
    lines: list[Any] = ZOOKEEPER[600:603]
    with serve_app(logflow.client.app) as url:
        done = run_script(f"""
            logging.info({lines[0]!r})  # queued in the parent before the fork
            pid = os.fork()
            if pid == 0:
                logging.info({lines[1]!r})
                handler.flush(30)
                os._exit(0 if handler.sent == 1 else 3)
            _, status = os.waitpid(pid, 0)
            logging.info({lines[2]!r})
            handler.flush(30)
            print(os.waitstatus_to_exitcode(status), handler.sent, handler.dropped)
        """, url, logflow.ingest_key, "forked")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["0", "2", "0"]
    wait_for(lambda: len(search_all(logflow, "forked")) == 3, "the three records")
    assert sorted(log["message"] for log in search_all(logflow, "forked")) == sorted(lines)


def test_rejections_are_final_and_counted(logflow: LogFlow) -> None:
    with serve_app(logflow.client.app) as url:
        handler = LogFlowHandler(url, api_key=logflow.ingest_key, service="rej", batch_size=50, flush_interval=0.05)
        logger = make_logger(handler, Collect())
        for line in ZOOKEEPER[700:710]:
            logger.info(line)
        logger.info(ZOOKEEPER[710], extra={"level": "loud"})  # overrides the level: LogFlow refuses it
        assert handler.drain(30)
        handler.close()
        assert (handler.sent, handler.rejected, handler.dropped) == (10, 1, 0)
        assert handler.last_error is not None and "unknown level" in handler.last_error

        unauthorised = LogFlowHandler(url, api_key="not-a-key", service="rej", flush_interval=0.05)
        logger = make_logger(unauthorised, Collect())
        for line in ZOOKEEPER[720:725]:
            logger.info(line)
        assert unauthorised.drain(30)  # answered for good: nothing left to retry
        unauthorised.close()
        assert (unauthorised.sent, unauthorised.rejected) == (0, 5)
        assert unauthorised.last_error is not None and unauthorised.last_error.startswith("HTTP 401")
    assert sorted(log["message"] for log in search_all(logflow, "rej")) == sorted(ZOOKEEPER[700:710])


class _SlowFirstAnswer(BaseHTTPRequestHandler):
    """Forwards every request to LogFlow; holds the first answer back past the client's timeout,
    as a LogFlow that took the batch and answered too late does."""

    target = ""
    requests = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = httpx.post(self.target + self.path, content=body, headers=headers, timeout=30)
        type(self).requests += 1
        if type(self).requests == 1:
            time.sleep(2.0)
        with contextlib.suppress(OSError):  # the client gave up on the first one
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_batch_sent_again_after_a_timeout_is_stored_once(logflow: LogFlow) -> None:
    lines = ZOOKEEPER[700:720]
    with serve_app(logflow.client.app) as url:
        hop_class = type("Hop", (_SlowFirstAnswer,), {"target": url, "requests": 0})
        hop = ThreadingHTTPServer(("127.0.0.1", 0), hop_class)
        threading.Thread(target=hop.serve_forever, daemon=True).start()
        try:
            handler = LogFlowHandler(f"http://127.0.0.1:{hop.server_address[1]}", api_key=logflow.ingest_key,
                                     service="resent", batch_size=100, flush_interval=0.05, timeout=0.5)
            handler.backoff_max = 0.2
            logger = make_logger(handler, Collect())
            for line in lines:
                logger.warning(line)
            assert handler.drain(30)
            handler.close()
        finally:
            hop.shutdown()
            hop.server_close()
    assert hop_class.requests >= 2  # LogFlow received the batch twice
    assert handler.sent == len(lines) and handler.dropped == 0
    assert sorted(log["message"] for log in search_all(logflow, "resent")) == sorted(lines)
