"""OpenSearchStore: the LogStore port over daily OpenSearch / Elasticsearch 8 indices.

Answers mean what the embedded store's answers mean (tests/contracts/test_store_contract.py runs
one suite against both): newest first by microsecond timestamp, totals counted up to
TOTAL_HITS_CAP, time ranges start-inclusive and end-exclusive, histogram buckets aligned to
multiples of the interval since the epoch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from logflow.backends.errors import BackendError, BackendUnavailable
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
from logflow.domain.events import LogEvent, RecordEncoder
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest

from . import prepare
from .bulk import BulkWriter, RetryPolicy
from .client import RestClient, error_reason, parse_store_url
from .dsl import SEARCH_PARAMS, build_query, indices_for
from .mapping import (
    DAY_US,
    MAX_RESULT_WINDOW,
    check_prefix,
    day_of_index,
    encode_indexed_record,
    from_source,
    index_template,
    pattern,
    template_name,
)

if TYPE_CHECKING:
    from logflow.settings import Settings

log = logging.getLogger(__name__)

_COMPOSITE_PAGE = 1000
_STATS_TIMEOUT_S = 5.0  # /health and `logflow status` must answer even when the cluster hangs
_DELETE_BATCH = 50
SHARD_START_WAIT_S = 3.0  # how long a search waits for the shards of a just-created daily index


def _readable(hits: list[dict[str, Any]]) -> list[LogEvent]:
    """The events of search hits, leaving out (with a warning) any document that is not one of ours:
    one written to the queue by another writer must not make every search that finds it fail."""
    events = []
    for hit in hits:
        try:
            events.append(from_source(hit["_source"]))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("left out document %s of index %s, which is not a LogFlow event: %r",
                        hit.get("_id"), hit.get("_index"), exc)
    return events


class OpenSearchStore:
    """Daily indices ``{prefix}-YYYY.MM.DD`` created from one index template, written with _bulk."""

    kind = "opensearch"
    # Bulk writes are network round trips: while one batch's last request finishes, the next
    # batch's requests keep the engine's write threads busy.
    concurrent_writes = True
    prepare_in_helper = False  # a write waits on the socket with the GIL released

    def __init__(self, url: str, *, prefix: str = "logflow", shards: int = 1, replicas: int = 0,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 bulk_concurrency: int = 2) -> None:
        self.prefix = check_prefix(prefix)
        self._shards = shards
        self._replicas = replicas
        self._client = RestClient(parse_store_url(url), transport=transport)
        self._bulk = BulkWriter(self._client, self.prefix, policy=retry, concurrency=bulk_concurrency)
        self._template_ready = False
        self._template_lock = threading.Lock()
        try:
            self.ensure_template()
        except BackendError as exc:
            # Start anyway (the API can report the outage); the first write tries again.
            log.warning("opensearch store: index template not installed yet: %s", exc)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenSearchStore:
        return cls(settings.store_url, prefix=settings.store_index_prefix, shards=settings.store_shards,
                   replicas=settings.store_replicas, bulk_concurrency=settings.store_bulk_concurrency)

    def ensure_template(self) -> None:
        """Install (or update) the index template; idempotent. Indices created later use it."""
        with self._template_lock:
            if self._template_ready:
                return
            body = index_template(self.prefix, shards=self._shards, replicas=self._replicas)
            self._client.request("PUT", f"/_index_template/{template_name(self.prefix)}", body)
            self._template_ready = True

    # -- writes ---------------------------------------------------------------------------
    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        if not events:
            return WriteResult()
        # Never let _bulk auto-create a daily index before the template exists: it would get
        # dynamic mappings that no later template change can fix.
        self.ensure_template()
        return self._bulk.write(events)

    def preparer(self) -> Callable[[list[bytes]], PreparedBatch]:
        return prepare.prepare_payloads

    def record_encoder(self) -> RecordEncoder:
        return encode_indexed_record

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        if not batch.data:
            return WriteResult()
        self.ensure_template()
        return self._bulk.write_blocks(batch.data)

    # -- reads ----------------------------------------------------------------------------
    def _read(self, indices: str, body: dict[str, Any]) -> dict[str, Any]:
        """``_search``, riding out the moment a new daily index exists but its shards are not started.

        The first write of a day creates that day's index; a search in the next ~100 ms fails with
        503 "all shards failed" although nothing is wrong. Such answers are retried for up to
        ``SHARD_START_WAIT_S``; any other failure, or a longer one, is raised as it is.
        """
        deadline = time.monotonic() + SHARD_START_WAIT_S
        while True:
            answer: dict[str, Any] = self._client.request(
                "POST", f"/{indices}/_search", body, params=SEARCH_PARAMS, allow=(503,)
            )
            if "error" not in answer:
                return answer
            reason = error_reason(answer)
            starting = reason.startswith("search_phase_execution_exception") and "all shards failed" in reason
            if not starting or time.monotonic() >= deadline:
                raise BackendUnavailable(f"{self._client.endpoint.display} answered 503: {reason}")
            time.sleep(0.05)

    def _search(self, flt: LogFilter, body: dict[str, Any]) -> dict[str, Any]:
        body["query"] = build_query(flt)
        return self._read(indices_for(self.prefix, flt), body)

    def search(self, request: SearchRequest) -> SearchPage:
        order = "asc" if request.oldest_first else "desc"
        # from + size may not pass the result window; the page is cut there (the HTTP API's
        # limits keep every page inside it).
        size = max(0, min(request.limit, MAX_RESULT_WINDOW - request.offset))
        body: dict[str, Any] = {
            # Ties (same microsecond) are broken by id so that paging is stable.
            "sort": [{"ts_us": {"order": order}}, {"id": {"order": order}}],
            "from": request.offset if size else 0,
            "size": size,
            # One past the cap: "exactly 10,000" and "more than 10,000" must be told apart, whatever
            # relation the engine reports at its threshold.
            "track_total_hits": TOTAL_HITS_CAP + 1,
        }
        answer = self._search(request.filter, body)
        hits = answer.get("hits", {})
        counted = int(hits.get("total", {}).get("value", 0))
        events = _readable(hits.get("hits", []))
        exact = counted <= TOTAL_HITS_CAP
        return SearchPage(total=min(counted, TOTAL_HITS_CAP), total_exact=exact, events=events)

    def get(self, event_id: str) -> LogEvent | None:
        # Newest first, like the embedded store, should one id ever sit in two daily indices.
        body = {"query": {"ids": {"values": [event_id]}}, "size": 1, "sort": [{"ts_us": {"order": "desc"}}]}
        answer = self._read(pattern(self.prefix), body)
        events = _readable(answer.get("hits", {}).get("hits", []))
        return events[0] if events else None

    def count(self, flt: LogFilter) -> int:
        path = f"/{indices_for(self.prefix, flt)}/_count"
        answer = self._client.request("POST", path, {"query": build_query(flt)}, params=SEARCH_PARAMS)
        return int(answer.get("count", 0))

    def counts_by_service_level(self, flt: LogFilter) -> list[GroupCount]:
        # A composite aggregation pages through every (service, level) pair: exact however many
        # services there are, where a terms aggregation would need a size guess.
        sources = [{"service": {"terms": {"field": "service"}}}, {"level": {"terms": {"field": "level_num"}}}]
        groups: list[GroupCount] = []
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": _COMPOSITE_PAGE, "sources": sources}
            if after is not None:
                composite["after"] = after
            body = {"size": 0, "track_total_hits": False, "aggs": {"groups": {"composite": composite}}}
            agg = self._search(flt, body).get("aggregations", {}).get("groups", {})
            buckets = agg.get("buckets", [])
            groups += [GroupCount(b["key"]["service"], Level(int(b["key"]["level"])), int(b["doc_count"]))
                       for b in buckets if b["doc_count"]]
            after = agg.get("after_key")
            if not buckets or after is None:
                break
        return sorted(groups, key=lambda g: (g.service, int(g.level)))

    def histogram(self, flt: LogFilter, interval_s: int) -> list[BucketCount]:
        body = {
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "buckets": {
                    # Fixed intervals in UTC are aligned to multiples of the interval since the epoch,
                    # like the embedded store's buckets.
                    "date_histogram": {"field": "timestamp", "fixed_interval": f"{interval_s}s",
                                       "min_doc_count": 1, "time_zone": "UTC"},
                    "aggs": {"levels": {"terms": {"field": "level_num", "size": len(Level)}}},
                }
            },
        }
        agg = self._search(flt, body).get("aggregations", {}).get("buckets", {})
        out = [
            BucketCount(int(bucket["key"]) * 1000, Level(int(level["key"])), int(level["doc_count"]))
            for bucket in agg.get("buckets", [])
            for level in bucket["levels"]["buckets"]
            if level["doc_count"]
        ]
        return sorted(out, key=lambda b: (b.start_us, int(b.level)))

    def top_messages(self, flt: LogFilter, limit: int) -> list[MessageCount]:
        if limit <= 0:
            return []
        body = {
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "top": {
                    # (message, service) pairs, like the embedded store; most frequent first, the most
                    # recently seen first among equals. shard_size mirrors the embedded per-partition cut.
                    "multi_terms": {
                        "terms": [{"field": "message.raw"}, {"field": "service"}],
                        "size": limit,
                        "shard_size": max(limit * 20, 200),
                        "order": [{"_count": "desc"}, {"last_seen": "desc"}],
                    },
                    "aggs": {"last_seen": {"max": {"field": "ts_us"}}},
                }
            },
        }
        agg = self._search(flt, body).get("aggregations", {}).get("top", {})
        return [
            MessageCount(b["key"][0], b["key"][1], int(b["doc_count"]), int(b["last_seen"]["value"]))
            for b in agg.get("buckets", [])
        ]

    # -- maintenance ----------------------------------------------------------------------
    def _daily_indices(self) -> dict[str, int]:
        """Our daily indices and their day numbers (other indices matching the pattern are ignored)."""
        rows = self._client.request("GET", f"/_cat/indices/{pattern(self.prefix)}",
                                    params={"format": "json", "h": "index", "expand_wildcards": "all"})
        names = [row["index"] for row in rows if isinstance(row, dict)]
        days = {name: day_of_index(self.prefix, name) for name in names}
        return {name: day for name, day in days.items() if day is not None}

    def drop_before(self, cutoff_us: int) -> int:
        # A day's index goes once the whole day is older than the cutoff.
        doomed = sorted(name for name, day in self._daily_indices().items()
                         if (day + 1) * DAY_US <= cutoff_us)
        for i in range(0, len(doomed), _DELETE_BATCH):
            # Explicit names, never a wildcard: clusters may set action.destructive_requires_name.
            self._client.request("DELETE", "/" + ",".join(doomed[i : i + _DELETE_BATCH]),
                                 params={"ignore_unavailable": "true"})
        return len(doomed)

    def refresh(self) -> None:
        self._client.request("POST", f"/{pattern(self.prefix)}/_refresh", params=SEARCH_PARAMS)

    def stats(self) -> StoreStats:
        try:
            health = self._client.request("GET", "/_cluster/health", timeout_s=_STATS_TIMEOUT_S)
            wanted = "_all.primaries.docs.count,_all.total.store,indices.*.uuid"
            numbers = self._client.request("GET", f"/{pattern(self.prefix)}/_stats/docs,store",
                                           params={**SEARCH_PARAMS, "filter_path": wanted},
                                           timeout_s=_STATS_TIMEOUT_S)
        except BackendError as exc:
            return StoreStats(kind=self.kind, healthy=False, detail=str(exc))
        status = str(health.get("status", "unknown"))
        totals = numbers.get("_all", {})
        indices = [name for name in numbers.get("indices", {}) if day_of_index(self.prefix, name) is not None]
        return StoreStats(
            kind=self.kind,
            healthy=status in ("green", "yellow"),
            detail=f"cluster {health.get('cluster_name', '?')} {status}; {len(indices)} daily indices",
            documents=int(totals.get("primaries", {}).get("docs", {}).get("count", 0)),
            bytes_on_disk=int(totals.get("total", {}).get("store", {}).get("size_in_bytes", 0)),
            partitions=len(indices),
        )

    def close(self) -> None:
        self._bulk.close()
        self._client.close()

