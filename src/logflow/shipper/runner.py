"""The shipping loop: read -> join -> batch -> write-ahead -> send (retrying) -> checkpoint.

One thread does everything in order, so a batch is acknowledged (or finally rejected) before the
next one is built; while LogFlow is unreachable nothing more is read and the files themselves are
the buffer (the registry holds the acknowledged offsets, like Filebeat's). Files keep being
discovered and held open during the wait, so a file rotated away and deleted meanwhile can still
be read while the shipper runs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logflow.shipper.checkpoint import FileState, Pending, StateStore
from logflow.shipper.multiline import DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, Joiner
from logflow.shipper.parse import ParseOptions, to_item
from logflow.shipper.sender import ItemResult, RetryLater, Sender, TooLarge, Unsendable
from logflow.shipper.spool import Spool
from logflow.shipper.tailer import DEFAULT_EXCLUDES, ShipEvent, Tailer, Tracked, compile_start

log = logging.getLogger("logflow.shipper")
_RATE_WINDOW_S = 5.0


@dataclass(slots=True)
class ShipConfig:
    """Everything ``logflow ship`` can be told (see docs/shipper.md)."""

    patterns: list[str]
    service: str
    target: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    host: str | None = field(default_factory=socket.gethostname)
    multiline_start: str | None = None
    multiline_timeout_s: float = 1.0
    max_lines: int = DEFAULT_MAX_LINES
    max_event_bytes: int = DEFAULT_MAX_BYTES
    json_lines: bool = True
    detect_levels: bool = True
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    batch_size: int = 500
    batch_bytes: int = 4 * 1024 * 1024
    flush_interval_s: float = 1.0
    poll_interval_s: float = 0.2
    scan_interval_s: float = 1.0
    rotated_grace_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    give_up_after_s: float | None = None  # None: retry for ever (tailing); --once sets a limit
    timeout_s: float = 30.0
    spool_max_bytes: int = 256 * 1024 * 1024
    once: bool = False


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "logflow-ship"


@dataclass(slots=True)
class ShipStats:
    """Counters for the terminal and for ``--once``'s summary."""

    files: int = 0
    sent: int = 0  # accepted by LogFlow
    rejected: int = 0  # refused for good (4xx per item); checkpointed past
    bytes: int = 0  # source bytes of acknowledged events
    batches: int = 0
    retries: int = 0
    waiting: str | None = None  # why we are retrying right now
    fatal: str | None = None  # why shipping stopped (unsendable)
    completed: bool = False  # --once: every file read to its end and every event answered
    total_bytes: int = 0  # --once: bytes to ship when it started
    started: float = field(default_factory=time.monotonic)
    rejections: list[str] = field(default_factory=list)  # the first few reasons, for the summary
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def note(self) -> None:
        """Record the answered count now (for ``rate``)."""
        now = time.monotonic()
        self._samples.append((now, self.sent + self.rejected))
        while len(self._samples) > 1 and now - self._samples[1][0] > _RATE_WINDOW_S:
            self._samples.popleft()

    @property
    def rate(self) -> float:
        """Events answered per second over the last few seconds (the whole run with ``--once``)."""
        now = time.monotonic()
        if not self._samples:
            return 0.0
        if self.completed:
            return (self.sent + self.rejected) / max(now - self.started, 1e-6)
        # The count as it was one window ago (or at the first sample, early on) -> events per second since.
        start_t, start_n = self._samples[0]
        for t, n in self._samples:
            if t > now - _RATE_WINDOW_S:
                break
            start_t, start_n = max(t, now - _RATE_WINDOW_S), n
        return (self.sent + self.rejected - start_n) / max(now - start_t, 1e-6)


class StateLocked(Exception):
    """Another shipper holds this state directory."""


