"""The embedded queue's dead letters: their framing, and cursors that replay them.

Dead letters live in ``deadletters/``, a segment log any process may append to; each record is
``u64 at_ms | u16 reason length | reason (UTF-8) | payload``. A replay group's committed offset is
kept in ``deadletters/replay/<group>.offset``, flock'ed through ``<group>.lock`` while a cursor is
open. Replayed letters stay in the log: they are still listed, and counted, as dead letters.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

from logflow.backends.errors import BackendUnavailable, ReplayInProgress
from logflow.backends.queue.base import DeadLetter, DeadLetterBatch
from logflow.backends.queue.offsets import check_group, read_offset, write_offset
from logflow.backends.queue.segments import SegmentLog, fsync_dir

DEAD_LETTERS_DIR = "deadletters"
_REPLAY_DIR = "replay"
_DEAD = struct.Struct("<QH")  # at_ms, reason length; then reason (UTF-8) and value
_READ_BYTES = 8 << 20


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """A dead letter as one segment-log record (a reason over 64 KiB is cut)."""
    reason = letter.reason.encode()[:0xFFFF]
    return _DEAD.pack(letter.at_ms, len(reason)) + reason + letter.value


def decode_dead_letter(record: bytes) -> DeadLetter:
    at_ms, size = _DEAD.unpack_from(record)
    reason = record[_DEAD.size : _DEAD.size + size].decode(errors="replace")
    return DeadLetter(value=record[_DEAD.size + size :], reason=reason, at_ms=at_ms)


class EmbeddedDeadLetterCursor:
    """:class:`~logflow.backends.queue.base.DeadLetterCursor` over the embedded dead-letter log."""

    def __init__(self, log: SegmentLog, directory: Path, group: str) -> None:
        check_group(group)
        offsets = directory / _REPLAY_DIR
        if not offsets.is_dir():
            offsets.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory)
        self._log = log
        self._path = offsets / f"{group}.offset"
        self._lock_fd = os.open(offsets / f"{group}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayInProgress(f"dead letters of replay group {group!r} are being replayed already") from None
            first = log.first_offset()
            self._committed = max(first, read_offset(self._path) or first)
            self._end = log.durable_end()  # letters added from now on wait for the next cursor
            self._pending = self._count(self._committed)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._position = self._committed
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    def read(self, max_letters: int) -> DeadLetterBatch | None:
        self._check_open()
        if self._position >= self._end:
            return None
        items, following = self._log.read_from(self._position, max(1, max_letters), _READ_BYTES)
        letters = []
        for offset, record in items:
            if offset >= self._end:
                following = offset
                break
            letters.append(decode_dead_letter(record))
        if not letters:
            return None
        self._position = following
        return DeadLetterBatch(letters=letters, position=following)

    def commit(self, batch: DeadLetterBatch) -> None:
        self._check_open()
        position = batch.position
        if not isinstance(position, int):
            raise TypeError("commit() needs a batch returned by this cursor's read()")
        if position > self._committed:
            write_offset(self._path, position)
            self._committed = position

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._lock_fd)

    def _count(self, offset: int) -> int:
        count = 0
        while offset < self._end:
            items, offset = self._log.read_from(offset, 100_000, _READ_BYTES)
            if not items:
                break
            count += sum(1 for start, _ in items if start < self._end)
        return count

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("dead-letter cursor is closed")
