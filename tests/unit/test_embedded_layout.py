"""Embedded-store layout choices that the store contract cannot see: which index answers what.

The contract suite proves the answers; these tests pin the plans and index contents the disk and
latency figures in BENCHMARKS.md depend on, on a real partition file.
"""

from __future__ import annotations

import itertools
import sqlite3
import struct
from pathlib import Path

import zstandard

from logflow.backends.store.embedded import EmbeddedStore
from logflow.backends.store.embedded.blocks import BlockCodec
from logflow.backends.store.embedded.layout import day_of, partition_name
from logflow.backends.store.embedded.partition import PartitionReader
from logflow.domain.events import LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import ERROR_LEVELS, Level
from logflow.domain.query import LogFilter, SearchRequest, parse_text_query

BASE = 1_710_028_800_000_000  # 2024-03-10T00:00:00Z in µs


def _event(event_id: str, ts: int, level: Level = Level.INFO, message: str = "ok") -> LogEvent:
    return LogEvent(id=event_id, timestamp=ts, level=level, service="pay", message=message)


def _reader(directory: Path) -> PartitionReader:
    day = day_of(BASE)
    return PartitionReader(directory / partition_name(day), day)


def test_only_ids_not_generated_by_logflow_enter_the_id_index(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    generated = [_event(new_ulid((BASE + i * 1000) // 1000), BASE + i * 1000) for i in range(30)]
    foreign = [_event(f"client-{i}", BASE + 50_000 + i) for i in range(4)]
    other_ms = [_event(new_ulid(BASE // 1000 - 1), BASE + 60_000)]
    store.write([*generated, *foreign, *other_ms])
    reader = _reader(tmp_path)
    indexed = reader.conn.execute("SELECT count(*) FROM events INDEXED BY events_id WHERE id_in_time = 0")
    assert indexed.fetchone()[0] == 5
    assert reader.conn.execute("SELECT count(*) FROM events WHERE id_in_time = 1").fetchone()[0] == 30
    store.close()


def test_top_errors_of_a_service_read_only_the_errors_index(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    store.write([_event(f"e{i}", BASE + i, level=(Level.INFO, Level.ERROR)[i % 2], message=f"m{i % 3}")
                 for i in range(40)])
    reader = _reader(tmp_path)
    assert reader.conn.execute("SELECT count(*) FROM events WHERE msg_hash IS NOT NULL").fetchone()[0] == 20
    where = reader.where(LogFilter(services=("pay",), levels=tuple(ERROR_LEVELS)), 0, 2**46, errors_index=True)
    assert where is not None
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)
    top = reader.top_messages(where, 10)
    reader.conn.set_trace_callback(None)
    assert sorted(n for _, _, n, _ in top) == [6, 7, 7]  # m0/m1/m2 among the 20 odd i
    plan = " ".join(str(row[3]) for row in reader.conn.execute(f"EXPLAIN QUERY PLAN {statements[-1]}"))
    assert "COVERING INDEX events_errors" in plan
    store.close()


def test_a_service_filter_reads_the_service_tokens_not_an_index(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    store.write([LogEvent(id=f"e{i}", timestamp=BASE + i, level=Level.INFO, service=("pay", "auth")[i % 2],
                          message=f"m{i}") for i in range(40)])
    reader = _reader(tmp_path)
    indexes = {name for (name,) in reader.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "events_svc_level" not in indexes  # 17 B/event that the service tokens replace
    where = reader.where(LogFilter(services=("auth",)), 0, 2**46)
    assert where is not None
    plan = " ".join(str(row[3]) for row in reader.conn.execute(
        f"EXPLAIN QUERY PLAN SELECT e.rid FROM {where.source}{where.sql()} ORDER BY {where.rid_column} DESC",
        where.params))
    assert "VIRTUAL TABLE INDEX" in plan and "TEMP B-TREE" not in plan  # newest first, straight from FTS5
    assert [e.message for e in reader.select(where, limit=3, oldest_first=False)] == ["m39", "m37", "m35"]
    assert reader.count(where) == 20
    store.close()


def _downgrade_to_format_4(path: Path) -> None:
    """Rewrite a partition as store format 4 wrote it: offset-table blocks and a (svc, level) index."""
    conn = sqlite3.connect(path)
    codec = zstandard.ZstdCompressor(level=5)
    plain = BlockCodec()
    for blk, data in conn.execute("SELECT blk, data FROM blocks").fetchall():
        docs = plain.decode(data)
        ends = list(itertools.accumulate(len(doc) for doc in docs))
        header = struct.pack(f"<I{len(ends)}I", len(ends), *ends)
        conn.execute("UPDATE blocks SET data = ? WHERE blk = ?", (codec.compress(header + b"".join(docs)), blk))
    conn.execute("CREATE INDEX events_svc_level ON events(svc, level)")
    conn.execute("PRAGMA user_version=4")
    conn.commit()
    conn.close()


def test_a_format_4_partition_is_read_and_upgraded_by_its_first_write(tmp_path: Path) -> None:
    old = [LogEvent(id=f"old-{i}", timestamp=BASE + i, level=Level.ERROR, service="pay", message=f"old {i}",
                    attributes={"n": i}) for i in range(700)]  # two blocks
    store = EmbeddedStore(tmp_path)
    store.write(old)
    store.close()
    path = tmp_path / partition_name(day_of(BASE))
    _downgrade_to_format_4(path)

    store = EmbeddedStore(tmp_path)
    assert store.get("old-650") == old[650]
    page = store.search(SearchRequest(filter=LogFilter(text=parse_text_query("old"), services=("pay",)), limit=5))
    assert [e.id for e in page.events] == ["old-699", "old-698", "old-697", "old-696", "old-695"]
    new = [LogEvent(id=f"new-{i}", timestamp=BASE + 1000 + i, level=Level.INFO, service="pay", message=f"new {i}")
           for i in range(10)]
    assert store.write(new).stored == 10
    store.close()

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events_svc_level'").fetchone()[0] == 0
    conn.close()
    store = EmbeddedStore(tmp_path)
    assert store.get("old-3") == old[3] and store.get("new-9") == new[9]
    assert store.count(LogFilter(services=("pay",))) == 710
    store.close()


def test_replays_behind_the_high_water_mark_cost_one_scan_per_cluster_of_milliseconds(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    # Close together (3 ms apart: one scan) and far apart (5 s: their own scans).
    times = [BASE + i * 3_000 for i in range(40)] + [BASE + 5_000_000 * k for k in range(2, 6)]
    first = [_event(new_ulid(ts // 1000), ts) for ts in times]
    assert store.write(first).stored == 44
    assert store.write([_event(new_ulid((BASE + 60_000_000) // 1000), BASE + 60_000_000)]).stored == 1
    # Same milliseconds, other ids: stored. The first batch again: duplicates, found by time.
    neighbours = [_event(new_ulid(ts // 1000), ts + 1) for ts in times[::2]]
    statements: list[str] = []
    writer = store._writers[day_of(BASE)]
    writer.conn.set_trace_callback(statements.append)
    result = store.write([*neighbours, *reversed(first)])
    writer.conn.set_trace_callback(None)
    assert (result.stored, result.duplicates) == (len(neighbours), 44)
    scans = [s for s in statements if "FROM events WHERE rid BETWEEN" in s]
    assert len(scans) == 5  # one for the 40 close milliseconds, one per far one
    assert not [s for s in statements if "max(rid)" in s]  # free row ids came from the same scans
    assert store.count(LogFilter()) == 45 + len(neighbours)
    store.close()


def test_a_sparse_late_batch_over_dense_stored_rows_falls_back_to_lookups(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    # 100 events in each of 20 milliseconds, then a newer one: the high-water mark moves past them.
    dense = [_event(new_ulid((BASE + i * 10) // 1000), BASE + i * 10) for i in range(2_000)]
    assert store.write(dense).stored == 2_000
    assert store.write([_event(new_ulid((BASE + 60_000_000) // 1000), BASE + 60_000_000)]).stored == 1
    late_fresh = _event(new_ulid((BASE + 5_005) // 1000), BASE + 5_005)
    statements: list[str] = []
    writer = store._writers[day_of(BASE)]
    writer.conn.set_trace_callback(statements.append)
    result = store.write([dense[500], late_fresh, dense[1_900]])
    writer.conn.set_trace_callback(None)
    assert (result.stored, result.duplicates) == (1, 2)
    # Two clusters (milliseconds 5 and 19); each scan stopped after 16 rows per event, then each
    # event was looked up on its own.
    assert len([s for s in statements if "LIMIT 33" in s or "LIMIT 17" in s]) == 2
    assert len([s for s in statements if "AND id_in_time = 1" in s]) == 3
    assert len([s for s in statements if "max(rid)" in s]) == 1
    assert store.get(late_fresh.id) == late_fresh
    assert store.count(LogFilter()) == 2_002
    store.close()