class Shipper:
    """Runs until ``stop`` is set (tailing) or, with ``once``, until the files are read and shipped."""

    def __init__(self, config: ShipConfig, *, stop: threading.Event | None = None,
                 on_progress: Callable[[ShipStats], None] | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.stats = ShipStats()
        self.store = StateStore(config.state_dir)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(config.state_dir / "state.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StateLocked(f"another logflow ship is using {config.state_dir}; give each one its own "
                              "--state-dir") from None
        self.states: dict[str, FileState] = self.store.load()
        pattern = compile_start(config.multiline_start)
        self.tailer = Tailer(
            config.patterns, self.states, excludes=config.excludes, rotated_grace_s=config.rotated_grace_s,
            make_joiner=lambda: Joiner(pattern, max_lines=config.max_lines, max_bytes=config.max_event_bytes),
            spool=Spool(config.state_dir / "spool", config.spool_max_bytes),
        )
        self.sender = Sender(config.target, config.api_key, timeout_s=config.timeout_s)
        self.options = ParseOptions(service=config.service, host=config.host, json_lines=config.json_lines,
                                    detect_levels=config.detect_levels)
        self.backlog: deque[ShipEvent] = deque()
        self._backlog_since: float | None = None

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> ShipStats:
        try:
            if self.config.once:
                self._run_once()
            else:
                self._run_tail()
        except Unsendable as exc:
            self.stats.fatal = str(exc)
            log.error("stopped: %s", exc)
        finally:
            self.close()
        return self.stats

    def _run_tail(self) -> None:
        self.stats.note()
        last_scan = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now - last_scan >= self.config.scan_interval_s:
                self._scan()
                last_scan = now
            self._take(self.tailer.poll(idle_timeout_s=self.config.multiline_timeout_s))
            shipped = False
            while self.backlog and self._batch_due() and not self.stop.is_set():
                if not self._ship(self._next_batch()):
                    return
                shipped = True
            self.tailer.retire()
            self.stats.files = len(self.tailer.tracked)
            self._progress()
            if not shipped:
                self.stop.wait(self.config.poll_interval_s)

    def _run_once(self) -> None:
        self.tailer.scan()
        self.stats.files = len(self.tailer.tracked)
        self.stats.total_bytes = sum(t.size - t.read_pos for t in self._sizes())
        self.stats.note()
        self._progress()
        while not self.stop.is_set():
            self._take(self.tailer.poll(final=True))
            while self.backlog and (self._full() or self.tailer.backlog_bytes() == 0):
                if not self._ship(self._next_batch()):
                    return
            if not self.backlog and self.tailer.backlog_bytes() == 0:
                self.stats.completed = True
                break
        self.tailer.retire(final=True)

    def _scan(self) -> None:
        self.tailer.scan()
        if self.tailer.needs_save:  # a spool copy must be in the registry before anything else happens
            self.tailer.needs_save = False
            self.store.save(self.states)

    def _sizes(self) -> list[Tracked]:
        for tracked in self.tailer.tracked.values():
            tracked.size = tracked.base + os.fstat(tracked.fd).st_size
        return list(self.tailer.tracked.values())

    # -- batching -----------------------------------------------------------------------------
    def _take(self, events: list[ShipEvent]) -> None:
        if events and not self.backlog:
            self._backlog_since = time.monotonic()
        self.backlog.extend(events)

    def _full(self) -> bool:
        if len(self.backlog) >= self.config.batch_size:
            return True
        return sum(len(e.raw.text) for e in self.backlog) >= self.config.batch_bytes

    def _batch_due(self) -> bool:
        since = self._backlog_since or time.monotonic()
        return self._full() or time.monotonic() - since >= self.config.flush_interval_s

    def _next_batch(self) -> list[ShipEvent]:
        batch: list[ShipEvent] = []
        size = 0
        while self.backlog and len(batch) < self.config.batch_size:
            event = self.backlog[0]
            if batch and size + len(event.raw.text) > self.config.batch_bytes:
                break
            batch.append(self.backlog.popleft())
            size += len(event.raw.text)
        self._backlog_since = time.monotonic() if self.backlog else None
        return batch

    # -- one batch ----------------------------------------------------------------------------
    def _ship(self, batch: list[ShipEvent]) -> bool:
        """Write ahead, send until LogFlow gives a final answer, checkpoint. False when stopped first."""
        now_us = time.time_ns() // 1000
        segments: dict[str, Pending] = {}
        ordinals: dict[str, int] = {}
        items: list[dict[str, Any]] = []
        for event in batch:
            ts = event.fixed_ts
            if ts is None:
                n = ordinals.get(event.key, 0)
                ordinals[event.key] = n + 1
                ts = now_us + n
                seg = segments.setdefault(event.key, Pending(start=event.raw.start, end=event.raw.end, ts_us=now_us))
                seg.end = event.raw.end
                if event.raw.idle_cut:
                    seg.cuts.append(event.raw.end)
            items.append(to_item(event, ts, self.options))
        if segments:
            # Write-ahead: after a crash the same bytes become the same events with the same ids and
            # timestamps, so a batch LogFlow already stored is recognised as a duplicate.
            for key, seg in segments.items():
                state = self.states.get(key)
                if state is not None:
                    state.pending = [p for p in state.pending if p.end > state.offset] + [seg]
            self.store.save(self.states)
        results = self._send_all(items)
        if results is None:
            return False
        self._acknowledge(batch, items, results)
        return True

    def _send_all(self, items: list[dict[str, Any]]) -> list[ItemResult] | None:
        """Per-item results for ``items``, splitting the request when it is too large; None when stopped."""
        try:
            return self._send_retrying(items)
        except TooLarge as exc:
            if len(items) == 1:
                return [ItemResult(accepted=False, code=413, error=str(exc))]
            half = len(items) // 2
            first = self._send_all(items[:half])
            if first is None:
                return None
            second = self._send_all(items[half:])
            return None if second is None else first + second

    def _send_retrying(self, items: list[dict[str, Any]]) -> list[ItemResult] | None:
        delay = self.config.backoff_initial_s
        failing_since: float | None = None
        while not self.stop.is_set():
            try:
                results = self.sender.send(items)
            except RetryLater as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                limit = self.config.give_up_after_s
                if limit is not None and now - failing_since >= limit:
                    raise Unsendable(f"LogFlow did not accept the batch for {limit:.0f}s: {exc.reason}") from None
                wait = exc.retry_after_s if exc.retry_after_s is not None else delay * (0.5 + random.random() / 2)
                wait = min(wait, max(self.config.backoff_max_s, 1.0) * 10)
                self.stats.retries += 1
                self.stats.waiting = f"{exc.reason[:120]} — retrying in {wait:.1f}s"
                log.warning("send failed (%s); retrying in %.1fs", exc.reason, wait)
                self._progress()
                self._wait(wait)
                delay = min(delay * 2, self.config.backoff_max_s)
                continue
            self.stats.waiting = None
            return results
        return None

    def _wait(self, seconds: float) -> None:
        """Sleep, but keep discovering (and holding open) files so rotated ones are not lost meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not self.config.once:
                self._scan()
            self.stop.wait(min(left, self.config.scan_interval_s))

    def _acknowledge(self, batch: list[ShipEvent], items: list[dict[str, Any]], results: list[ItemResult]) -> None:
        ends: dict[str, int] = {}
        for event, item, result in zip(batch, items, results, strict=True):
            ends[event.key] = max(ends.get(event.key, 0), event.raw.end)
            self.stats.bytes += event.raw.end - event.raw.start
            if result.accepted:
                self.stats.sent += 1
                continue
            self.stats.rejected += 1
            reason = f"{event.path}@{event.raw.start}: {result.code} {result.error}"
            if len(self.stats.rejections) < 20:
                self.stats.rejections.append(reason)
            log.warning("rejected by LogFlow (final, skipped): %s; id %s", reason, item.get("id"))
        for key, end in ends.items():
            state = self.states.get(key)
            if state is not None:
                state.offset = max(state.offset, end)
                state.pending = [p for p in state.pending if p.end > state.offset]
        self.store.save(self.states)
        self.stats.batches += 1
        self.stats.note()
        self._progress()

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stats)

    def close(self) -> None:
        self.tailer.close()
        self.sender.close()
        os.close(self._lock_fd)
