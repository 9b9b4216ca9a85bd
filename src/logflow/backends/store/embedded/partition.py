"""One day of events in one SQLite file: idempotent batch writes and the per-partition queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from logflow.domain.events import LogEvent
from logflow.domain.ids import ulid_ms
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter

from . import rollup
from .blocks import BLOCK_EVENTS, BlockReader, id_hash
from .layout import DAY_US, MS_US, SEQ_BITS, SEQ_MASK, rid_bounds, ts_of_rid
from .nearby import StoredNearby, scan_nearby
from .prepare import ID, LEVEL, SERVICE, STAMP, TS, Item, blocks_of, documents_of
from .sql import ERRORS_ONLY, SCHEMA, Where, build_where, service_token

_CHUNK = 500
# Bumped whenever the partition layout changes; checked on every open. Format 5 writes blocks of
# JSON lines and has no (svc, level) index; this version reads format 4 too, and upgrades a
# format 4 file the first time it writes to it (a format 4 reader would misread the new blocks).
STORE_FORMAT = 5
READABLE_FORMATS = (4, 5)
ROW_COLUMNS = "e.rid, e.level, e.svc, e.blk, e.slot"


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the processor commits its queue offset, so even a power
    # loss cannot drop events the queue already forgot.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-16000")
    conn.execute("PRAGMA temp_store=MEMORY")
    # Checkpointed WAL space is reused, but cap what stays on disk after a burst: one write of
    # 10,000 events needs ~2-4 MiB of WAL, and every day partition keeps its own WAL file.
    conn.execute("PRAGMA journal_size_limit=4194304")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if create and (version == 0 or version in READABLE_FORMATS):
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={STORE_FORMAT}")
        version = STORE_FORMAT
    if version not in READABLE_FORMATS:
        conn.close()
        raise sqlite3.DatabaseError(
            f"{path.name} is in store format {version} but this LogFlow reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}; "
            "it is skipped by searches: move it out of the store directory"
        )
    return conn


class Names:
    """Service and host names as small per-partition integers (rows and indexes stay small)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ids: dict[tuple[str, str], int] = {}
        self._names: dict[int, str] = {}
        self.reload()

    def reload(self) -> None:
        for id_, kind, name in self._conn.execute("SELECT id, kind, name FROM names"):
            self._ids[(kind, name)] = id_
            self._names[id_] = name

    def id_for(self, kind: str, name: str) -> int:
        """The id of ``name``, created if new (writer only, inside its transaction)."""
        key = (kind, name)
        found = self._ids.get(key)
        if found is None:
            cursor = self._conn.execute("INSERT INTO names(kind, name) VALUES (?, ?)", key)
            found = self._ids[key] = int(cursor.lastrowid or 0)
            self._names[found] = name
        return found

    def ids(self, kind: str, names: tuple[str, ...]) -> list[int]:
        missing = [n for n in names if (kind, n) not in self._ids]
        if missing:
            self.reload()  # the writer (another process) may have added names since
        return [self._ids[(kind, n)] for n in names if (kind, n) in self._ids]

    def name(self, id_: int) -> str:
        if id_ not in self._names:
            self.reload()
        return self._names.get(id_, "")


