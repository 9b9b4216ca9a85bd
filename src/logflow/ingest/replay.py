"""Replaying dead letters: back onto the queue, for the processors to store again.

Events land in the dead letters when the store refused them: an index write-blocked because the
disk filled up, a mapping the cluster would not take, or a processor too old for the queue's
wire format (processors must be upgraded before the API; see docs/architecture.md). Once the
cause is fixed, a replay publishes them to the queue again, oldest first, and then moves its
replay group past them. A crash in between replays them once more, which costs nothing: the
store keeps every event once by its id.

A letter whose payload is no queue wire format LogFlow knows (something else wrote it to the
topic) can never be stored: it is counted as unreadable and passed over. Replayed letters stay
listed in the dead letters; the replay group remembers how far it got.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logflow.backends.queue.base import EventQueue, QueueRecord
from logflow.domain.events import WIRE_ERRORS, read_wire

DEFAULT_REPLAY_GROUP = "logflow-replay"
_BATCH = 1000
_REASON_CHARS = 200


@dataclass(slots=True)
class ReplayReport:
    """What one replay did (or, with ``dry_run``, would do)."""

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


def _queue_key(payload: bytes) -> bytes | None:
    """The payload's queue key (its service), or None if it is no wire format LogFlow reads."""
    try:
        return read_wire(payload)[2].encode()
    except WIRE_ERRORS:
        return None


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
    size. Raises BackendUnavailable (or QueueFull, StorageFull from publishing); what was
    committed before stays replayed.
    """
    cursor = queue.dead_letter_cursor(group)
    try:
        report = ReplayReport(pending=cursor.pending, dry_run=dry_run)
        if on_start is not None:
            on_start(report.pending)
        wanted = report.pending if limit is None else min(limit, report.pending)
        while report.read < wanted:
            batch = cursor.read(min(_BATCH, wanted - report.read))
            if batch is None:
                break
            records = []
            for letter in batch.letters:
                report.reasons[letter.reason[:_REASON_CHARS]] += 1
                key = _queue_key(letter.value)
                if key is None:
                    report.unreadable += 1
                else:
                    records.append(QueueRecord(key, letter.value))
            if not dry_run:
                queue.publish(records)  # durable before the group moves past them
                cursor.commit(batch)
                report.replayed += len(records)
            report.read += len(batch.letters)
            if progress is not None:
                progress(len(batch.letters))
        return report
    finally:
        cursor.close()
