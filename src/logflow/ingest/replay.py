"""Replaying dead letters: back onto the queue, for the processors to store again.

Events land in the dead letters when the store refused them: an index write-blocked because the
disk filled up, a mapping the cluster would not take, or a processor too old for the queue's
wire format (processors must be upgraded before the API; see docs/architecture.md). Once the
cause is fixed, a replay publishes them to the queue again, oldest first, and then moves its
replay group past them. A crash in between replays them once more, which costs nothing: the
store keeps every event once by its id.

A letter is replayed only if the processors can decode it (``LogEvent.from_wire``, checked);
one holding a Kafka pack, which a processor older than packs dead-letters whole, is replayed as
its events. Anything else (something else wrote it to the topic) can never be stored: it is
counted as unreadable and passed over. Replayed letters stay listed in the dead letters; the
replay group remembers how far it got.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logflow.backends.errors import BackendError, ReplayInProgress
from logflow.backends.queue.base import DeadLetterCursor, EventQueue, QueueRecord
from logflow.backends.queue.kafka.packing import decode as decode_pack
from logflow.domain.events import LogEvent

DEFAULT_REPLAY_GROUP = "logflow-replay"
_BATCH = 1000
_REASON_CHARS = 200
# One replay per group in this process; the embedded queue also locks the group across processes.
_running: set[str] = set()
_running_lock = threading.Lock()


@dataclass(slots=True)
class ReplayReport:
    """What one replay did (or, with ``dry_run``, would do). ``read`` counts letters;
    ``replayed`` counts events (a letter holding a pack is several)."""

    pending: int
    dry_run: bool
    read: int = 0
    replayed: int = 0
    unreadable: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def remaining(self) -> int:
        """Letters still waiting for this replay group (a dry run leaves all of them waiting)."""
        return self.pending if self.dry_run else self.pending - self.read

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "pending": self.pending,
            "read": self.read,
            "replayed": self.replayed,
            "unreadable": self.unreadable,
            "remaining": self.remaining,
            "reasons": [{"reason": reason, "count": count} for reason, count in self.reasons.most_common()],
        }


class ReplayInterrupted(Exception):
    """A replay stopped part way (``cause``); ``report`` tells what was committed before it."""

    def __init__(self, report: ReplayReport, cause: BackendError) -> None:
        super().__init__(str(cause))
        self.report = report
        self.cause = cause


def _event_key(payload: bytes) -> bytes | None:
    """The queue key (service) of a payload the processors can decode, else None."""
    try:
        event = LogEvent.from_wire(payload, checked=True)
    except Exception:  # bytes from anywhere: whatever fails to decode is unreadable
        return None
    return event.service.encode()


def queue_records(payload: bytes) -> list[QueueRecord] | None:
    """What a dead letter goes back on the queue as: its event, a pack's events, or None."""
    key = _event_key(payload)
    if key is not None:
        return [QueueRecord(key, payload)]
    try:
        packed = decode_pack(b"", payload)
    except ValueError:
        return None
    records = []
    for record in packed:
        key = _event_key(record.value)
        if key is None:
            return None
        records.append(QueueRecord(key, record.value))
    return records or None


def replay_dead_letters(
    queue: EventQueue,
    *,
    group: str = DEFAULT_REPLAY_GROUP,
    limit: int | None = None,
    dry_run: bool = False,
    on_start: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Publish the dead letters ``group`` has not replayed yet (at most ``limit``) to ``queue``.

    With ``dry_run`` nothing is published and the group does not move: the report tells what a
    replay would do. ``on_start`` gets the number of letters pending, ``progress`` each batch's
    size. Raises ReplayInProgress if the group is being replayed already, BackendError if the
    queue cannot be read, and ReplayInterrupted (with what was committed) if it fails part way.
    """
    with _running_lock:
        if group in _running:
            raise ReplayInProgress(f"dead letters of replay group {group!r} are being replayed already")
        _running.add(group)
    try:
        cursor = queue.dead_letter_cursor(group)
        try:
            report = ReplayReport(pending=cursor.pending, dry_run=dry_run)
            if on_start is not None:
                on_start(report.pending)
            try:
                _replay(queue, cursor, report, limit, progress)
            except BackendError as exc:
                raise ReplayInterrupted(report, exc) from exc
            return report
        finally:
            cursor.close()
    finally:
        with _running_lock:
            _running.discard(group)


def _replay(queue: EventQueue, cursor: DeadLetterCursor, report: ReplayReport, limit: int | None,
            progress: Callable[[int], None] | None) -> None:
    wanted = report.pending if limit is None else min(limit, report.pending)
    while report.read < wanted:
        batch = cursor.read(min(_BATCH, wanted - report.read))
        if batch is None:
            break
        records: list[QueueRecord] = []
        for letter in batch.letters:
            report.reasons[letter.reason[:_REASON_CHARS]] += 1
            found = queue_records(letter.value)
            if found is None:
                report.unreadable += 1
            else:
                records += found
        if not report.dry_run:
            queue.publish(records)  # durable before the group moves past them
            cursor.commit(batch)
            report.replayed += len(records)
        report.read += len(batch.letters)
        if progress is not None:
            progress(len(batch.letters))
