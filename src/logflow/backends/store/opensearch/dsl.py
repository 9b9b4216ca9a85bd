"""LogFilter -> query DSL, and which indices a query has to look at.

Always structured queries, never ``query_string``: user text cannot inject query syntax, and each
clause means exactly what the embedded store does. Every clause is a filter (no scoring).
"""

from __future__ import annotations

from typing import Any

from logflow.domain.query import LogFilter

from .mapping import DAY_US, attr_term, index_name, pattern

# Beyond this many days a time range is searched through the wildcard: a long list of names
# would make a long URL for no gain (the engine skips shards outside the range quickly anyway).
_MAX_LISTED_DAYS = 31

# Missing daily indices are normal (quiet days, retention): they must not turn into errors.
SEARCH_PARAMS = {"ignore_unavailable": "true", "allow_no_indices": "true"}


def build_query(flt: LogFilter) -> dict[str, Any]:
    """The ``query`` clause for ``flt``."""
    clauses: list[dict[str, Any]] = []
    if flt.text is not None:
        # A term is one token of logflow.domain.text.tokenize; "and" keeps the documented meaning
        # (every token) should the analyzer ever split it again.
        clauses += [{"match": {"message": {"query": term, "operator": "and"}}} for term in flt.text.terms]
        clauses += [{"match_phrase": {"message": " ".join(phrase)}} for phrase in flt.text.phrases]
    if flt.services:
        clauses.append({"terms": {"service": list(flt.services)}})
    if flt.levels:
        clauses.append({"terms": {"level_num": sorted(int(level) for level in flt.levels)}})
    if flt.hosts:
        clauses.append({"terms": {"host": list(flt.hosts)}})
    if flt.start_us is not None or flt.end_us is not None:
        bounds: dict[str, int] = {}
        if flt.start_us is not None:
            bounds["gte"] = flt.start_us
        if flt.end_us is not None:
            bounds["lt"] = flt.end_us
        clauses.append({"range": {"ts_us": bounds}})
    clauses += [{"term": {"attr_kv": attr_term(key, value)}} for key, value in flt.fields]
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def indices_for(prefix: str, flt: LogFilter) -> str:
    """The index expression for ``flt``: the daily indices of a bounded time range, else all of them."""
    if flt.start_us is None or flt.end_us is None or flt.end_us <= flt.start_us:
        return pattern(prefix)
    first, last = flt.start_us // DAY_US, (flt.end_us - 1) // DAY_US
    if last - first >= _MAX_LISTED_DAYS:
        return pattern(prefix)
    return ",".join(index_name(prefix, day) for day in range(first, last + 1))
