"""The queue port: what ingest and the processors need from a durable log of events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class QueueRecord(NamedTuple):
    """One queued payload. ``key`` groups records that must stay ordered (the service name).

    A NamedTuple rather than a frozen dataclass: immutable and hashable all the same, and made
    in 0.24 µs instead of 0.34 (two are made per event: when queued and when consumed).
    """

    key: bytes
    value: bytes


# QueueRecord's constructor without its Python-level __new__, for loops that make one per event:
# ``new_tuple(QueueRecord, (key, value))`` is ~0.09 µs faster per record than ``QueueRecord(key, value)``.
new_tuple = tuple.__new__


@dataclass(slots=True)
class ConsumedBatch:
    """Records handed to a consumer. ``position`` is opaque to callers: pass the batch to commit."""

    records: list[QueueRecord]
    position: object = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload the store refused, kept with the reason so an operator can inspect or replay it."""

    value: bytes
    reason: str
    at_ms: int


@dataclass(slots=True)
class PartitionLag:
    """Unconsumed backlog of one partition for one consumer group."""

    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(slots=True)
class QueueStats:
    """What ``logflow status`` and ``/health`` show about the queue."""

    kind: str
    healthy: bool
    detail: str = ""
    partitions: list[PartitionLag] = field(default_factory=list)
    backlog_bytes: int | None = None
    dead_letters: int = 0


@dataclass(slots=True)
class DeadLetterBatch:
    """Dead letters read by a cursor. ``position`` is opaque to callers: pass the batch to commit."""

    letters: list[DeadLetter]
    position: object = None


class DeadLetterCursor(Protocol):
    """One replay group's way through the dead letters, oldest first (per partition on Kafka).

    It starts where the group last committed and ends where the dead letters ended when the
    cursor was opened: a letter refused again while it is being replayed waits for the next
    replay instead of going round in a loop. One cursor per group at a time; not thread-safe.
    """

    @property
    def pending(self) -> int:
        """Letters from the group's committed position to the end, as counted when opened."""
        ...

    def read(self, max_letters: int) -> DeadLetterBatch | None:
        """Up to ``max_letters`` letters after the previous read; None once the end is reached."""
        ...

    def commit(self, batch: DeadLetterBatch) -> None:
        """Durably mark ``batch`` (and everything before it) as replayed for the group."""
        ...

    def close(self) -> None:
        """Release the group; uncommitted letters are read again by the next cursor."""
        ...


class QueueConsumer(Protocol):
    """One member of a consumer group. Not thread-safe: one consumer per processor loop."""

    def poll(self, max_records: int, timeout_s: float) -> ConsumedBatch | None:
        """Up to ``max_records`` records after the last committed ones; None if none came in time."""
        ...

    def commit(self, batch: ConsumedBatch) -> None:
        """Mark ``batch`` (and everything before it) done. Only call after the store has it."""
        ...

    def rewind(self) -> None:
        """Forget uncommitted progress: the next poll starts again after the last commit."""
        ...

    def close(self) -> None:
        """Leave the group; uncommitted records go to another member or to the next start."""
        ...


class EventQueue(Protocol):
    """A durable, ordered log of events between ingest and the processors.

    ``publish`` returns only once every record is durable (fsynced to disk, or acknowledged by
    all in-sync Kafka replicas); if it raises, none of the records may be reported as accepted.
    """

    kind: str

    def publish(self, records: Sequence[QueueRecord]) -> None:
        """Durably append ``records``. Raises QueueFull, StorageFull or BackendUnavailable."""
        ...

    def consumer(self, group: str) -> QueueConsumer:
        """A consumer in ``group``; members of one group share the work."""
        ...

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Durably keep payloads the store refused, with their reason."""
        ...

    def read_dead_letters(self, limit: int) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        ...

    def dead_letter_cursor(self, group: str) -> DeadLetterCursor:
        """A cursor over the dead letters ``group`` has not committed yet (for replaying them)."""
        ...

    def stats(self, group: str) -> QueueStats:
        """Health, per-partition lag of ``group`` and dead-letter count."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...
