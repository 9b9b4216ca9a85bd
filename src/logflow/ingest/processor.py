"""Processor: queue → store, committing queue offsets only after the store has the batch.

A crash between the store write and the commit replays the batch on restart; the store's
idempotency by event id turns the replay into counted duplicates, so nothing is lost or doubled.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from logflow.backends.errors import BackendError
from logflow.backends.queue.base import ConsumedBatch, DeadLetter, EventQueue, QueueConsumer
from logflow.backends.store.base import LogStore, PreparedBatch, PreparingStore, WriteResult
from logflow.domain.events import LogEvent
from logflow.ingest.prepare_worker import BatchPreparer, InlinePreparer, PrepareWorker, prepare_isolating

log = logging.getLogger("logflow.processor")

# A batch handed to the store and not yet committed: (batch, its prepared form, the write).
_Writing = tuple[ConsumedBatch, PreparedBatch, "Future[WriteResult]"]


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


def decode_payloads(payloads: list[bytes]) -> PreparedBatch:
    """The preparation every store can use: queue payloads decoded into events."""
    events, undecodable = LogEvent.from_wire_batch(payloads)
    return PreparedBatch(undecodable=undecodable, data=events)


_REASON_CHARS = 1024


class Processor:
    """Moves events from the queue to the store; run one per core or per Kafka partition group.

    With a store that prepares its writes, each batch is prepared while the previous one is
    written: in a helper process when the store asks for one and ``prepare_worker`` allows it
    (the embedded store, see prepare_worker.py), else in this thread while other threads write
    (OpenSearch: its writes wait on the network). A store that takes concurrent writes keeps two
    batches writing at once, committed in order.
    """

    def __init__(
        self,
        queue: EventQueue,
        store: LogStore,
        *,
        group: str,
        batch_size: int = 10_000,
        retention_s: int | None = None,
        retention_check_s: float = 300.0,
        status_path: Path | None = None,
        prepare_worker: bool = False,
        collect_every_s: float | None = None,
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
        self._next_collection = 0.0
        self.collect_every_s = collect_every_s
        self._last_status = 0.0
        self._rate_mark = (time.monotonic(), 0)
        # Chosen once: how a batch is prepared, and how a prepared batch is written.
        self._prepare: Callable[[list[bytes]], PreparedBatch] = decode_payloads
        self._write: Callable[[PreparedBatch], WriteResult] = self._write_events
        self.pipelined = self.overlapped = self.helper = False
        if isinstance(store, PreparingStore):
            self._prepare, self._write = store.preparer(), store.write_prepared
            self.helper = prepare_worker and store.prepare_in_helper
            # Preparing in this thread overlaps only a write that runs on another thread.
            self.overlapped = store.concurrent_writes and (self.helper or not store.prepare_in_helper)
            self.pipelined = self.helper or self.overlapped

    def _write_events(self, prepared: PreparedBatch) -> WriteResult:
        return self.store.write(prepared.data)

    def handle(self, consumer: QueueConsumer, batch: ConsumedBatch) -> None:
        """Prepare and store one batch in this process, then commit. Raises BackendError."""
        self._store(consumer, batch, prepare_isolating(self._prepare, [record.value for record in batch.records]))

    def _store(self, consumer: QueueConsumer, batch: ConsumedBatch, prepared: PreparedBatch) -> None:
        """Store a prepared batch, dead-letter what cannot be stored, then commit. Raises BackendError."""
        self._finish(consumer, batch, prepared, self._write(prepared))

    def _finish(self, consumer: QueueConsumer, batch: ConsumedBatch, prepared: PreparedBatch,
                result: WriteResult) -> None:
        """Dead-letter what the batch could not store, then commit it. Raises BackendError."""
        now_ms = int(time.time() * 1000)
        # Reasons are cut: an exception's text may quote a whole payload, and a Kafka message
        # (payload + reason header) must stay under the broker's limit.
        letters = [DeadLetter(batch.records[index].value, reason[:_REASON_CHARS], now_ms)
                   for index, reason in prepared.undecodable]
        letters += [DeadLetter(r.event.to_json(), r.reason[:_REASON_CHARS], now_ms) for r in result.rejected]
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
        worker: BatchPreparer | None = None
        if self.pipelined:
            worker = PrepareWorker(self._prepare) if self.helper else InlinePreparer(self._prepare)
        try:
            if worker is None:
                self._run_serial(consumer, stop)
            else:
                self._run_pipelined(consumer, worker, stop)
        finally:
            if worker is not None:
                worker.close()
            consumer.close()
            self._write_status(force=True)

    def _run_serial(self, consumer: QueueConsumer, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            self._maintenance()
            try:
                batch = consumer.poll(self.batch_size, timeout_s=0.2)
                if batch is None or not batch.records:
                    continue
                self.handle(consumer, batch)
                backoff = 0.5
            except BackendError as exc:
                backoff = self._failed(consumer, exc, stop, backoff)

    def _run_pipelined(self, consumer: QueueConsumer, worker: BatchPreparer, stop: threading.Event) -> None:
        """Batch N is written while batch N+1 is prepared; commits stay in queue order.

        With an overlapped store, batch N+1's write starts while batch N's is still running, so
        the engine never waits for the processor between batches. On stop the batches being
        written are finished; one still being prepared is handed back (never committed, so the
        queue delivers it again).
        """
        backoff = 0.5
        ahead: ConsumedBatch | None = None  # submitted for preparing, not yet written
        writing: deque[_Writing] = deque()
        pool = ThreadPoolExecutor(2, "store-write") if self.overlapped else None
        try:
            while not stop.is_set():
                self._maintenance()
                try:
                    if ahead is None:
                        ahead = self._submit(consumer, worker, timeout_s=0.0 if writing else 0.2)
                        if ahead is None and writing:
                            self._finish_oldest(consumer, writing)  # the queue is idle: commit now
                        continue
                    prepared = worker.result()
                    current, ahead = ahead, None
                    if pool is None:
                        ahead = self._submit(consumer, worker, timeout_s=0.0)  # prepared while this is stored
                        self._store(consumer, current, prepared)
                    else:
                        # The write first: an inline preparer works in this thread, at submit.
                        writing.append((current, prepared, pool.submit(self._write, prepared)))
                        ahead = self._submit(consumer, worker, timeout_s=0.0)
                        while len(writing) > 1 or (writing and writing[0][2].done()):
                            self._finish_oldest(consumer, writing)
                    backoff = 0.5
                except BackendError as exc:
                    ahead = None
                    worker.discard()
                    self._abandon(writing)
                    backoff = self._failed(consumer, exc, stop, backoff)
            while writing:
                try:
                    self._finish_oldest(consumer, writing)
                except BackendError as exc:
                    log.warning("processor: stopping with a batch not stored: %s", exc)
                    self._abandon(writing)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _finish_oldest(self, consumer: QueueConsumer, writing: deque[_Writing]) -> None:
        batch, prepared, write = writing.popleft()
        self._finish(consumer, batch, prepared, write.result())

    @staticmethod
    def _abandon(writing: deque[_Writing]) -> None:
        """Wait for writes still running and drop them uncommitted: an earlier batch failed, and
        committing a later one would skip it. The queue delivers them again; the store counts
        what they did store as duplicates."""
        while writing:
            _, _, write = writing.popleft()
            with contextlib.suppress(BackendError):
                write.result()

    def _submit(self, consumer: QueueConsumer, worker: BatchPreparer, timeout_s: float) -> ConsumedBatch | None:
        batch = consumer.poll(self.batch_size, timeout_s=timeout_s)
        if batch is None or not batch.records:
            return None
        worker.submit([record.value for record in batch.records])
        return batch

    def _failed(self, consumer: QueueConsumer, exc: BackendError, stop: threading.Event, backoff: float) -> float:
        """Store, queue or helper down: keep what is uncommitted and try again after a pause."""
        self.counters.store_errors += 1
        self.counters.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("processor: %s; retrying in %.1fs", exc, backoff)
        consumer.rewind()
        stop.wait(backoff)
        return min(backoff * 2, 30.0)

    def _maintenance(self) -> None:
        now = time.time()
        if self.collect_every_s is not None and now >= self._next_collection:
            # For a processor process, which collects garbage rarely (serve.py raises the
            # thresholds): each HTTP request to OpenSearch leaves a reference cycle holding its
            # body, MBs for a _bulk request, and without a full collection now and then 1 M events
            # left ~300 MB of them. There a full collection takes about a millisecond; not in a
            # process with a large heap of its own, which is why it is the caller's choice.
            self._next_collection = now + self.collect_every_s
            gc.collect()
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
