"""Batching for the network listeners: many small messages in, few pipeline submits out.

A ``Batcher`` collects units (syslog frames, GELF payloads) from one listener and hands them to
the ingest pipeline in a worker thread, one batch at a time: at ``batch_items`` units, or
``linger_s`` after the first. Reliable (TCP) batchers retry a batch the queue refuses, with
backoff, while their senders wait; unreliable (UDP) ones drop it and count the drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.ingest.decode import DecodedItem
from logflow.ingest.pipeline import IngestPipeline
from logflow.ingest.protocols.syslog import TRUNCATED_FLAG, UNPARSED_FLAG

log = logging.getLogger("logflow.listeners")

RETRY_MAX_S = 5.0
WARN_EVERY_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How a batcher groups: at most ``batch_items`` per submit, waiting at most ``linger_s``."""

    batch_items: int = 1000
    linger_s: float = 0.05
    max_pending: int = 20_000  # unreliable (UDP) batchers drop beyond this many waiting units


@dataclass(slots=True)
class ListenerCounters:
    """Totals since start. ``received`` = ``accepted`` + ``rejected`` + ``malformed`` + ``dropped``."""

    received: int = 0  # messages taken off the wire (frames, datagrams, reassembled GELF messages)
    accepted: int = 0  # durable in the queue
    rejected: int = 0  # refused by the pipeline's checks (e.g. a timestamp outside retention)
    malformed: int = 0  # GELF that is not GELF (bad JSON, compression or chunk): nothing to store
    dropped: int = 0  # UDP: the queue refused or the pending buffer was full; TCP: unflushed at stop
    unparsed: int = 0  # syslog stored raw, flagged syslog_unparsed (counted in accepted too)
    truncated: int = 0  # cut to max_event_bytes, flagged syslog_truncated
    incomplete: int = 0  # GELF chunked messages whose chunks did not all arrive within 5 s
    retries: int = 0  # TCP: batches the queue refused and that were retried after a pause
    connections: int = 0  # TCP: open now


class Warnings:
    """At most one log line per kind every WARN_EVERY_S, so a flood of bad input cannot flood the log."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, float("-inf")) >= WARN_EVERY_S:
            self._last[kind] = now
            log.warning(message, *args)


class Batcher(Generic[T]):
    """Collects units (frames, payloads) from a listener and submits them in batches, one at a time."""

    def __init__(self, name: str, pipeline: IngestPipeline, decode: Callable[[list[T]], list[DecodedItem]],
                 counters: ListenerCounters, policy: BatchPolicy, warn: Warnings, *, reliable: bool) -> None:
        self.name, self._pipeline, self._decode, self._counters = name, pipeline, decode, counters
        self._policy, self._warn, self._reliable = policy, warn, reliable
        self._pending: list[T] = []
        self._done: asyncio.Future[None] | None = None
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"logflow-{name}-batcher")

    def _append(self, units: list[T]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._first_at = loop.time()
        self._pending.extend(units)
        if self._done is None:
            self._done = loop.create_future()
        self._wake.set()
        if len(self._pending) >= self._policy.batch_items:
            self._full.set()
        return self._done

    def offer(self, unit: T) -> None:
        """UDP: queue one unit without waiting; dropped (and counted) when too much is pending."""
        if self._closing or len(self._pending) >= self._policy.max_pending:
            self._counters.dropped += 1
            self._warn(f"{self.name}-full", "%s: too many messages pending, dropping datagrams", self.name)
            return
        self._append([unit])

    async def put(self, units: list[T]) -> None:
        """TCP: queue units and return once the batch holding them has been handled."""
        await asyncio.shield(self._append(units))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                continue
            delay = self._first_at + self._policy.linger_s - loop.time()
            if delay > 0 and not self._closing and len(self._pending) < self._policy.batch_items:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), delay)
            units, done = self._pending, self._done
            self._pending, self._done = [], None
            try:
                await self._process(units)
            except Exception:  # a bug must not stop the listener; the batch is counted as dropped
                log.exception("%s: batch of %d lost", self.name, len(units))
                self._counters.dropped += len(units)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _process(self, units: list[T]) -> None:
        loop = asyncio.get_running_loop()
        counters = self._counters
        items = await loop.run_in_executor(None, self._decode, units)
        good = [item for item in items if item.error is None]
        if len(good) < len(items):
            counters.malformed += len(items) - len(good)
            bad = next(item for item in items if item.error is not None)
            self._warn(f"{self.name}-malformed", "%s: malformed message not stored: %s", self.name,
                       bad.error.reason if bad.error else "")
        counters.unparsed += sum(UNPARSED_FLAG in item.flags for item in good)
        counters.truncated += sum(TRUNCATED_FLAG in item.flags for item in good)
        for index, item in enumerate(good):
            item.index = index
        delay = 0.2
        while good:
            try:
                outcome = await loop.run_in_executor(None, self._pipeline.submit, good)
            except (QueueFull, StorageFull, BackendUnavailable) as exc:
                if not self._reliable or self._closing:
                    counters.dropped += len(good)
                    self._warn(f"{self.name}-drop", "%s: %d messages dropped, the queue refused them: %s",
                               self.name, len(good), exc)
                    return
                counters.retries += 1
                self._warn(f"{self.name}-retry", "%s: queue refused a batch (%s); not reading until it is taken",
                           self.name, exc)
                await asyncio.sleep(min(delay, float(getattr(exc, "retry_after_s", RETRY_MAX_S))))
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            counters.accepted += outcome.accepted
            counters.rejected += outcome.rejected
            if outcome.rejected:
                first = next(r for r in outcome.results if r.status == "rejected")
                self._warn(f"{self.name}-rejected", "%s: %d messages rejected, e.g. %s", self.name,
                           outcome.rejected, first.error)
            return

    async def close(self) -> None:
        """Submit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        self._full.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 15)
        except TimeoutError:
            self._task.cancel()
            self._counters.dropped += len(self._pending)