class PartitionWriter:
    """The single writer of one partition file (owned by the processor)."""

    def __init__(self, path: Path, day: int) -> None:
        self.day = day
        self.conn = connect(path, create=True)
        self.names = Names(self.conn)
        self.reader = BlockReader(self.conn)
        top = self.conn.execute("SELECT max(rid) FROM events").fetchone()[0]
        # Everything above this row id is free; only older timestamps need a collision probe.
        self._high_water: int = -1 if top is None else int(top)
        next_blk = self.conn.execute("SELECT max(blk) FROM blocks").fetchone()[0]
        self._next_blk = 1 if next_blk is None else int(next_blk) + 1

    def _existing_ids(self, items: Sequence[Item], nearby: StoredNearby) -> set[str]:
        """Ids already stored: candidates by hash, confirmed against the stored document.

        An id that is a ULID of the event's own millisecond can only be stored within that
        millisecond's row ids (scanned into ``nearby``, or else looked up), and not at all if they are all
        above the high-water mark: fresh events in time order cost no lookup. Other ids go
        through the id index.
        """
        by_hash: dict[int, set[str]] = {}
        found: set[str] = set()
        for event_id, hashed, ms, ts, *_ in items:
            if ms is not None and ms == ts // MS_US:
                bounds = rid_bounds(self.day, ms * MS_US, (ms + 1) * MS_US)
                if bounds is None or bounds[0] > self._high_water:
                    continue  # nothing is stored in that millisecond yet
                lo, hi = bounds
                if nearby.covers(lo):
                    candidates: Iterable[tuple[int, int, int]] = nearby.in_time_ids.get(lo, [])
                else:
                    candidates = self.conn.execute(
                        "SELECT id_hash, blk, slot FROM events WHERE rid BETWEEN ? AND ? AND id_hash = ? "
                        "AND id_in_time = 1", (lo, hi, hashed))
                if any(h == hashed and self.reader.doc(blk, slot).get("i") == event_id for h, blk, slot in candidates):
                    found.add(event_id)
            else:
                by_hash.setdefault(hashed, set()).add(event_id)
        hashes = list(by_hash)
        for i in range(0, len(hashes), _CHUNK):
            chunk = hashes[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id_hash, blk, slot FROM events WHERE id_hash IN ({marks}) AND id_in_time = 0"
            for hashed, blk, slot in self.conn.execute(sql, chunk):
                stored_id = self.reader.doc(blk, slot).get("i")
                if stored_id in by_hash[hashed]:
                    found.add(stored_id)
        return found

    def _next_free(self, base: int, taken: dict[int, int], nearby: StoredNearby) -> int:
        """The first free row id at or after ``base`` (the event's microsecond, seq 0).

        ``taken`` maps a microsecond's base to the next row id to try; once a microsecond is full
        it points past it, so a flood of events sharing one timestamp walks each full microsecond
        once per batch, not once per event.
        """
        start = base
        while True:
            nxt = taken.get(base)
            if nxt is None:
                if base > self._high_water:
                    nxt = base
                elif nearby.covers(base):
                    top = nearby.top_of_us.get(base)
                    nxt = base if top is None else top + 1
                else:  # a flood pushed past the scanned milliseconds
                    top = self.conn.execute(
                        "SELECT max(rid) FROM events WHERE rid BETWEEN ? AND ?", (base, base + SEQ_MASK)
                    ).fetchone()[0]
                    nxt = base if top is None else int(top) + 1
            if nxt - base <= SEQ_MASK:
                taken[base] = nxt + 1
                if start != base:
                    taken[start] = nxt + 1
                return nxt
            # This microsecond is full: continue in the one ``nxt`` points into (at least the next).
            following = max(base + SEQ_MASK + 1, (nxt >> SEQ_BITS) << SEQ_BITS)
            taken[base] = following
            base = following

    def write(self, items: Sequence[Item], blocks: Sequence[bytes]) -> tuple[int, int]:
        """Insert events not yet stored; returns (stored, duplicates). One transaction.

        ``blocks`` holds the items' documents, BLOCK_EVENTS per block in item order (see prepare.py).
        """
        # The common case, a batch newer than everything stored: every millisecond it touches
        # starts above the high-water mark, so no stored row can be near it or share its ids.
        oldest_ms = min(item[TS] for item in items) // MS_US
        if (oldest_ms * MS_US - self.day * DAY_US) << SEQ_BITS > self._high_water:
            nearby = StoredNearby()
            existing = self._existing_ids([item for item in items if item[STAMP] != item[TS] // MS_US], nearby)
        else:
            nearby = scan_nearby(self.conn, self.day, self._high_water, [item[TS] for item in items])
            existing = self._existing_ids(items, nearby)
        fresh: list[Item] = []
        kept: list[int] = []  # indexes of the fresh items
        seen: set[str] = set()
        for index, item in enumerate(items):
            event_id = item[ID]
            if event_id not in existing and event_id not in seen:
                seen.add(event_id)
                fresh.append(item)
                kept.append(index)
        duplicates = len(items) - len(fresh)
        if not fresh:
            return 0, duplicates
        if duplicates:  # rare (replays): the blocks must hold exactly the stored events, in order
            documents = documents_of(blocks)
            blocks = blocks_of([documents[index] for index in kept])
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            first_blk = self._next_blk
            rows, fts = self._rows(fresh, first_blk, nearby)
            conn.executemany("INSERT INTO blocks VALUES (?, ?)", enumerate(blocks, first_blk))
            conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO events_fts(rowid, tokens) VALUES (?,?)", fts)
            rollup.record(conn, [(item[TS], item[LEVEL], item[SERVICE]) for item in fresh])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.names = Names(conn)  # drop ids created by the rolled-back transaction
            raise
        self._next_blk = first_blk + len(blocks)
        self._high_water = max(self._high_water, max(int(r[0]) for r in rows))
        return len(rows), duplicates

    def _rows(self, items: list[Item], first_blk: int, nearby: StoredNearby) -> tuple[
            list[tuple[Any, ...]], list[tuple[int, str]]]:
        rows: list[tuple[Any, ...]] = []
        fts: list[tuple[int, str]] = []
        taken: dict[int, int] = {}
        id_for, next_free, high_water = self.names.id_for, self._next_free, self._high_water
        day_us = self.day * DAY_US
        services: dict[str, tuple[int, str]] = {}  # name -> (id, " " + its FTS token)
        hosts: dict[str | None, int] = {None: 0}
        for index, (_, hashed_id, ms, ts, level, service_name, host_name, hashed_msg, tokens) in enumerate(items):
            # layout.rid_base and ts_of_rid written out: this loop runs once per stored event.
            base = (ts - day_us) << SEQ_BITS
            if base > high_water and base not in taken:  # the common case: a free microsecond
                rid = base
                taken[base] = base + 1
            else:
                rid = next_free(base, taken, nearby)
            host = hosts.get(host_name)
            if host is None:
                host = hosts[host_name] = id_for("host", host_name)  # type: ignore[arg-type]
            service = services.get(service_name)
            if service is None:
                svc_id = id_for("service", service_name)
                service = services[service_name] = (svc_id, " " + service_token(svc_id))
            # In time only if the row also stayed in its millisecond (a flood can push it later).
            in_time = ms is not None and ms == ts // MS_US == (day_us + (rid >> SEQ_BITS)) // MS_US
            # Only error rows carry their message hash (for the top-errors index); others are
            # grouped by message rarely enough to hash on read (lf_msg_hash): 7 B/event less.
            blk, slot = divmod(index, BLOCK_EVENTS)
            rows.append((rid, hashed_id, level, service[0], host, hashed_msg, first_blk + blk, slot, int(in_time)))
            # The service token goes last, so it never sits between two words of a phrase.
            fts.append((rid, tokens + service[1]))
        return rows, fts

    def close(self) -> None:
        self.conn.close()


class PartitionReader:
    """Read side of one partition: a connection, its block cache and name dictionary."""

    def __init__(self, path: Path, day: int) -> None:
        self.day = day
        self.conn = connect(path, create=False)
        self.conn.execute("PRAGMA query_only=1")
        # Readers exist per API thread and partition: a small page cache each keeps RSS bounded.
        self.conn.execute("PRAGMA cache_size=-4000")
        self.blocks = BlockReader(self.conn)
        self.blocks.install()
        self.names = Names(self.conn)

    def where(self, flt: LogFilter, lo: int, hi: int, *, errors_index: bool = False) -> Where | None:
        return build_where(flt, lo, hi, self.names.ids, errors_index=errors_index)

    def event(self, row: tuple[Any, ...]) -> LogEvent:
        rid, level, svc, blk, slot = row
        doc = self.blocks.doc(blk, slot)
        return LogEvent(
            id=doc["i"], timestamp=ts_of_rid(rid, self.day), level=Level(level), service=self.names.name(svc),
            message=doc["m"], host=doc.get("h"), trace_id=doc.get("trace_id"), span_id=doc.get("span_id"),
            request_id=doc.get("request_id"), correlation_id=doc.get("correlation_id"),
            attributes=doc.get("a", {}), flags=doc.get("f", []),
        )

    def select(self, where: Where, *, limit: int, oldest_first: bool) -> list[LogEvent]:
        order = "ASC" if oldest_first else "DESC"
        sql = f"SELECT {ROW_COLUMNS} FROM {where.source}{where.sql()} ORDER BY {where.rid_column} {order} LIMIT ?"
        return [self.event(row) for row in self.conn.execute(sql, [*where.params, limit])]

    def get(self, event_id: str) -> LogEvent | None:
        hashed = id_hash(event_id)
        ms = ulid_ms(event_id)
        bounds = None if ms is None else rid_bounds(self.day, ms * MS_US, (ms + 1) * MS_US)
        if bounds is not None:
            # Ids LogFlow generated are found by their time (see PartitionWriter._existing_ids).
            sql = (f"SELECT {ROW_COLUMNS} FROM events e "
                   "WHERE e.rid BETWEEN ? AND ? AND e.id_hash = ? AND e.id_in_time = 1")
            found = self._confirmed(self.conn.execute(sql, (*bounds, hashed)), event_id)
            if found is not None:
                return found
        sql = f"SELECT {ROW_COLUMNS} FROM events e WHERE e.id_hash = ? AND e.id_in_time = 0"
        return self._confirmed(self.conn.execute(sql, (hashed,)), event_id)

    def _confirmed(self, rows: sqlite3.Cursor, event_id: str) -> LogEvent | None:
        for row in rows:
            event = self.event(row)
            if event.id == event_id:
                return event
        return None

    def count(self, where: Where, cap: int | None = None) -> int:
        if cap is None:
            sql = f"SELECT count(*) FROM {where.count_source}{where.sql()}"
            return int(self.conn.execute(sql, where.params).fetchone()[0])
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {where.count_source}{where.sql()} LIMIT ?)"
        return int(self.conn.execute(sql, [*where.params, cap]).fetchone()[0])

    def group_raw(self, flt: LogFilter, lo: int, hi: int, bucket_us: int | None) -> list[tuple[int, str, int, int]]:
        """(bucket start or 0, service, level, count) from the rows themselves."""
        where = self.where(flt, lo, hi)
        if where is None:
            return []
        if bucket_us is None:
            sql = f"SELECT 0, e.svc, e.level, count(*) FROM {where.source}{where.sql()} GROUP BY 2, 3"
            return [(b, self.names.name(s), lv, n) for b, s, lv, n in self.conn.execute(sql, where.params)]
        day_us = self.day * DAY_US
        bucket = f"(({day_us} + ({where.rid_column} >> {SEQ_BITS})) / {bucket_us}) * {bucket_us}"
        sql = f"SELECT {bucket}, '', e.level, count(*) FROM {where.source}{where.sql()} GROUP BY 1, 3"
        return list(self.conn.execute(sql, where.params))

    def group_rollup(self, flt: LogFilter, first_minute: int, last_minute: int,
                     bucket_minutes: int | None) -> list[tuple[int, str, int, int]]:
        """The same grouping from the rollups, for whole minutes [first, last]."""
        return rollup.grouped(self.conn, flt, first_minute, last_minute, bucket_minutes)

    def top_messages(self, where: Where, limit: int) -> list[tuple[int, str, int, int]]:
        """(message hash, service, count, newest row id) of the most frequent messages."""
        # Error rows carry their hash, and then the errors index alone answers (no table reads).
        hashed = "e.msg_hash" if ERRORS_ONLY in where.conditions else "coalesce(e.msg_hash, lf_msg_hash(e.blk, e.slot))"
        sql = (f"SELECT {hashed}, e.svc, count(*), max({where.rid_column}) FROM {where.source}{where.sql()} "
               "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?")
        rows = self.conn.execute(sql, [*where.params, limit]).fetchall()
        return [(int(h), self.names.name(svc), int(n), int(top)) for h, svc, n, top in rows]

    def message_at(self, rid: int) -> str:
        row = self.conn.execute(f"SELECT {ROW_COLUMNS} FROM events e WHERE e.rid = ?", (rid,)).fetchone()
        return "" if row is None else self.event(row).message

    def documents(self) -> int:
        return rollup.documents(self.conn)

    def close(self) -> None:
        self.conn.close()
