"""The embedded EventQueue: a durable segment log on local disk, with group commit.

Layout of the queue directory: the segment log itself (``*.seg``, ``head``, ``writer.lock``),
``offsets/<group>.offset`` (+ ``<group>.lock``) per consumer group, and ``deadletters/``, a second
segment log any process may append to.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import struct
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.backends.queue.base import ConsumedBatch, DeadLetter, PartitionLag, QueueRecord, QueueStats, new_tuple
from logflow.backends.queue.embedded_dead_letters import (
    DEAD_LETTERS_DIR,
    EmbeddedDeadLetterCursor,
    decode_dead_letter,
    encode_dead_letter,
)
from logflow.backends.queue.offsets import check_group, committed_offsets, read_offset, write_offset
from logflow.backends.queue.segments import (
    DEFAULT_SEGMENT_BYTES,
    OffsetOutOfRange,
    SegmentLog,
    fsync_dir,
)

log = logging.getLogger(__name__)

_RECORD = struct.Struct("<IIH")  # segment header (length, CRC) + the payload's u16 key length
_KEY_LEN = struct.Struct("<H")
_POLL_INTERVAL_S = 0.02
_DISK_CHECK_S = 1.0
_FLOOR_REFRESH_S = 1.0
_DEAD_SEGMENT_BYTES = 8 * 1024 * 1024  # small: a shared appender rescans the last one after a crash


def encode_records(records: Sequence[QueueRecord]) -> bytes:
    """Frame queue records (payload = u16 key length + key + value) into one bytes object."""
    parts: list[bytes] = []
    append, pack, crc32 = parts.append, _RECORD.pack, zlib.crc32
    key_crcs: dict[bytes, int] = {}  # keys repeat (service names): CRC their prefix once
    try:
        for record in records:
            key, value = record.key, record.value
            key_crc = key_crcs.get(key)
            if key_crc is None:
                key_crc = key_crcs[key] = crc32(key, crc32(_KEY_LEN.pack(len(key))))
            append(pack(2 + len(key) + len(value), crc32(value, key_crc), len(key)))
            append(key)
            append(value)
    except struct.error as exc:
        raise ValueError(f"queue record too large (keys up to 65535 bytes): {exc}") from None
    return b"".join(parts)


def decode_records(items: list[tuple[int, bytes]]) -> list[QueueRecord]:
    """Split payloads written by :func:`encode_records` back into records."""
    out: list[QueueRecord] = []
    append = out.append
    for _, payload in items:
        end = 2 + (payload[0] | payload[1] << 8)
        append(new_tuple(QueueRecord, (payload[2:end], payload[end:])))
    return out


def _ensure_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        fsync_dir(path.parent)


class EmbeddedConsumer:
    """The single member of one consumer group of an :class:`EmbeddedQueue`.

    The group's ``.lock`` file is flock'ed for the consumer's lifetime, so a second consumer of
    the same group (in any process) fails at once instead of silently double-processing.
    """

    def __init__(
        self, directory: Path, group: str, *, on_commit: Callable[[], None], max_bytes: int = 16 << 20
    ) -> None:
        check_group(group)
        self.group = group
        self._offsets = directory / "offsets"
        self._path = self._offsets / f"{group}.offset"
        self._on_commit = on_commit
        self._max_bytes = max_bytes
        self._lock_fd = os.open(self._offsets / f"{group}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise BackendUnavailable(
                f"consumer group {group!r} already has a consumer on {directory}; "
                "the embedded queue allows one consumer per group"
            ) from None
        self._log = SegmentLog(directory, mode="reader")
        try:
            committed = read_offset(self._path)
            if committed is None:
                # A new group starts at the oldest kept record, and registers at once so that its
                # backlog counts and segments it has not read yet are not deleted under it.
                committed = self._log.first_offset()
                write_offset(self._path, committed)
        except BaseException:
            self._log.close()
            os.close(self._lock_fd)
            raise
        self._committed = self._position = committed
        self._closed = False

    def poll(self, max_records: int, timeout_s: float) -> ConsumedBatch | None:
        """Up to ``max_records`` records after the read position, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._closed:
                raise BackendUnavailable(f"consumer of group {self.group!r} is closed")
            if self._log.durable_end() > self._position:
                try:
                    items, position = self._log.read_from(self._position, max_records, self._max_bytes)
                except OffsetOutOfRange:
                    first = self._log.first_offset()
                    if first <= self._position:
                        raise  # the segments vanished altogether: nothing to skip to
                    log.error(
                        "group %s: offset %d was deleted; skipping to %d", self.group, self._position, first
                    )
                    self._position = first
                    continue
                if items:
                    self._position = position
                    return ConsumedBatch(records=decode_records(items), position=position)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(_POLL_INTERVAL_S, remaining))  # the writer publishes progress in `head`

    def commit(self, batch: ConsumedBatch) -> None:
        """Durably record ``batch`` as processed, then drop segments every group is done with."""
        position = batch.position
        if not isinstance(position, int):
            raise TypeError("commit() needs a batch returned by this queue's poll()")
        if self._closed:
            raise BackendUnavailable(f"consumer of group {self.group!r} is closed")
        if position <= self._committed:
            return  # an older batch: committed offsets never go backwards
        write_offset(self._path, position)
        self._committed = position
        self._on_commit()
        self._log.delete_before(min(committed_offsets(self._offsets)))

    def rewind(self) -> None:
        """Forget uncommitted progress: the next poll starts right after the last commit."""
        self._position = self._committed

    def close(self) -> None:
        """Release the group (uncommitted records are redelivered to the next consumer)."""
        if not self._closed:
            self._closed = True
            self._log.close()
            os.close(self._lock_fd)


