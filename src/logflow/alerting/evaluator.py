"""Rule evaluation: the count of matching events in the window, per group, against the threshold.

A rule's filter means exactly what a search with the same ``query``, ``services`` and
``levels`` means (same ``LogFilter``, same store), so "show me the logs" from an alert always
shows the events that were counted. The window is ``[now - time_window, now)``.

Grouping uses the store's ``counts_by_service_level`` aggregation, which omits groups with no
events. For conditions that fire on a zero count (``less_than``: a service went silent) the
candidate groups are therefore also taken from the rule's own list (``services``/``levels``),
from the groups seen in the preceding window and from the groups that have an open alert.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from logflow.alerting.payloads import iso, search_link
from logflow.alerting.rules import compare
from logflow.backends.store.base import LogStore
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest, parse_text_query

SAMPLE_SIZE = 5


class RuleLike(Protocol):
    """What evaluation reads from a rule: the stored ``AlertRule`` or a ``RuleSpec``."""

    @property
    def query(self) -> str | None: ...
    @property
    def condition(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def time_window(self) -> int: ...
    @property
    def levels(self) -> list[str]: ...
    @property
    def services(self) -> list[str]: ...
    @property
    def group_by(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One group's value; ``key`` is "" for an ungrouped rule."""

    key: str
    value: int
    firing: bool
    filter: LogFilter
    search: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """All groups of one rule at one moment."""

    start: datetime
    end: datetime
    groups: list[GroupResult]

    @property
    def firing(self) -> list[GroupResult]:
        return [g for g in self.groups if g.firing]


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def base_filter(rule: RuleLike, start: datetime, end: datetime) -> LogFilter:
    """The search filter of ``rule`` over ``[start, end)``."""
    return LogFilter(
        text=parse_text_query(rule.query), services=tuple(rule.services),
        levels=tuple(Level[name] for name in rule.levels), start_us=_us(start), end_us=_us(end),
    )


def _search(rule: RuleLike, flt: LogFilter, start: datetime, end: datetime, base_url: str) -> dict[str, Any]:
    search: dict[str, Any] = {
        "query": rule.query or None, "services": list(flt.services),
        "levels": [lv.name for lv in flt.levels], "start_time": iso(start), "end_time": iso(end),
    }
    search["url"] = search_link(base_url, search)
    return search


def _group_counts(store: LogStore, flt: LogFilter, group_by: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in store.counts_by_service_level(flt):
        counts[row.service if group_by == "service" else row.level.name] += row.count
    return counts


def _narrow(flt: LogFilter, group_by: str, key: str) -> LogFilter:
    if group_by == "service":
        return replace(flt, services=(key,))
    return replace(flt, levels=(Level[key],))


def evaluate(store: LogStore, rule: RuleLike, now: datetime, *, open_groups: Iterable[str] = (),
             base_url: str = "") -> Evaluation:
    """Evaluate ``rule`` at ``now``; ``open_groups`` are groups with an open alert (always judged)."""
    start = now - timedelta(minutes=rule.time_window)
    flt = base_filter(rule, start, now)
    if not rule.group_by:
        value = store.count(flt)
        firing = compare(rule.condition, value, rule.threshold)
        search = _search(rule, flt, start, now, base_url)
        return Evaluation(start, now, [GroupResult("", value, firing, flt, search)])
    counts = _group_counts(store, flt, rule.group_by)
    candidates: dict[str, None] = dict.fromkeys(sorted(counts))
    candidates.update(dict.fromkeys(g for g in open_groups if g))
    if compare(rule.condition, 0, rule.threshold):
        # A zero count fires: groups that logged nothing in this window matter too.
        declared = rule.services if rule.group_by == "service" else rule.levels
        candidates.update(dict.fromkeys(declared))
        previous = replace(flt, start_us=_us(start - (now - start)), end_us=flt.start_us)
        candidates.update(dict.fromkeys(sorted(_group_counts(store, previous, rule.group_by))))
    groups = []
    for key in candidates:
        if rule.group_by == "level" and key not in Level.__members__:
            continue  # an open alert from a level name that no longer parses
        narrowed = _narrow(flt, rule.group_by, key)
        value = counts.get(key, 0)
        groups.append(GroupResult(key, value, compare(rule.condition, value, rule.threshold), narrowed,
                                  _search(rule, narrowed, start, now, base_url)))
    return Evaluation(start, now, groups)


def samples(store: LogStore, flt: LogFilter, limit: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """The newest ``limit`` events a group counted, in the API's event shape."""
    page = store.search(SearchRequest(filter=flt, limit=limit))
    return [event.to_api() for event in page.events]


def preview(store: LogStore, rule: RuleLike, now: datetime, *, base_url: str = "") -> dict[str, Any]:
    """``POST /rules/{id}/test``: evaluate now, notify nobody. For a grouped rule ``value`` is the
    largest group's, ``would_fire`` whether any group fires, and ``groups`` lists them all."""
    evaluation = evaluate(store, rule, now, base_url=base_url)
    ranked = sorted(evaluation.groups, key=lambda g: (not g.firing, -g.value, g.key))
    top = ranked[0] if ranked else None
    shown = top if top is not None else GroupResult("", 0, False, base_filter(rule, evaluation.start, now))
    result: dict[str, Any] = {
        "value": shown.value, "would_fire": any(g.firing for g in evaluation.groups),
        "condition": rule.condition, "threshold": rule.threshold, "time_window": rule.time_window,
        "window": {"start": iso(evaluation.start), "end": iso(evaluation.end)},
        "sample_logs": samples(store, shown.filter) if shown.value else [],
        "search": shown.search or _search(rule, shown.filter, evaluation.start, now, base_url),
        "notified": False,
    }
    if rule.group_by:
        result["group_by"] = rule.group_by
        result["groups"] = [{"group": g.key, "value": g.value, "would_fire": g.firing} for g in ranked]
    return result
