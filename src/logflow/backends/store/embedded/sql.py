"""SQL for one partition, built from a LogFilter with bound parameters only (never pasted text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from logflow.domain.levels import ERROR_LEVELS
from logflow.domain.query import LogFilter, TextQuery
from logflow.domain.text import TOKEN_INNER_CHARS

from . import rollup

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
-- No (svc, level) index: a service filter reads its service's token in the full-text index, and
-- counts come from the rollups. That index cost 17 B/event and a random insert per event.
DROP INDEX IF EXISTS events_svc_level;
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
-- Merge 8 segments of a level at a time, not 4: each posting is rewritten fewer times as a day's
-- index grows (1 M events: 46.7 k -> 50.4 k events/s written, same size on disk), for a few more
-- segments to look into per query term.
INSERT INTO events_fts(events_fts, rank) VALUES('automerge', 8);
{rollup.SCHEMA}"""


def service_token(service_id: int) -> str:
    """The token each event's index entry carries for its service.

    FTS5's ascii tokenizer keeps "§" inside a token, while the standard analyzer (and so every
    query token) never does: no query word can match it by accident.
    """
    return f"\u00a7s{service_id}"


def fts_expression(text: TextQuery | None, service_ids: list[int] | None = None) -> str:
    """An FTS5 MATCH expression: every term and phrase quoted, joined with AND.

    With services, their tokens join the expression: FTS5 then intersects the posting lists
    itself, instead of handing every row that holds the words to SQL to test its service (a
    common word over 6 hours of 10 M events/day: 218 k rows, ~80 ms, to keep 8 k). Without
    text, the service tokens alone list a service's rows, newest first.
    """
    parts: list[str] = []
    if text is not None:
        parts += [f'"{term}"' for term in text.terms]
        parts += ['"' + " ".join(phrase) + '"' for phrase in text.phrases]
    if service_ids:
        parts.append("(" + " OR ".join(f'"{service_token(i)}"' for i in service_ids) + ")")
    return " AND ".join(parts)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


_FTS_ROWID = "f.rowid"


@dataclass(slots=True)
class Where:
    """A partition query: the FROM clause, the WHERE conditions and their parameters."""

    source: str
    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    rid_column: str = "e.rid"
    # FROM clause for counting: the full-text index alone when no condition needs the row.
    count_source: str = ""

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


NameIds = Callable[[str, tuple[str, ...]], list[int]]


def build_where(flt: LogFilter, lo: int, hi: int, names: NameIds, *, errors_index: bool = False) -> Where | None:
    """Conditions for ``flt`` within the row-id range [lo, hi] of one partition; None if nothing can match.

    With a text query or a service filter, FTS5 drives the scan (newest first by row id) and each
    hit joins its row; CROSS JOIN stops SQLite from choosing the opposite, much slower, nesting.
    With ``errors_index`` and only error levels asked, a service filter goes through the partial
    errors index instead (grouping a service's errors by message reads nothing else). Service and
    host names are stored as per-partition ids, resolved through ``names``.
    """
    service_ids = names("service", flt.services) if flt.services else []
    if flt.services and not service_ids:
        return None
    levels = tuple(int(v) for v in flt.levels)
    errors_only = bool(levels) and min(levels) >= FIRST_ERROR_LEVEL
    by_errors_index = errors_index and errors_only and flt.text is None
    if flt.text is not None or (service_ids and not by_errors_index):
        where = Where(source="events_fts f CROSS JOIN events e ON e.rid = f.rowid", rid_column=_FTS_ROWID)
        where.conditions.append("events_fts MATCH ?")
        where.params.append(fts_expression(flt.text, service_ids))
    else:
        where = Where(source="events e")
        if service_ids:
            where.conditions.append(f"e.svc IN ({_placeholders(len(service_ids))})")
            where.params += service_ids
    where.conditions.append(f"{where.rid_column} BETWEEN ? AND ?")
    where.params += [lo, hi]
    if levels:
        where.conditions.append(f"e.level IN ({_placeholders(len(levels))})")
        where.params += list(levels)
        if errors_only:
            where.conditions.append(ERRORS_ONLY)
    if flt.hosts:
        ids = names("host", flt.hosts)
        if not ids:
            return None
        where.conditions.append(f"e.host IN ({_placeholders(len(ids))})")
        where.params += ids
    for key, value in flt.fields:
        where.conditions.append("lf_attr(e.blk, e.slot, ?) = ?")
        where.params += [key, value]
    by_fts_alone = where.rid_column == _FTS_ROWID and not (levels or flt.hosts or flt.fields)
    where.count_source = "events_fts f" if by_fts_alone else where.source
    return where


def is_plain(flt: LogFilter) -> bool:
    """True when rollups can answer counts (only service, level and time restrict the events)."""
    return flt.text is None and not flt.hosts and not flt.fields
