"""Embedded-store layout choices that the store contract cannot see: which index answers what.

The contract suite proves the answers; these tests pin the plans and index contents the disk and
latency figures in BENCHMARKS.md depend on, on a real partition file.
"""

from __future__ import annotations

from pathlib import Path

from logflow.backends.store.embedded import EmbeddedStore
from logflow.backends.store.embedded.layout import day_of, partition_name
from logflow.backends.store.embedded.partition import PartitionReader
from logflow.domain.events import LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import ERROR_LEVELS, Level
from logflow.domain.query import LogFilter

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
    where = reader.where(LogFilter(services=("pay",), levels=tuple(ERROR_LEVELS)), 0, 2**46, plain_levels_index=False)
    assert where is not None
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)
    top = reader.top_messages(where, 10)
    reader.conn.set_trace_callback(None)
    assert sorted(n for _, _, n, _ in top) == [6, 7, 7]  # m0/m1/m2 among the 20 odd i
    plan = " ".join(str(row[3]) for row in reader.conn.execute(f"EXPLAIN QUERY PLAN {statements[-1]}"))
    assert "COVERING INDEX events_errors" in plan
    store.close()
