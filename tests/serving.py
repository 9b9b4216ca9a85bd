"""Serve a test's LogFlow app on a real TCP port, for clients that cannot use a TestClient.

rsyslog, the OpenTelemetry SDK, GELF and Loki clients and the file shipper speak real HTTP: they
need a listening socket. ``serve_app`` runs uvicorn in a thread on a free loopback port and yields
its base URL; the app's lifespan (and so any protocol listeners it starts) runs as in production,
with the same HTTP protocol class as ``logflow serve``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from logflow.api.http_protocol import half_close_tolerant_http


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that is free right now for ``kind`` (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_app(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields ``http://host:port``."""
    port = free_port(host=host)
    # The HTTP protocol `logflow serve` uses (it serves GELF clients that half-close after sending).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            http=half_close_tolerant_http())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
