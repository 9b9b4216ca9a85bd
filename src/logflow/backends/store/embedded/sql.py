"""SQL for one partition, built from a LogFilter with bound parameters only (never pasted text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from logflow.domain.levels import ERROR_LEVELS, Level
from logflow.domain.query import LogFilter, TextQuery
from logflow.domain.text import TOKEN_INNER_CHARS

from . import rollup

_ALL_LEVELS = tuple(int(level) for level in Level)
_TOKENCHARS = TOKEN_INNER_CHARS.replace("'", "''")
FIRST_ERROR_LEVEL = min(int(level) for level in ERROR_LEVELS)
# Literal, not a bound parameter: SQLite uses a partial index only when the query repeats its
# WHERE term word for word.
ERRORS_ONLY = f"e.level >= {FIRST_ERROR_LEVEL}"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events(
    rid INTEGER PRIMARY KEY,
    id_hash INTEGER NOT NULL,
    level INTEGER NOT NULL,
    svc INTEGER NOT NULL,
    host INTEGER NOT NULL,
    msg_hash INTEGER,
    blk INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    id_in_time INTEGER NOT NULL
);
-- id_in_time = 1: the id is a ULID of the row's own millisecond (every id LogFlow generates), so
-- the row is found by time. Only other ids need the id index (see partition.PartitionWriter).
CREATE INDEX IF NOT EXISTS events_id ON events(id_hash) WHERE id_in_time = 0;
CREATE INDEX IF NOT EXISTS events_svc_level ON events(svc, level);
-- Errors are a few percent of events: a covering index over just them answers "top errors of a
-- service" without touching the table, for a fraction of a byte per event. Ordered by message
-- within a service, the grouping streams without a sort (a day of one service's errors: 6 ms
-- instead of 12 at 10 M events/day).
CREATE INDEX IF NOT EXISTS events_errors ON events(svc, msg_hash, rid, level) WHERE level >= {FIRST_ERROR_LEVEL};
CREATE TABLE IF NOT EXISTS blocks(blk INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, UNIQUE(kind, name));
-- detail=full: token positions answer quoted phrases inside FTS5. (detail=none is ~20 B/event
-- smaller, but then every candidate row holding a phrase's words must be read and re-tokenized:
-- 1.7 s for a phrase that never occurs over 1 M events whose words are common.)
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    tokens, content='', columnsize=0, detail=full, tokenize="ascii tokenchars '{_TOKENCHARS}'"
);
{rollup.SCHEMA}"""


def service_token(service_id: int) -> str:
    """The token each event's index entry carries for its service.

    FTS5's ascii tokenizer keeps "§" inside a token, while the standard analyzer (and so every
    query token) never does: no query word can match it by accident.
    """
    return f"\u00a7s{service_id}"


def fts_expression(text: TextQuery, service_ids: list[int] | None = None) -> str:
    """An FTS5 MATCH expression: every term and phrase quoted, joined with AND.

    With services, their tokens join the expression: FTS5 then intersects the posting lists
    itself, instead of handing every row that holds the words to SQL to test its service (a
    common word over 6 hours of 10 M events/day: 218 k rows, ~80 ms, to keep 8 k).
    """
    parts = [f'"{term}"' for term in text.terms]
    parts += ['"' + " ".join(phrase) + '"' for phrase in text.phrases]
    if service_ids:
        parts.append("(" + " OR ".join(f'"{service_token(i)}"' for i in service_ids) + ")")
    return " AND ".join(parts)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


@dataclass(slots=True)
class Where:
    """A partition query: the FROM clause, the WHERE conditions and their parameters."""

    source: str
    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    rid_column: str = "e.rid"

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


NameIds = Callable[[str, tuple[str, ...]], list[int]]


def build_where(flt: LogFilter, lo: int, hi: int, names: NameIds, *, plain_levels_index: bool = True) -> Where | None:
    """Conditions for ``flt`` within the row-id range [lo, hi] of one partition; None if nothing can match.

    With a text query, FTS5 drives the scan (newest first by row id) and each hit joins its row;
    CROSS JOIN stops SQLite from choosing the opposite, much slower, nesting. Service and host
    names are stored as per-partition ids, resolved through ``names``.
    """
    service_ids = names("service", flt.services) if flt.services else []
    if flt.services and not service_ids:
        return None
    if flt.text is not None:
        where = Where(source="events_fts f CROSS JOIN events e ON e.rid = f.rowid", rid_column="f.rowid")
        where.conditions.append("events_fts MATCH ?")
        where.params.append(fts_expression(flt.text, service_ids))
    else:
        where = Where(source="events e")
    where.conditions.append(f"{where.rid_column} BETWEEN ? AND ?")
    where.params += [lo, hi]
    if service_ids:
        where.conditions.append(f"e.svc IN ({_placeholders(len(service_ids))})")
        where.params += service_ids
    levels = tuple(int(v) for v in flt.levels)
    if levels:
        where.conditions.append(f"e.level IN ({_placeholders(len(levels))})")
        where.params += list(levels)
        if min(levels) >= FIRST_ERROR_LEVEL:
            where.conditions.append(ERRORS_ONLY)
    elif flt.services and plain_levels_index and flt.text is None:
        # Lets SQLite use the (svc, level) index as a few row-id range scans.
        where.conditions.append(f"e.level IN ({_placeholders(len(_ALL_LEVELS))})")
        where.params += list(_ALL_LEVELS)
    if flt.hosts:
        ids = names("host", flt.hosts)
        if not ids:
            return None
        where.conditions.append(f"e.host IN ({_placeholders(len(ids))})")
        where.params += ids
    for key, value in flt.fields:
        where.conditions.append("lf_attr(e.blk, e.slot, ?) = ?")
        where.params += [key, value]
    return where


def is_plain(flt: LogFilter) -> bool:
    """True when rollups can answer counts (only service, level and time restrict the events)."""
    return flt.text is None and not flt.hosts and not flt.fields
