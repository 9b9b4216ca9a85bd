"""Processor: queue → store, committing queue offsets only after the store has the batch.

A crash between the store write and the commit replays the batch on restart; the store's
idempotency by event id turns the replay into counted duplicates, so nothing is lost or doubled.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from logflow.backends.errors import BackendError
from logflow.backends.queue.base import ConsumedBatch, DeadLetter, EventQueue, QueueConsumer
from logflow.backends.store.base import LogStore
from logflow.domain.events import LogEvent

log = logging.getLogger("logflow.processor")


@dataclass(slots=True)
class ProcessorCounters:
    """Running totals, written to the status file for ``logflow status``."""

    pid: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    store_errors: int = 0
    last_error: str = ""
    events_per_s: float = 0.0


class Processor:
    """Moves events from the queue to the store; run one per core or per Kafka partition group."""

    def __init__(
        self,
        queue: EventQueue,
        store: LogStore,
        *,
        group: str,
        batch_size: int = 5000,
        retention_s: int | None = None,
        retention_check_s: float = 300.0,
        status_path: Path | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.group = group
        self.batch_size = batch_size
        self.retention_s = retention_s
        self.retention_check_s = retention_check_s
        self.status_path = status_path
        self.counters = ProcessorCounters(pid=os.getpid(), started_at=time.time())
        self._next_retention = 0.0
        self._last_status = 0.0
        self._rate_mark = (time.monotonic(), 0)

    def handle(self, consumer: QueueConsumer, batch: ConsumedBatch) -> None:
        """Store one batch, dead-letter what the store refuses, then commit. Raises BackendError."""
        events: list[LogEvent] = []
        letters: list[DeadLetter] = []
        now_ms = int(time.time() * 1000)
        for record in batch.records:
            try:
                events.append(LogEvent.from_wire(record.value))
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, struct.error) as exc:
                letters.append(DeadLetter(record.value, f"undecodable queue payload: {exc}", now_ms))
        result = self.store.write(events)
        letters += [DeadLetter(r.event.to_json(), r.reason, now_ms) for r in result.rejected]
        if letters:
            self.queue.dead_letter(letters)
        consumer.commit(batch)
        c = self.counters
        c.batches += 1
        c.stored += result.stored
        c.duplicates += result.duplicates
        c.dead_letters += len(letters)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; the in-flight batch is finished (or handed back) first."""
        consumer = self.queue.consumer(self.group)
        backoff = 0.5
        try:
            while not stop.is_set():
                self._maintenance()
                try:
                    batch = consumer.poll(self.batch_size, timeout_s=0.2)
                    if batch is None or not batch.records:
                        continue
                    self.handle(consumer, batch)
                    backoff = 0.5
                except BackendError as exc:
                    # Store or queue down: keep the batch uncommitted and try again after a pause.
                    self.counters.store_errors += 1
                    self.counters.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("processor: %s; retrying in %.1fs", exc, backoff)
                    consumer.rewind()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            consumer.close()
            self._write_status(force=True)

    def _maintenance(self) -> None:
        now = time.time()
        if self.retention_s is not None and now >= self._next_retention:
            self._next_retention = now + self.retention_check_s
            try:
                dropped = self.store.drop_before(int((now - self.retention_s) * 1_000_000))
                if dropped:
                    log.info("retention: dropped %d partition(s) older than %d days", dropped,
                             self.retention_s // 86400)
            except BackendError as exc:
                log.warning("retention failed: %s", exc)
        self._write_status()

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < 1.0:
            return
        mark_time, mark_count = self._rate_mark
        if now > mark_time:
            self.counters.events_per_s = round((self.counters.stored - mark_count) / (now - mark_time), 1)
        self._rate_mark = (now, self.counters.stored)
        self._last_status = now
        self.counters.updated_at = time.time()
        if self.status_path is not None:
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(asdict(self.counters)))
            os.replace(tmp, self.status_path)
