"""The log-store port: write events idempotently, search them, and aggregate them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from logflow.domain.events import LogEvent, RecordEncoder
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest

# Like Elasticsearch's default track_total_hits: counting stops here and the total is a lower bound.
TOTAL_HITS_CAP = 10_000


@dataclass(slots=True)
class Rejected:
    """An event the store refused for good (retrying cannot help); it goes to the dead letters."""

    event: LogEvent
    reason: str


@dataclass(slots=True)
class WriteResult:
    """Outcome of one ``write``: new events stored, replays skipped, events refused."""

    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(slots=True)
class PreparedBatch:
    """Queue payloads decoded and made ready for one store's write, possibly in a helper process.

    ``undecodable`` holds (index in the batch, reason) for payloads that are not events (they go
    to the dead letters); ``data`` is the store's own form, opaque to the processor, made only of
    what ``marshal`` carries (tuples, lists, dicts, str, bytes, numbers, None): it crosses from
    the helper process that way.
    """

    undecodable: list[tuple[int, str]]
    data: Any


@dataclass(slots=True)
class SearchPage:
    """A page of events. ``total_exact`` is False when counting stopped at TOTAL_HITS_CAP."""

    total: int
    total_exact: bool
    events: list[LogEvent]


@dataclass(frozen=True, slots=True)
class GroupCount:
    """Number of events of one service at one level."""

    service: str
    level: Level
    count: int


@dataclass(frozen=True, slots=True)
class BucketCount:
    """Number of events at one level in the time bucket starting at ``start_us``."""

    start_us: int
    level: Level
    count: int


@dataclass(frozen=True, slots=True)
class MessageCount:
    """How often one exact message occurred, and when last."""

    message: str
    service: str
    count: int
    last_seen_us: int


@dataclass(slots=True)
class StoreStats:
    """What ``logflow status`` shows about the store."""

    kind: str
    healthy: bool
    detail: str = ""
    documents: int = 0
    bytes_on_disk: int = 0
    partitions: int = 0


class LogStore(Protocol):
    """Where processed events live. Every implementation answers queries with the same meaning.

    ``write`` is idempotent by event id: writing an event whose id is already stored counts it
    as a duplicate and changes nothing. Aggregations honour every part of the filter.
    """

    kind: str

    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        """Store events; raises BackendUnavailable when nothing could be written (retry later)."""
        ...

    def search(self, request: SearchRequest) -> SearchPage:
        """Matching events ordered by timestamp (newest first unless asked otherwise)."""
        ...

    def get(self, event_id: str) -> LogEvent | None:
        """The event with this id, or None."""
        ...

    def count(self, flt: LogFilter) -> int:
        """Exact number of matching events."""
        ...

    def counts_by_service_level(self, flt: LogFilter) -> list[GroupCount]:
        """Matching events grouped by (service, level); groups with no events are omitted."""
        ...

    def histogram(self, flt: LogFilter, interval_s: int) -> list[BucketCount]:
        """Matching events per level in buckets aligned to multiples of ``interval_s`` since the epoch."""
        ...

    def top_messages(self, flt: LogFilter, limit: int) -> list[MessageCount]:
        """The most frequent exact messages among matching events, most frequent first."""
        ...

    def drop_before(self, cutoff_us: int) -> int:
        """Retention: delete whole time partitions that end at or before ``cutoff_us``; returns how many."""
        ...

    def refresh(self) -> None:
        """Make everything written so far visible to searches (a no-op where that is automatic)."""
        ...

    def stats(self) -> StoreStats:
        """Health, document count and size."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class PreparingStore(LogStore, Protocol):
    """A store whose CPU-bound share of a write is a pure function of the queue payloads.

    The processor then runs ``preparer()`` for the next batch while this batch is written, so
    decoding and encoding overlap the database work. ``write_prepared`` has the same guarantees
    as ``write``. With ``concurrent_writes`` it may be called from several threads at once, and
    the processor keeps a second batch writing while the first one finishes (an engine behind a
    network round trip); without, one at a time. ``prepare_in_helper`` says where preparing
    overlaps the write: in a helper process when the write itself keeps this process's GIL busy
    (an in-process database), in the processor's own thread when the write waits on a socket.
    """

    concurrent_writes: bool
    prepare_in_helper: bool

    def preparer(self) -> Callable[[list[bytes]], PreparedBatch]:
        """A module-level function that prepares one batch: the helper imports it by name, so it
        may use no state of this store."""
        ...

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        """Store a batch made by ``preparer()``; raises BackendUnavailable like ``write``."""
        ...


@runtime_checkable
class DocumentEncodingStore(LogStore, Protocol):
    """A store that wants events on the queue already in its own document form (wire format 3).

    The ingest pipeline holds every event's fields when it encodes them for the queue; building
    the store's document there saves the processor decoding the queue body and encoding the
    document again (two JSON passes per event). The processor's ``preparer()`` then copies the
    documents through. Every reader of this version reads format 3 (``read_wire``), so a
    process with another store gets the events back from it; a processor of an earlier version
    does not (it dead-letters them): upgrade the processors before the API.
    """

    def record_encoder(self) -> RecordEncoder:
        """The function ingest encodes every event with, instead of ``events.encode_record``."""
        ...
