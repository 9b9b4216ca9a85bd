"""One day of events in one SQLite file: idempotent batch writes and the per-partition queries."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import orjson

from logflow.domain.events import CORRELATION_FIELDS, LogEvent
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter
from logflow.domain.text import tokenize

from .layout import MINUTE_US, SEQ_MASK, rid_base, ts_of_rid
from .sql import SCHEMA, Where, build_where

_ID_CHUNK = 500
ROW_COLUMNS = "e.rid, e.id, e.level, e.service, e.host, e.message, e.extra"


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the processor commits its queue offset, so even a power
    # loss cannot drop events the queue already forgot.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-16000")
    conn.execute("PRAGMA temp_store=MEMORY")
    if create:
        conn.executescript(SCHEMA)
    return conn


def _extra(event: LogEvent) -> str | None:
    doc: dict[str, object] = {}
    for name in CORRELATION_FIELDS:
        value = getattr(event, name)
        if value is not None:
            doc[name] = value
    if event.attributes:
        doc["a"] = event.attributes
    if event.flags:
        doc["f"] = event.flags
    return orjson.dumps(doc).decode() if doc else None


def row_to_event(row: tuple[object, ...], day: int) -> LogEvent:
    rid, event_id, level, service, host, message, extra = row
    assert isinstance(rid, int) and isinstance(level, int)
    doc = orjson.loads(extra) if isinstance(extra, str) else {}
    return LogEvent(
        id=str(event_id), timestamp=ts_of_rid(rid, day), level=Level(level), service=str(service),
        message=str(message), host=host if isinstance(host, str) else None,
        trace_id=doc.get("trace_id"), span_id=doc.get("span_id"), request_id=doc.get("request_id"),
        correlation_id=doc.get("correlation_id"), attributes=doc.get("a", {}), flags=doc.get("f", []),
    )


class PartitionWriter:
    """The single writer of one partition file (owned by the processor)."""

    def __init__(self, path: Path, day: int) -> None:
        self.day = day
        self.conn = connect(path, create=True)
        top = self.conn.execute("SELECT max(rid) FROM events").fetchone()[0]
        # Everything above this row id is free; only older timestamps need a collision probe.
        self._high_water: int = -1 if top is None else int(top)

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i : i + _ID_CHUNK]
            sql = f"SELECT id FROM events WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(row[0] for row in self.conn.execute(sql, chunk))
        return found

    def _next_free(self, base: int, taken: dict[int, int]) -> int:
        nxt = taken.get(base)
        if nxt is None:
            if base > self._high_water:
                nxt = base
            else:
                top = self.conn.execute(
                    "SELECT max(rid) FROM events WHERE rid BETWEEN ? AND ?", (base, base + SEQ_MASK)
                ).fetchone()[0]
                nxt = base if top is None else int(top) + 1
        if nxt - base > SEQ_MASK:  # 65,536 events in one microsecond: spill into the next one
            return self._next_free(base + SEQ_MASK + 1, taken)
        taken[base] = nxt + 1
        return nxt

    def write(self, events: Sequence[LogEvent]) -> tuple[int, int]:
        """Insert events not yet stored; returns (stored, duplicates). One transaction."""
        existing = self._existing_ids([e.id for e in events])
        rows: list[tuple[object, ...]] = []
        fts: list[tuple[int, str]] = []
        rollup: Counter[tuple[int, str, int]] = Counter()
        taken: dict[int, int] = {}
        seen: set[str] = set()
        duplicates = 0
        for event in events:
            if event.id in existing or event.id in seen:
                duplicates += 1
                continue
            seen.add(event.id)
            rid = self._next_free(rid_base(event.timestamp, self.day), taken)
            rows.append((rid, event.id, int(event.level), event.service, event.host, event.message, _extra(event)))
            fts.append((rid, " ".join(tokenize(event.message))))
            rollup[(event.timestamp // MINUTE_US, event.service, int(event.level))] += 1
        if not rows:
            return 0, duplicates
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO events_fts(rowid, tokens) VALUES (?,?)", fts)
            conn.executemany(
                "INSERT INTO rollup VALUES (?,?,?,?) "
                "ON CONFLICT(minute, service, level) DO UPDATE SET count = count + excluded.count",
                [(m, s, lv, n) for (m, s, lv), n in rollup.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._high_water = max(self._high_water, max(r[0] for r in rows))  # type: ignore[type-var]
        return len(rows), duplicates

    def close(self) -> None:
        self.conn.close()


def select_events(
    conn: sqlite3.Connection, day: int, where: Where, *, limit: int, oldest_first: bool
) -> list[LogEvent]:
    order = "ASC" if oldest_first else "DESC"
    sql = f"SELECT {ROW_COLUMNS} FROM {where.source}{where.sql()} ORDER BY {where.rid_column} {order} LIMIT ?"
    return [row_to_event(row, day) for row in conn.execute(sql, [*where.params, limit])]


def count_raw(conn: sqlite3.Connection, where: Where, cap: int | None = None) -> int:
    if cap is None:
        sql = f"SELECT count(*) FROM {where.source}{where.sql()}"
        return int(conn.execute(sql, where.params).fetchone()[0])
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {where.source}{where.sql()} LIMIT ?)"
    return int(conn.execute(sql, [*where.params, cap]).fetchone()[0])


def group_raw(
    conn: sqlite3.Connection, day: int, flt: LogFilter, lo: int, hi: int, bucket_us: int | None
) -> list[tuple[int, str, int, int]]:
    """(bucket start or 0, service, level, count) from the rows themselves."""
    where = build_where(flt, lo, hi, plain_levels_index=False)
    if bucket_us is None:
        sql = f"SELECT 0, e.service, e.level, count(*) FROM {where.source}{where.sql()} GROUP BY 2, 3"
        return list(conn.execute(sql, where.params))
    day_us = day * 86_400_000_000
    bucket = f"(({day_us} + ({where.rid_column} >> 16)) / {bucket_us}) * {bucket_us}"
    sql = f"SELECT {bucket}, '', e.level, count(*) FROM {where.source}{where.sql()} GROUP BY 1, 3"
    return list(conn.execute(sql, where.params))


def group_rollup(
    conn: sqlite3.Connection, flt: LogFilter, first_minute: int, last_minute: int, bucket_minutes: int | None
) -> list[tuple[int, str, int, int]]:
    """The same grouping from the per-minute rollups, for whole minutes [first, last]."""
    conditions = ["minute BETWEEN ? AND ?"]
    params: list[object] = [first_minute, last_minute]
    if flt.services:
        conditions.append(f"service IN ({','.join('?' * len(flt.services))})")
        params += list(flt.services)
    if flt.levels:
        conditions.append(f"level IN ({','.join('?' * len(flt.levels))})")
        params += [int(v) for v in flt.levels]
    where = " AND ".join(conditions)
    if bucket_minutes is None:
        sql = f"SELECT 0, service, level, sum(count) FROM rollup WHERE {where} GROUP BY 2, 3"
    else:
        bucket = f"(minute / {bucket_minutes}) * {bucket_minutes * MINUTE_US}"
        sql = f"SELECT {bucket}, '', level, sum(count) FROM rollup WHERE {where} GROUP BY 1, 3"
    return list(conn.execute(sql, params))
