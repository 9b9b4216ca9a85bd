"""Run ``logflow`` as a real process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def child_pids(parent: int, marker: bytes) -> list[int]:
    """Live children of ``parent`` (started from any of its threads) whose command line holds ``marker``.

    A child that has died reads an empty command line, so it drops out even before it is reaped.
    """
    found: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that just ended
            continue
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if marker in cmdline:
                found.append(int(pid))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``logflow serve`` in its own process group (so kill -9 reaches the processor child too)."""

    def __init__(self, data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"serve-{port}-{time.time_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logflow", "serve", "--port", str(port), "--data-dir", str(data_dir),
             *extra],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            # These tests are about durability, not auth: ingest open as `make run`'s demo has it.
            # No syslog/GELF listeners: their fixed default ports would collide between tests.
            env={**os.environ, "LOGFLOW_INGEST_OPEN": "true", "LOGFLOW_SYSLOG_PORT": "0", "LOGFLOW_GELF_PORT": "0",
                 **(env or {})},
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not healthy in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def wait_drained(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = httpx.get(f"{self.url}/api/v1/pipeline/status", timeout=5.0).json()
            if status["queue"]["total_lag"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError("queue not drained")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
