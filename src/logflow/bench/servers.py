"""Start LogFlow processes for a benchmark, and read their peak memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


@dataclass
class Deployment:
    """The LogFlow processes under test, each in its own process group."""

    url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # What a distributed run named its topics, consumer group and index prefix after (None: embedded).
    run_id: str | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.logs.append(log)
        with log.open("wb") as fh:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "logflow", *args], stdout=fh,
                                               stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"a LogFlow process exited; see {log}:\n{log.read_text()[-1500:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"LogFlow at {self.url} not healthy after {timeout}s")

    def peak_rss(self) -> dict[str, int]:
        """Peak RSS per process (the processor of ``serve`` is a child of the API process)."""
        out = {}
        for proc in self.procs:
            for pid in process_tree(proc.pid):
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
                except OSError:
                    continue
                if "resource_tracker" in name:
                    continue  # multiprocessing's helper, not LogFlow
                if "spawn_main" in name:
                    role = "processor"
                elif "logflow.ingest.prepare_worker" in name:
                    role = "prepare helper"
                else:
                    role = name.split(" -m logflow ")[-1].split()[0]
                out[f"{pid} {role}"] = peak_rss_bytes(pid)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
