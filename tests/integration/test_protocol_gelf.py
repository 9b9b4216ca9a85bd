"""GELF over UDP (plain, compressed, chunked) and HTTP with the real clients graypy and pygelf.

Each test runs on both shapes; events are read back through the search API and compared exactly.
Malformed input (bad JSON, bad compression, incomplete chunks) is counted and leaves its valid
siblings stored.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import time
import uuid
import zlib
from collections import Counter

import graypy
import orjson
import pytest
from graypy.handler import BaseGELFChunker
from pygelf import GelfHttpHandler, GelfUdpHandler

from tests.conftest import LogFlow, loghub_rows
from tests.integration.test_protocol_syslog import listening, search, wait_handled
from tests.serving import free_port

LEVELS = [(logging.INFO, "INFO"), (logging.WARNING, "WARN"), (logging.ERROR, "ERROR"), (logging.DEBUG, "DEBUG"),
          (logging.CRITICAL, "CRITICAL")]


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers = [handler]
    return logger


def test_graypy_udp_plain_compressed_and_chunked(logflow: LogFlow) -> None:
    rows = loghub_rows("Hadoop")[:200]
    port = free_port(socket.SOCK_DGRAM)
    big = [os.urandom(15_000).hex() for _ in range(3)]  # ~16 KB compressed: a dozen 1420-byte chunks each
    with listening(logflow, gelf_port=port) as listeners:
        compressed = graypy.GELFUDPHandler("127.0.0.1", port, debugging_fields=False)
        plain = graypy.GELFUDPHandler("127.0.0.1", port, compress=False, debugging_fields=False)
        logger = logger_with(compressed, "hadoop.mapreduce")
        try:
            for start in range(0, len(rows), 50):  # UDP has no flow control: let the listener keep up
                for i, row in enumerate(rows[start:start + 50], start=start):
                    logger.log(LEVELS[i % 5][0], row["Content"], extra={"request_id": f"req-{i}", "line_id": i})
                wait_handled(listeners, "gelf_udp", start + len(rows[start:start + 50]))
            for text in big:
                logger.warning("big %s", text)
            logger.handlers = [plain]
            logger.error("big uncompressed %s", big[0])  # ~30 KB of JSON in 22 chunks
        finally:
            compressed.close()
            plain.close()
        counters = wait_handled(listeners, "gelf_udp", len(rows) + 4)
        assert (counters.accepted, counters.malformed, counters.dropped, counters.incomplete) == (204, 0, 0, 0)

    logs = search(logflow, service="hadoop.mapreduce")["logs"]
    assert len(logs) == 204
    small = [log for log in logs if not log["message"].startswith("big ")]
    got = Counter((log["message"], log["level"], log["request_id"], log["metadata"]["line_id"]) for log in small)
    want = Counter((row["Content"], LEVELS[i % 5][1], f"req-{i}", i) for i, row in enumerate(rows))
    assert got == want
    assert {log["host"] for log in logs} == {socket.gethostname()}
    messages = {log["message"] for log in logs}
    assert {f"big {text}" for text in big} <= messages and f"big uncompressed {big[0]}" in messages


def test_pygelf_udp_chunked_with_static_fields(logflow: LogFlow) -> None:
    rows = loghub_rows("Spark")[:100]
    port = free_port(socket.SOCK_DGRAM)
    with listening(logflow, gelf_port=port) as listeners:
        handler = GelfUdpHandler("127.0.0.1", port, chunk_size=600, _app_name="spark-etl", _trace_id="4bf92f35",
                                 _team="data")
        logger = logger_with(handler, f"pygelf.{uuid.uuid4().hex}")
        try:
            for start in range(0, len(rows), 50):
                for i, row in enumerate(rows[start:start + 50], start=start):
                    logger.log(LEVELS[i % 4][0], "%s %s", row["Content"], "y" * (3000 if i % 10 == 0 else 0))
                wait_handled(listeners, "gelf_udp", start + len(rows[start:start + 50]))
        finally:
            handler.close()
    logs = search(logflow, service="spark-etl")["logs"]
    assert Counter((log["message"], log["level"]) for log in logs) == Counter(
        (f"{row['Content']} {'y' * (3000 if i % 10 == 0 else 0)}", LEVELS[i % 4][1]) for i, row in enumerate(rows))
    assert {(log["trace_id"], log["metadata"]["team"]) for log in logs} == {("4bf92f35", "data")}


# Both clients leave each request's socket to the garbage collector (they never read the answer).
@pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_gelf_http_with_graypy_and_pygelf(logflow: LogFlow) -> None:
    rows = loghub_rows("Apache")[:40]
    with listening(logflow) as listeners:
        host, port = listeners.base_url.removeprefix("http://").split(":")  # type: ignore[attr-defined]
        clients = [graypy.GELFHTTPHandler(host, int(port), debugging_fields=False),
                   GelfHttpHandler(host, int(port), _service="apache-pygelf")]
        for client in clients:
            client.headers["X-API-Key"] = logflow.ingest_key  # both keep their HTTP headers in a dict
        graypy_logger = logger_with(clients[0], "apache-graypy")
        pygelf_logger = logger_with(clients[1], f"pygelf.{uuid.uuid4().hex}")
        before = logflow.runtime.pipeline.counters.accepted
        for i, row in enumerate(rows):
            (graypy_logger if i % 2 else pygelf_logger).error(row["Content"])
        # Neither client waits for the answer: wait until the server took every request.
        deadline = time.monotonic() + 30
        while logflow.runtime.pipeline.counters.accepted - before < len(rows):
            assert time.monotonic() < deadline, logflow.runtime.pipeline.counters
            time.sleep(0.02)
    for service, parity in (("apache-graypy", 1), ("apache-pygelf", 0)):
        logs = search(logflow, service=service)["logs"]
        assert Counter(log["message"] for log in logs) == Counter(
            row["Content"] for i, row in enumerate(rows) if i % 2 == parity)
        assert {log["level"] for log in logs} == {"ERROR"}


def test_gelf_http_answers(logflow: LogFlow) -> None:
    post = logflow.client.post
    headers = {"X-API-Key": logflow.ingest_key}
    doc = {"version": "1.1", "host": "web-3", "short_message": "GET /index 200", "level": 6, "_service": "nginx",
           "full_message": "GET /index 200\nuser agent: curl"}
    ok = post("/gelf", content=gzip.compress(orjson.dumps(doc)), headers={**headers, "Content-Encoding": "gzip"})
    assert (ok.status_code, ok.content) == (202, b"")
    assert post("/gelf", content=orjson.dumps(doc)).status_code == 401
    bad_json = post("/gelf", content=b'{"short_message": ', headers=headers)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["detail"]
    no_message = post("/gelf", json={"host": "h"}, headers=headers)
    assert no_message.status_code == 400 and "short_message" in no_message.json()["detail"]
    broken = post("/gelf", content=b"\x1f\x8b" + os.urandom(30), headers=headers)
    assert broken.status_code == 400 and "gzip" in broken.json()["detail"]
    assert post("/gelf", content=orjson.dumps(doc), headers={**headers, "Content-Encoding": "br"}).status_code == 415
    bulk = (b'{"short_message": "bulk one", "_service": "nginx"}\n{oops\n'
            b'{"short_message": "bulk two", "_service": "nginx"}')
    mixed = post("/gelf", content=bulk, headers=headers)
    assert mixed.status_code == 202
    assert mixed.json()["accepted"] == 2 and [e["index"] for e in mixed.json()["errors"]] == [1]
    logs = {log["message"]: log for log in search(logflow, service="nginx")["logs"]}
    assert set(logs) == {"GET /index 200", "bulk one", "bulk two"}
    assert logs["GET /index 200"]["host"] == "web-3"
    assert logs["GET /index 200"]["metadata"] == {"full_message": "GET /index 200\nuser agent: curl"}


def test_malformed_udp_is_counted_and_siblings_are_stored(logflow: LogFlow) -> None:
    port = free_port(socket.SOCK_DGRAM)
    good = [orjson.dumps({"short_message": f"good {i}", "host": "h", "_service": "siblings"}) for i in range(4)]
    chunks = list(BaseGELFChunker(chunk_size=100).chunk_message(zlib.compress(orjson.dumps(
        {"short_message": os.urandom(300).hex(), "_service": "siblings"}))))
    assert len(chunks) >= 3
    with listening(logflow, gelf_port=port, gelf_chunk_timeout_s=0.5) as listeners, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        target = ("127.0.0.1", port)
        udp.sendto(good[0], target)
        udp.sendto(b'{"short_message": "cut', target)  # bad JSON
        udp.sendto(zlib.compress(good[1]), target)
        udp.sendto(b"\x78\x9c" + os.urandom(50), target)  # a zlib header, then garbage
        udp.sendto(gzip.compress(good[2]), target)
        for chunk in chunks[:-1]:  # the last chunk never comes
            udp.sendto(chunk, target)
        udp.sendto(b"\x1e\x0f" + os.urandom(8) + bytes([5, 2]) + b"x", target)  # chunk 5 of 2
        udp.sendto(good[3], target)
        counters = wait_handled(listeners, "gelf_udp", 7)
        assert (counters.accepted, counters.malformed, counters.dropped) == (4, 3, 0)
        deadline = time.monotonic() + 10
        while listeners.stats()["gelf_udp"]["incomplete"] == 0:  # expiry runs every timeout/2
            assert time.monotonic() < deadline, listeners.stats()
            time.sleep(0.05)
        stats = listeners.stats()["gelf_udp"]
        assert (stats["incomplete"], stats["chunked_pending"], stats["accepted"]) == (1, 0, 4)
    logs = search(logflow, service="siblings")["logs"]
    assert sorted(log["message"] for log in logs) == [f"good {i}" for i in range(4)]
