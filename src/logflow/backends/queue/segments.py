"""Append-only segment files: the on-disk log under the embedded queue and its dead letters.

Layout of one log directory::

    00000000000000000000.seg   records whose global byte offsets start at 0
    00000000000067108990.seg   the next segment, named by the global offset of its first record
    head                       the durable end (u64 + CRC32) for readers in other processes
    writer.lock                flock held by the writer

A record is ``u32 length | u32 CRC32(payload) | payload`` (little-endian). Offsets are global byte
positions, so a consumer position is a plain integer that stays valid when old segments go.
Empty payloads are refused: a zero-filled tail (what a power cut can leave) would otherwise parse
as an endless run of valid empty records, since crc32(b"") == 0.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import itertools
import logging
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Literal

from logflow.backends.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
HEADER = struct.Struct("<II")
HEADER_SIZE = HEADER.size
_HEAD = struct.Struct("<QI")
_SUFFIX = ".seg"
_NAME_LEN = 20 + len(_SUFFIX)
_MIN_READ = 64 * 1024

LogMode = Literal["writer", "reader", "shared"]


class SegmentCorrupted(BackendError):
    """A record below the durable end failed its length or CRC check."""


class LogLocked(BackendUnavailable):
    """Another process (or another open log in this one) already writes to this directory."""


class OffsetOutOfRange(BackendError):
    """The requested offset lies in a segment that has already been deleted."""


def segment_name(start: int) -> str:
    """File name of the segment whose first record sits at global offset ``start``."""
    return f"{start:020d}{_SUFFIX}"


def frame(payloads: Iterable[bytes]) -> bytes:
    """Frame ``payloads`` into one bytes object for :meth:`SegmentLog.append_framed`."""
    parts: list[bytes] = []
    pack, crc32 = HEADER.pack, zlib.crc32
    for payload in payloads:
        if not payload:
            raise ValueError("empty payloads cannot be stored (they are indistinguishable from zeros)")
        parts.append(pack(len(payload), crc32(payload)))
        parts.append(payload)
    return b"".join(parts)


def fsync_dir(path: Path) -> None:
    """Make created, renamed or deleted directory entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _valid_prefix(buf: bytes | memoryview) -> tuple[int, str | None]:
    """Length of the run of intact records at the start of ``buf`` and why the scan stopped."""
    pos, size = 0, len(buf)
    while pos < size:
        if size - pos < HEADER_SIZE:
            return pos, "partial header"
        length, crc = HEADER.unpack_from(buf, pos)
        end = pos + HEADER_SIZE + length
        if length == 0:
            return pos, "zero length"
        if end > size:
            return pos, "partial record"
        if zlib.crc32(buf[pos + HEADER_SIZE : end]) != crc:
            return pos, "CRC mismatch"
        pos = end
    return pos, None


def _parse(buf: bytes, base: int, max_records: int) -> tuple[list[tuple[int, bytes]], int]:
    """Complete records at the start of ``buf`` (all below the durable end, so they must be intact)."""
    out: list[tuple[int, bytes]] = []
    pos, size = 0, len(buf)
    unpack, crc32 = HEADER.unpack_from, zlib.crc32
    while size - pos >= HEADER_SIZE and len(out) < max_records:
        length, crc = unpack(buf, pos)
        end = pos + HEADER_SIZE + length
        if end > size:
            break  # the chunk ends inside this record; the caller reads on
        payload = buf[pos + HEADER_SIZE : end]
        if length == 0 or crc32(payload) != crc:
            raise SegmentCorrupted(f"record at offset {base + pos} failed its CRC check")
        out.append((base + pos, payload))
        pos = end
    return out, pos


