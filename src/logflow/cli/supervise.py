"""Keep a child process of ``logflow serve`` alive: start it, and start it again if it dies.

The processor of the one-process shape is a child; without a supervisor a crash of it (a bug,
the OOM killer, a kill -9 by an operator) would leave the API acknowledging events that nobody
indexes until someone restarts LogFlow. Nothing acknowledged is lost either way (the queue keeps
it); this makes it searchable again without a human.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("logflow.cli")

# A child that lived this long counts as healthy: its next crash restarts it after the first delay.
_STABLE_S = 60.0


class ChildSupervisor:
    """Runs ``target(*args)`` in a spawned child and restarts it, with exponential backoff, when it dies."""

    def __init__(self, name: str, target: Callable[..., Any], args: tuple[Any, ...], *,
                 first_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:
        self.name = name
        self._target, self._args = target, args
        self._first_delay_s, self._max_delay_s = first_delay_s, max_delay_s
        self._ctx = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._child: BaseProcess | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"supervise-{self.name}")
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            child = self._ctx.Process(target=self._target, args=self._args, name=f"logflow-{self.name}", daemon=True)
            child.start()
            self._child = child

    def _watch(self) -> None:
        delay = self._first_delay_s
        started = time.monotonic()
        while not self._stopping.is_set():
            child = self._child
            assert child is not None  # start() spawned it before starting this thread
            child.join(timeout=0.5)
            if child.exitcode is None or self._stopping.is_set():
                continue
            lived = time.monotonic() - started
            if lived >= _STABLE_S:
                delay = self._first_delay_s
            log.error("%s %s exited with code %s after %.0fs; starting another in %.0fs",
                      self.name, child.pid, child.exitcode, lived, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._max_delay_s)
            started = time.monotonic()
            self._spawn()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop supervising, then SIGTERM the child and wait for it (it finishes its batch)."""
        with self._lock:
            self._stopping.set()
            child = self._child
        if child is not None and child.is_alive():
            child.terminate()
            child.join(timeout=timeout_s)
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