class EmbeddedQueue:
    """:class:`~logflow.backends.queue.base.EventQueue` on local disk, for the one-process shape.

    ``publish`` hands its records to one writer thread, which appends everything pending with a
    single write and a single fdatasync (group commit), so concurrent publishers share one disk
    flush; each ``publish`` returns only once its records are on disk. ``writer=False`` opens
    the queue for consumers, dead letters and stats only (e.g. a processor in another process).
    """

    kind = "embedded"

    def __init__(
        self,
        directory: Path,
        *,
        max_backlog_bytes: int = 1 << 30,
        min_free_disk_bytes: int = 256 << 20,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        writer: bool = True,
        publish_timeout_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._offsets = self.directory / "offsets"
        _ensure_dir(self._offsets)
        _ensure_dir(self.directory / DEAD_LETTERS_DIR)
        self._max_backlog = max_backlog_bytes
        self._min_free = min_free_disk_bytes
        self._publish_timeout_s = publish_timeout_s
        self._dead = SegmentLog(self.directory / DEAD_LETTERS_DIR, _DEAD_SEGMENT_BYTES, mode="shared")
        try:
            self._log = SegmentLog(self.directory, segment_bytes, mode="writer" if writer else "reader")
        except BaseException:
            self._dead.close()
            raise
        self._dead_lock = threading.Lock()
        self._dead_count = self._dead_scanned = 0
        self._consumers: weakref.WeakSet[EmbeddedConsumer] = weakref.WeakSet()
        # Capacity checks read the disk and the offsets files only every so often.
        self._free_bytes, self._disk_checked_at = 0, float("-inf")
        self._floor, self._floor_at = 0, float("-inf")
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, Future[None]]] = []
        self._closing = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        if writer:
            self._thread = threading.Thread(target=self._run, name="logflow-queue-writer", daemon=True)
            self._thread.start()

    @property
    def fsync_count(self) -> int:
        """Data fdatasyncs so far: with group commit, fewer than the publishes that caused them."""
        return self._log.fsync_count

    def publish(self, records: Sequence[QueueRecord]) -> None:
        """Durably append ``records``; returns once they are fsynced."""
        if not records:
            return
        if self._thread is None:
            raise BackendUnavailable("this embedded queue was opened without the writer")
        self._check_capacity()
        done: Future[None] = Future()
        blob = encode_records(records)  # outside the lock: encoding overlaps the writer's fsync
        with self._cond:
            if self._failure is not None:
                raise BackendUnavailable(f"queue writer stopped: {self._failure!r}")
            if self._closing:
                raise BackendUnavailable("queue is closed")
            self._pending.append((blob, done))
            self._cond.notify()
        try:
            done.result(timeout=self._publish_timeout_s)
        except TimeoutError:
            raise BackendUnavailable(
                f"disk did not confirm a write within {self._publish_timeout_s}s"
            ) from None

    def consumer(self, group: str) -> EmbeddedConsumer:
        """The consumer of ``group`` (one per group; see :class:`EmbeddedConsumer`)."""
        consumer = EmbeddedConsumer(self.directory, group, on_commit=self._forget_floor)
        self._consumers.add(consumer)
        return consumer

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Durably keep refused payloads with their reason (any process may call this)."""
        payloads = [encode_dead_letter(letter) for letter in letters]
        if not payloads:
            return
        try:
            self._dead.append_many(payloads)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"no space for dead letters under {self.directory}") from exc
            raise BackendUnavailable(f"cannot write dead letters: {exc}") from exc

    def read_dead_letters(self, limit: int) -> list[DeadLetter]:
        """The ``limit`` most recent dead letters, newest first."""
        if limit <= 0:
            return []
        newest: deque[bytes] = deque(maxlen=limit)
        offset, end = self._dead.first_offset(), self._dead.durable_end()
        while offset < end:
            items, offset = self._dead.read_from(offset, 10_000, 8 << 20)
            newest.extend(payload for _, payload in items)
        return [decode_dead_letter(payload) for payload in reversed(newest)]

    def dead_letter_cursor(self, group: str) -> EmbeddedDeadLetterCursor:
        """A cursor over the dead letters replay group ``group`` has not committed yet."""
        return EmbeddedDeadLetterCursor(self._dead, self.directory / DEAD_LETTERS_DIR, group)

    def stats(self, group: str) -> QueueStats:
        """Lag of ``group`` in bytes (one partition), backlog, dead letters and health."""
        check_group(group)
        end = self._log.durable_end()
        committed = read_offset(self._offsets / f"{group}.offset")
        if committed is None:
            committed = self._log.first_offset()
        self._forget_floor()
        backlog = max(0, end - self._backlog_floor())
        problems = []
        if self._failure is not None:
            problems.append(f"writer stopped: {self._failure!r}")
        if self._disk_free() < self._min_free:
            problems.append(f"less than {self._min_free} bytes free on disk")
        if backlog > self._max_backlog:
            problems.append("backlog over its limit: publishes are refused until consumers catch up")
        return QueueStats(
            kind=self.kind,
            healthy=not problems,
            detail="; ".join(problems) or f"{self.directory} ({'writer' if self._thread else 'read-only'})",
            partitions=[PartitionLag(partition=0, committed=committed, end=end)],
            backlog_bytes=backlog,
            dead_letters=self._count_dead_letters(),
        )

    def close(self) -> None:
        """Finish pending publishes, stop the writer thread and release every file."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        for consumer in list(self._consumers):
            consumer.close()
        self._log.close()
        self._dead.close()

    # -- internals ----------------------------------------------------------------------------

    def _run(self) -> None:
        group: list[tuple[bytes, Future[None]]] = []
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return  # closing, and everything accepted has been written
                    group, self._pending = self._pending, []
                blob = group[0][0] if len(group) == 1 else b"".join([blob for blob, _ in group])
                try:
                    self._log.append_framed(blob)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or self._log.broken:
                        raise
                    # The log cut the partial write off, so it is intact: refuse this group only.
                    self._disk_checked_at = float("-inf")
                    for _, done in group:
                        done.set_exception(StorageFull(f"disk full under {self.directory}"))
                    group = []
                    continue
                for _, done in group:
                    done.set_result(None)
                group = []
        except BaseException as exc:
            log.exception("queue writer thread failed; publishes now fail")
            with self._cond:
                self._failure = exc
                group += self._pending
                self._pending = []
            for _, done in group:
                if not done.done():
                    done.set_exception(BackendUnavailable(f"queue writer failed: {exc!r}"))

    def _check_capacity(self) -> None:
        free = self._disk_free()
        if free < self._min_free:
            raise StorageFull(f"only {free} bytes free under {self.directory} (need {self._min_free})")
        end = self._log.durable_end()
        if end - self._backlog_floor() > self._max_backlog:
            self._forget_floor()  # the cached floor may be stale: consumers may have caught up
            backlog = end - self._backlog_floor()
            if backlog > self._max_backlog:
                raise QueueFull(f"queue backlog {backlog} bytes exceeds {self._max_backlog}", retry_after_s=2)

    def _disk_free(self) -> int:
        now = time.monotonic()
        if now - self._disk_checked_at >= _DISK_CHECK_S:
            self._free_bytes = shutil.disk_usage(self.directory).free
            self._disk_checked_at = now
        return self._free_bytes

    def _backlog_floor(self) -> int:
        """The slowest group's committed offset (or the oldest kept record without groups)."""
        now = time.monotonic()
        if now - self._floor_at >= _FLOOR_REFRESH_S:
            committed = committed_offsets(self._offsets)
            self._floor = min(committed) if committed else self._log.first_offset()
            self._floor_at = now
        return self._floor

    def _forget_floor(self) -> None:
        self._floor_at = float("-inf")

    def _count_dead_letters(self) -> int:
        with self._dead_lock:  # counted incrementally: only letters added since the last call
            end = self._dead.durable_end()
            self._dead_scanned = max(self._dead_scanned, self._dead.first_offset())
            while self._dead_scanned < end:
                items, self._dead_scanned = self._dead.read_from(self._dead_scanned, 100_000, 16 << 20)
                self._dead_count += len(items)
            return self._dead_count
