"""EmbeddedStore: the LogStore port over day partitions (see layout.py for the row-id scheme)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.base import (
    TOTAL_HITS_CAP,
    BucketCount,
    GroupCount,
    MessageCount,
    PreparedBatch,
    SearchPage,
    StoreStats,
    WriteResult,
)
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest

from .layout import DAY_US, MINUTE_US, SEQ_BITS, day_from_name, partition_name, rid_bounds, ts_of_rid
from .partition import PartitionReader, PartitionWriter
from .prepare import PreparedDay, prepare_events, prepare_payloads
from .sql import is_plain

# Level(n) goes through Enum's lookup machinery; a 1-minute histogram over a day makes ~40k of them.
_LEVELS: dict[int, Level] = {int(level): level for level in Level}

# Plain dicts, not Counters: a day's 1-minute histogram merges ~10 k keys, and Counter's
# __missing__ is a Python call per new key.
Grouped = dict[tuple[int, str, int], int]
log = logging.getLogger(__name__)


class EmbeddedStore:
    """Day-partitioned SQLite + FTS5 store. One process writes (the processor); any number read."""

    kind = "embedded"
    concurrent_writes = False  # one SQLite writer
    prepare_in_helper = True  # sqlite3 takes the GIL back for every row: threads cannot overlap it

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._writers: dict[int, PartitionWriter] = {}
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._all_readers: list[dict[int, PartitionReader]] = []
        self._warned: set[int] = set()

    # -- partitions -----------------------------------------------------------------------
    def _days(self) -> list[int]:
        days = (day_from_name(name) for name in os.listdir(self.directory))
        return sorted(d for d in days if d is not None)

    def _reader(self, day: int) -> PartitionReader:
        readers: dict[int, PartitionReader] | None = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
            with self._write_lock:
                self._all_readers.append(readers)
        reader = readers.get(day)
        if reader is None:
            reader = readers[day] = PartitionReader(self.directory / partition_name(day), day)
        return reader

    def _scan(self, flt: LogFilter, newest_first: bool = True) -> Iterator[tuple[PartitionReader, int, int]]:
        """(reader, lo rid, hi rid) for every partition overlapping the filter's time range."""
        days = self._days()
        readers: dict[int, PartitionReader] = getattr(self._local, "readers", {})
        for gone in set(readers) - set(days):
            readers.pop(gone).close()
        for day in reversed(days) if newest_first else days:
            bounds = rid_bounds(day, flt.start_us, flt.end_us)
            if bounds is None:
                continue
            try:
                reader = self._reader(day)
            except sqlite3.DatabaseError as exc:
                # One unreadable partition must not take every query down; stats() reports it.
                if day not in self._warned:
                    self._warned.add(day)
                    log.error("embedded store: skipping partition: %s", exc)
                continue
            yield reader, bounds[0], bounds[1]

    # -- writes ---------------------------------------------------------------------------
    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        return self.write_prepared(PreparedBatch(undecodable=[], data=prepare_events(events)))

    def preparer(self) -> Callable[[list[bytes]], PreparedBatch]:
        return prepare_payloads

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        days: list[PreparedDay] = batch.data
        result = WriteResult()
        with self._write_lock:
            for day, items, blocks in days:
                writer = self._writers.get(day)
                if writer is None:
                    writer = self._writers[day] = PartitionWriter(self.directory / partition_name(day), day)
                try:
                    stored, duplicates = writer.write(items, blocks)
                except sqlite3.DatabaseError as exc:  # disk full, I/O error, bad file: retry later
                    raise BackendUnavailable(f"embedded store write failed: {exc}") from exc
                result.stored += stored
                result.duplicates += duplicates
        return result

    # -- reads ----------------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchPage:
        wanted = request.offset + request.limit
        events: list[LogEvent] = []
        total = 0
        # Without text, hosts or fields the rollups count whole minutes: no row is read.
        plain = is_plain(request.filter)
        for reader, lo, hi in self._scan(request.filter, newest_first=not request.oldest_first):
            where = reader.where(request.filter, lo, hi)
            if where is None:
                continue
            if len(events) < wanted:
                events += reader.select(where, limit=wanted - len(events), oldest_first=request.oldest_first)
            if not plain and total <= TOTAL_HITS_CAP:
                total += reader.count(where, cap=TOTAL_HITS_CAP + 1 - total)
        if plain:
            total = self.count(request.filter)
        exact = total <= TOTAL_HITS_CAP
        return SearchPage(total=min(total, TOTAL_HITS_CAP), total_exact=exact, events=events[request.offset :])

    def get(self, event_id: str) -> LogEvent | None:
        for day in reversed(self._days()):
            event = self._reader(day).get(event_id)
            if event is not None:
                return event
        return None

    def _grouped(self, flt: LogFilter, bucket_us: int | None) -> Grouped:
        """Counts per (bucket, service, level); rollups for whole minutes, rows for the edges."""
        totals: Grouped = {}
        use_rollup = is_plain(flt) and (bucket_us is None or bucket_us % MINUTE_US == 0)
        for reader, lo, hi in self._scan(flt):
            day = reader.day
            pieces: list[tuple[int, int]] = [(lo, hi)]
            if use_rollup:
                start = day * DAY_US + (lo >> SEQ_BITS)
                end = day * DAY_US + ((hi + 1) >> SEQ_BITS)
                first_minute = -(-start // MINUTE_US)
                end_minute = end // MINUTE_US
                if first_minute < end_minute:
                    minutes = None if bucket_us is None else bucket_us // MINUTE_US
                    for bucket, service, level, n in reader.group_rollup(flt, first_minute, end_minute - 1, minutes):
                        key = (bucket, service, level)
                        totals[key] = totals.get(key, 0) + n
                    pieces = []
                    base = day * DAY_US
                    if start < first_minute * MINUTE_US:
                        pieces.append((lo, ((first_minute * MINUTE_US - base) << SEQ_BITS) - 1))
                    if end_minute * MINUTE_US < end:
                        pieces.append(((end_minute * MINUTE_US - base) << SEQ_BITS, hi))
            for piece_lo, piece_hi in pieces:
                for bucket, service, level, n in reader.group_raw(flt, piece_lo, piece_hi, bucket_us):
                    key = (bucket, service, level)
                    totals[key] = totals.get(key, 0) + n
        return totals

    def count(self, flt: LogFilter) -> int:
        if is_plain(flt):
            return sum(self._grouped(flt, None).values())
        total = 0
        for reader, lo, hi in self._scan(flt):
            where = reader.where(flt, lo, hi)
            total += 0 if where is None else reader.count(where)
        return total

    def counts_by_service_level(self, flt: LogFilter) -> list[GroupCount]:
        by_group: Counter[tuple[str, int]] = Counter()
        for (_, service, level), n in self._grouped(flt, None).items():
            by_group[(service, level)] += n
        return [GroupCount(s, _LEVELS[lv], n) for (s, lv), n in sorted(by_group.items()) if n]

    def histogram(self, flt: LogFilter, interval_s: int) -> list[BucketCount]:
        by_bucket: dict[tuple[int, int], int] = {}
        for (bucket, _, level), n in self._grouped(flt, interval_s * 1_000_000).items():
            by_bucket[(bucket, level)] = by_bucket.get((bucket, level), 0) + n
        return [BucketCount(b, _LEVELS[lv], n) for (b, lv), n in sorted(by_bucket.items()) if n]

    def top_messages(self, flt: LogFilter, limit: int) -> list[MessageCount]:
        counts: Counter[tuple[int, str]] = Counter()
        newest: dict[tuple[int, str], tuple[int, PartitionReader, int]] = {}
        for reader, lo, hi in self._scan(flt):
            where = reader.where(flt, lo, hi, errors_index=True)
            if where is None:
                continue
            # Each partition's top list is cut at 20x the limit: exact for the few days a query spans.
            for msg_hash, service, n, top in reader.top_messages(where, max(limit * 20, 200)):
                key = (msg_hash, service)
                counts[key] += n
                seen_us = ts_of_rid(top, reader.day)
                if key not in newest or seen_us > newest[key][0]:
                    newest[key] = (seen_us, reader, top)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -newest[kv[0]][0]))[:limit]
        # Only the winners' texts are read (each costs a block decompression).
        return [
            MessageCount(newest[key][1].message_at(newest[key][2]), key[1], n, newest[key][0]) for key, n in ranked
        ]

    # -- maintenance ----------------------------------------------------------------------
    def drop_before(self, cutoff_us: int) -> int:
        dropped = 0
        with self._write_lock:
            for day in self._days():
                if (day + 1) * DAY_US > cutoff_us:
                    continue
                writer = self._writers.pop(day, None)
                if writer is not None:
                    writer.close()
                base = self.directory / partition_name(day)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{base}{suffix}").unlink(missing_ok=True)
                dropped += 1
        return dropped

    def refresh(self) -> None:
        """Nothing to do: a committed SQLite transaction is visible to the next read."""

    def stats(self) -> StoreStats:
        documents = 0
        size = 0
        days = self._days()
        try:
            for day in days:
                documents += self._reader(day).documents()
                for suffix in ("", "-wal"):
                    path = Path(f"{self.directory / partition_name(day)}{suffix}")
                    size += path.stat().st_size if path.exists() else 0
        except sqlite3.Error as exc:
            return StoreStats(kind=self.kind, healthy=False, detail=str(exc))
        return StoreStats(kind=self.kind, healthy=True, documents=documents, bytes_on_disk=size, partitions=len(days))

    def close(self) -> None:
        with self._write_lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
            for readers in self._all_readers:
                for reader in readers.values():
                    reader.close()
                readers.clear()