class SegmentLog:
    """An append-only, CRC-framed log split into segment files, safe across crashes.

    ``mode="writer"`` holds ``writer.lock`` for the log's lifetime and recovers the last segment
    on open. ``mode="shared"`` lets several processes append: each append takes the lock, repairs
    a tail left by a crashed appender, appends and releases it. ``mode="reader"`` only reads, up to
    the durable end published in ``head``, so it never sees a record still being written.
    """

    def __init__(
        self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES, *, mode: LogMode = "writer"
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.mode: LogMode = mode
        self.fsync_count = 0  # data fdatasyncs, so tests can see group commit at work
        self.broken = False
        self._append_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._read_fds: dict[int, int] = {}
        self._active_fd = self._lock_fd = self._head_fd = -1
        self._active_start = self._end = 0
        self._seen_end = 0  # last head value a non-writer read (kept if a read comes out torn)
        self._avg_record = 512.0
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        if mode == "reader":
            return
        self._lock_fd = os.open(self.directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._head_fd = os.open(self.directory / "head", os.O_RDWR | os.O_CREAT, 0o644)
        if mode == "writer":
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "?"
                self.close()
                raise LogLocked(
                    f"{self.directory} already has a writer (pid {holder}); one writer per directory"
                ) from None
            try:
                os.ftruncate(self._lock_fd, 0)
                os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
                self._recover()
            except BaseException:
                self.close()
                raise

    # -- reading ------------------------------------------------------------------------------

    def durable_end(self) -> int:
        """Offset just past the last fsynced record; nothing at or beyond it may be read."""
        if self.mode == "writer":
            return self._end
        fd = self._head_fd
        if fd < 0:
            try:
                fd = self._head_fd = os.open(self.directory / "head", os.O_RDONLY)
            except FileNotFoundError:
                return 0
        for _ in range(3):  # a read racing the writer's pwrite may be torn; the CRC tells
            raw = os.pread(fd, _HEAD.size, 0)
            if len(raw) == _HEAD.size:
                value, crc = _HEAD.unpack(raw)
                if zlib.crc32(raw[:8]) == crc:
                    self._seen_end = value
                    break
        return self._seen_end

    def first_offset(self) -> int:
        """Offset of the oldest record still kept (the start of the first segment)."""
        starts = self._segments()
        return starts[0] if starts else 0

    def read_from(self, offset: int, max_records: int, max_bytes: int) -> tuple[list[tuple[int, bytes]], int]:
        """Up to ``max_records`` (offset, payload) pairs from ``offset``, and the next offset.

        Stops near ``max_bytes`` but always returns at least one record when one is durable.
        """
        end = self.durable_end()  # before listing: a segment is created before the end passes it
        out: list[tuple[int, bytes]] = []
        if offset >= end or max_records <= 0:
            return out, offset
        start_offset = offset
        with self._read_lock:
            if self._closed:
                raise BackendUnavailable(f"segment log {self.directory} is closed")
            starts = self._segments()
            self._forget_fds(starts)
            if not starts or offset < starts[0]:
                raise OffsetOutOfRange(
                    f"offset {offset} was deleted; the log starts at {self.first_offset()}"
                )
            budget = max_bytes
            while offset < end and len(out) < max_records and (budget > 0 or not out):
                i = bisect.bisect_right(starts, offset) - 1
                seg = starts[i]
                limit = min(end, starts[i + 1]) if i + 1 < len(starts) else end
                # Size the read from the average record so a huge backlog is not slurped whole.
                guess = int(self._avg_record * (max_records - len(out)) * 1.25) + HEADER_SIZE
                want = min(limit - offset, max(budget, HEADER_SIZE), max(guess, _MIN_READ))
                fd = self._read_fd(seg)
                buf = os.pread(fd, want, offset - seg)
                records, used = _parse(buf, offset, max_records - len(out))
                if not records and len(buf) >= HEADER_SIZE:
                    need = HEADER_SIZE + HEADER.unpack_from(buf)[0]
                    if out and need > budget:
                        break  # the next record would overshoot max_bytes; leave it for next time
                    if len(buf) < need <= limit - offset:
                        buf = os.pread(fd, need, offset - seg)
                        records, used = _parse(buf, offset, 1)
                if not records:
                    raise SegmentCorrupted(f"no intact record at durable offset {offset} in {seg}")
                out.extend(records)
                offset += used
                budget -= used
            self._avg_record = 0.8 * self._avg_record + 0.2 * ((offset - start_offset) / len(out))
        return out, offset

    # -- writing ------------------------------------------------------------------------------

    def append_many(self, payloads: Iterable[bytes]) -> int:
        """Durably append ``payloads`` (one write, one fdatasync); returns the new end offset."""
        return self.append_framed(frame(payloads))

    def append_framed(self, blob: bytes) -> int:
        """Durably append records already framed by :func:`frame`; returns the new end offset."""
        if self.mode == "reader":
            raise BackendUnavailable(f"{self.directory} is open read-only")
        with self._append_lock:
            if self._closed or self.broken:
                raise BackendUnavailable(f"segment log {self.directory} is closed or failed")
            if self.mode == "writer":
                return self._append(blob)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._resync()
                return self._append(blob)
            finally:
                self._close_active()
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def delete_before(self, offset: int) -> int:
        """Delete whole segments whose records all lie below ``offset``; returns how many went.

        The last segment is never deleted: it is (or is about to become) the active one.
        """
        with self._read_lock:
            starts = self._segments()
            doomed = [s for s, nxt in itertools.pairwise(starts) if nxt <= offset]
            for start in doomed:
                fd = self._read_fds.pop(start, -1)
                if fd >= 0:
                    os.close(fd)
                # Another process's consumer may be deleting the same segment right now.
                (self.directory / segment_name(start)).unlink(missing_ok=True)
            if doomed:
                fsync_dir(self.directory)
        return len(doomed)

    def close(self) -> None:
        """Release files and the writer lock. Idempotent."""
        with self._append_lock, self._read_lock:
            self._closed = True
            self._close_active()
            for fd in [*self._read_fds.values(), self._head_fd, self._lock_fd]:
                if fd >= 0:
                    os.close(fd)  # closing the lock file releases the flock
            self._read_fds.clear()
            self._head_fd = self._lock_fd = -1

    def __enter__(self) -> SegmentLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        names = os.listdir(self.directory)
        return sorted(
            int(n[:20]) for n in names if len(n) == _NAME_LEN and n.endswith(_SUFFIX) and n[:20].isdigit()
        )

    def _read_fd(self, start: int) -> int:
        fd = self._read_fds.get(start, -1)
        if fd < 0:
            fd = self._read_fds[start] = os.open(self.directory / segment_name(start), os.O_RDONLY)
        return fd

    def _forget_fds(self, starts: list[int]) -> None:
        first = starts[0] if starts else None
        for start in [s for s in self._read_fds if first is None or s < first]:
            os.close(self._read_fds.pop(start))

    def _create_segment(self, start: int) -> int:
        fd = os.open(self.directory / segment_name(start), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fsync_dir(self.directory)  # the file's name must survive a power cut before its data
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _recover(self) -> None:
        """Validate the last segment, cut a torn or corrupt tail, fsync it and publish the end."""
        starts = self._segments()
        if not starts:
            os.close(self._create_segment(0))
            starts = [0]
        last = starts[-1]
        fd = os.open(self.directory / segment_name(last), os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            good, problem = 0, None
            if size:
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped, memoryview(mapped) as view:
                    good, problem = _valid_prefix(view)
            if good < size:
                head = self._read_head_value()
                # Bytes past the published end were never acknowledged (a torn write); bytes below
                # it were, so losing them means the disk corrupted data and deserves an error.
                lost = head is not None and last + good < head
                log.log(
                    logging.ERROR if lost else logging.WARNING,
                    "segment log %s: cut %d bytes (%s) from %s at offset %d%s",
                    self.directory,
                    size - good,
                    problem,
                    segment_name(last),
                    last + good,
                    ", including acknowledged records" if lost else "",
                )
                os.ftruncate(fd, good)
            # The previous writer may have died between write() and fdatasync().
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._close_active()
        self._active_fd, self._active_start, self._end = fd, last, last + good
        self._write_head(self._end)

    def _resync(self) -> None:
        """Shared mode: adopt the state another appender left, repairing it if it crashed."""
        starts = self._segments()
        head = self._read_head_value()
        if starts and head is not None:
            last = starts[-1]
            path = self.directory / segment_name(last)
            if head == last + path.stat().st_size:
                self._active_fd, self._active_start, self._end = os.open(path, os.O_WRONLY), last, head
                return
        self._recover()

    def _append(self, blob: bytes) -> int:
        if not blob:
            return self._end
        if self._end - self._active_start >= self.segment_bytes:
            fd = self._create_segment(self._end)
            self._close_active()
            self._active_fd, self._active_start = fd, self._end
        pos = self._end - self._active_start
        fd = self._active_fd
        try:
            written = os.pwrite(fd, blob, pos)
            while written < len(blob):  # short writes on regular files: a full disk or a signal
                n = os.pwrite(fd, memoryview(blob)[written:], pos + written)
                if n == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
        except OSError:
            try:
                os.ftruncate(fd, pos)  # leave no half group for recovery to judge
            except OSError:
                self.broken = True
            raise
        try:
            os.fdatasync(fd)
        except OSError:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing written
            # since the last good fsync can be trusted, so stop appending altogether.
            self.broken = True
            raise
        self.fsync_count += 1
        self._end += len(blob)
        self._write_head(self._end)
        return self._end

    def _write_head(self, end: int) -> None:
        # In place and without fsync: readers only need it while the writer runs, and recovery
        # recomputes it. It is written after the data's fsync, so it never runs ahead of the disk.
        raw = end.to_bytes(8, "little")
        os.pwrite(self._head_fd, raw + zlib.crc32(raw).to_bytes(4, "little"), 0)

    def _read_head_value(self) -> int | None:
        raw = os.pread(self._head_fd, _HEAD.size, 0)
        if len(raw) != _HEAD.size:
            return None
        value, crc = _HEAD.unpack(raw)
        return value if zlib.crc32(raw[:8]) == crc else None

    def _close_active(self) -> None:
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1
