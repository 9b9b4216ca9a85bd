"""Search and filter model shared by the API, the alert engine and every log store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from logflow.domain.levels import Level
from logflow.domain.text import tokenize

_QUOTED = re.compile(r'"([^"]*)"')


@dataclass(frozen=True, slots=True)
class TextQuery:
    """A parsed full-text query: every term must occur, and every phrase must occur in order.

    ``error timeout`` matches messages containing both words in any order;
    ``"connection reset"`` matches the two words adjacent. Matching is case-insensitive and
    works on whole tokens (see :mod:`logflow.domain.text`).
    """

    raw: str
    terms: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...]

    @property
    def is_empty(self) -> bool:
        return not self.terms and not self.phrases


def parse_text_query(raw: str | None) -> TextQuery | None:
    """Parse the user's query string; None when it holds no searchable token."""
    if raw is None:
        return None
    terms: list[str] = []
    phrases: list[tuple[str, ...]] = []
    for quoted in _QUOTED.findall(raw):
        tokens = tokenize(quoted)
        if len(tokens) == 1:
            terms.append(tokens[0])
        elif tokens:
            phrases.append(tuple(tokens))
    # An unbalanced quote is treated as an ordinary separator, never as an error.
    for token in tokenize(_QUOTED.sub(" ", raw).replace('"', " ")):
        terms.append(token)
    query = TextQuery(raw=raw, terms=tuple(dict.fromkeys(terms)), phrases=tuple(dict.fromkeys(phrases)))
    return None if query.is_empty else query


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events a search, count or aggregation looks at.

    Times are microseconds since the epoch, ``start_us`` inclusive and ``end_us`` exclusive.
    Empty tuples mean "no restriction". ``fields`` are exact matches on attributes
    (``metadata``) by top-level key.
    """

    text: TextQuery | None = None
    services: tuple[str, ...] = ()
    levels: tuple[Level, ...] = ()
    hosts: tuple[str, ...] = ()
    start_us: int | None = None
    end_us: int | None = None
    fields: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A page of matching events, newest first unless ``oldest_first``."""

    filter: LogFilter
    limit: int = 100
    offset: int = 0
    oldest_first: bool = False
