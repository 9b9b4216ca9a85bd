"""The LogStore contract, run against every implementation (embedded SQLite and real OpenSearch).

Expected answers are computed in the test from the input events (Counters, sorts, a plain token
matcher), never read back from a store. The OpenSearch parameter needs ``LOGFLOW_TEST_OPENSEARCH_URL``;
each test gets its own index prefix, and its indices and template are deleted afterwards.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from logflow.backends.store.base import (
    TOTAL_HITS_CAP,
    BucketCount,
    GroupCount,
    LogStore,
    MessageCount,
    PreparingStore,
)
from logflow.backends.store.embedded import EmbeddedStore
from logflow.backends.store.opensearch import OpenSearchStore
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.domain.events import LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import Level, parse_level
from logflow.domain.query import LogFilter, SearchRequest, TextQuery, parse_text_query
from logflow.domain.text import tokenize
from tests.conftest import LOGHUB_SYSTEMS, loghub_events, require_engine

BASE = 1_710_028_800_000_000  # 2024-03-10T00:00:00Z in µs
SECOND = 1_000_000
MINUTE = 60 * SECOND
DAY = 86_400 * SECOND
STORES = ["embedded", pytest.param("opensearch", marks=pytest.mark.distributed)]


# -- fixtures -------------------------------------------------------------------------------------
def _opensearch() -> OpenSearchStore:
    return OpenSearchStore(require_engine("opensearch"), prefix=f"lf-test-{uuid.uuid4().hex[:10]}")


def _dispose(store: LogStore) -> None:
    if isinstance(store, OpenSearchStore):
        store.drop_before(2**62)  # every daily index
        endpoint = parse_store_url(require_engine("opensearch"))
        httpx.delete(f"{endpoint.base_url}/_index_template/{store.prefix}-template", auth=endpoint.auth)
    store.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    made: LogStore = EmbeddedStore(tmp_path / "store") if request.param == "embedded" else _opensearch()
    try:
        yield made
    finally:
        _dispose(made)


def put(store: LogStore, events: list[LogEvent]) -> None:
    result = store.write(events)
    assert (result.stored, result.rejected) == (len({e.id for e in events}), [])
    store.refresh()


def ev(id_: str, ts: int, message: str = "ok", *, service: str = "api", level: Level = Level.INFO,
       host: str | None = None, attributes: dict[str, Any] | None = None) -> LogEvent:
    return LogEvent(id=id_, timestamp=ts, level=level, service=service, message=message, host=host,
                    attributes=attributes or {})


def ids(events: list[LogEvent]) -> list[str]:
    return [e.id for e in events]


def newest_first(events: list[LogEvent]) -> list[str]:
    return [e.id for e in sorted(events, key=lambda e: e.timestamp, reverse=True)]


# -- an independent oracle ------------------------------------------------------------------------
def canonical(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | str):
        return str(value)
    return repr(value) if isinstance(value, float) else None


def text_matches(query: TextQuery, message: str) -> bool:
    tokens = tokenize(message)
    if not set(query.terms) <= set(tokens):
        return False
    return all(any(tuple(tokens[i : i + len(p)]) == p for i in range(len(tokens))) for p in query.phrases)


def matches(e: LogEvent, flt: LogFilter) -> bool:
    return (
        (not flt.services or e.service in flt.services)
        and (not flt.levels or e.level in flt.levels)
        and (not flt.hosts or e.host in flt.hosts)
        and (flt.start_us is None or e.timestamp >= flt.start_us)
        and (flt.end_us is None or e.timestamp < flt.end_us)
        and all(k in e.attributes and canonical(e.attributes[k]) == v for k, v in flt.fields)
        and (flt.text is None or text_matches(flt.text, e.message))
    )


MESSAGES = [
    "Connection reset by peer", "GET /api/v1/users?id=7 from 10.0.0.1:8080 took 12ms",
    "java.lang.NullPointerException at Checkout.pay", "disk /dev/sda1 is 91% full", "user don't exist",
]


def mixed() -> list[LogEvent]:
    """60 events over about an hour: three services, every level, hosts, typed attributes."""
    out = []
    for i in range(60):
        attributes: dict[str, Any] = {"ok": i % 2 == 0, "count": i % 4, "ratio": 0.25 if i % 5 == 0 else 0.5,
                                      "name": f"n{i % 7}", "nested": {"k": i}, "list": [i], "none": None}
        attributes.update({10: {"a=b": "c"}, 11: {"a": "b=c"}}.get(i, {}))
        out.append(ev(f"m{i:02d}", BASE + i * 61 * SECOND + 17 * i, MESSAGES[i % 5],
                      service=("api", "db", "web")[i % 3], level=list(Level)[i % 6],
                      host=("h1", "h2", None)[(i // 3) % 3], attributes=attributes))
    return out


# -- writes ---------------------------------------------------------------------------------------
def test_write_then_get_round_trips_every_field(store: LogStore) -> None:
    full = LogEvent(
        id="rt-1", timestamp=BASE + 123_456_789, level=Level.WARN, service="checkout", host="web-01",
        message="Payment failed: card declined (code 51) — naïve ✓ 日本", trace_id="4bf92f3577b34da6",
        span_id="00f067aa0ba902b7", request_id="req-9", correlation_id="order-77",
        attributes={"user": {"id": 42, "roles": ["admin", "dev"]}, "ok": True, "ratio": 0.25, "none": None,
                    "count": 3, "big": 2**53 + 1, "weird.key name": "x"},
        flags=["invalid_utf8", "truncated"],
    )
    bare = ev("rt-2", BASE + 1, "bare")
    put(store, [full, bare])
    assert store.get("rt-1") == full
    assert store.get("rt-2") == bare
    assert store.get("rt-3") is None
    assert store.search(SearchRequest(LogFilter())).events == [full, bare]


def test_writes_are_idempotent_by_id(store: LogStore) -> None:
    events = [ev(f"i{i}", BASE + i * SECOND) for i in range(20)]
    first = store.write(events)
    assert (first.stored, first.duplicates) == (20, 0)
    again = store.write(events)
    assert (again.stored, again.duplicates) == (0, 20)
    mixed_batch = events[:5] + [ev(f"j{i}", BASE + DAY + i) for i in range(5)] + [ev("j0", BASE + DAY)]
    result = store.write(mixed_batch)
    assert (result.stored, result.duplicates) == (5, 6)
    store.refresh()
    assert store.count(LogFilter()) == 25


def test_prepared_writes_store_what_plain_writes_store(store: LogStore) -> None:
    """The processor writes through ``preparer()`` + ``write_prepared`` where a store offers them."""
    assert isinstance(store, PreparingStore)  # both stores do; a new one should too, or skip here
    zookeeper = [e for e in _loghub() if e.service == "zookeeper"][:300]
    events = [*zookeeper, ev("p-attr", BASE + 5, "with attributes", attributes={"user": {"id": 7}, "ok": True},
                             host="h9")]
    assert len(events) == 301
    payloads = [e.to_wire() for e in events]
    payloads.insert(3, b"\x09 not a queue payload")
    prepare = store.preparer()
    prepared = prepare(payloads)
    assert [index for index, _ in prepared.undecodable] == [3]
    first = store.write_prepared(prepared)
    assert (first.stored, first.duplicates, first.rejected) == (len(events), 0, [])
    again = store.write_prepared(prepare(payloads))
    assert (again.stored, again.duplicates) == (0, len(events))
    store.refresh()
    assert store.count(LogFilter()) == len(events)
    assert [store.get(e.id) for e in events] == events


def test_every_shape_of_id_is_found_and_deduplicated(store: LogStore) -> None:
    """Ids LogFlow generates (ULIDs of the event's millisecond) and any id a client sends.

    The embedded store finds generated ids by time instead of through its id index, so both
    kinds, and ULIDs that only look generated, must read back and deduplicate alike.
    """
    ts = BASE + 5 * SECOND + 123_456
    events = [
        ev(new_ulid(ts // 1000), ts, "generated"),
        ev(new_ulid(ts // 1000 - 7), ts, "ULID of another millisecond"),
        ev(new_ulid(ts // 1000).lower(), ts + 1, "lower-case ULID"),
        ev(str(uuid.UUID(int=42)), ts + 2, "uuid"),
        ev("order-77", ts + 3, "plain"),
        ev(new_ulid((ts + DAY) // 1000), ts + DAY, "generated, next day"),
    ]
    put(store, events)
    for event in events:
        assert store.get(event.id) == event
    assert store.get(new_ulid(ts // 1000)) is None  # same millisecond, other randomness
    # Out of order: older than everything stored, then the whole set again in a shuffled batch.
    older = ev(new_ulid((ts - MINUTE) // 1000), ts - MINUTE, "late")
    assert store.write([older]).stored == 1
    replay = [*events, older]
    random.Random(3).shuffle(replay)
    result = store.write(replay)
    assert (result.stored, result.duplicates) == (0, len(replay))
    store.refresh()
    assert store.count(LogFilter()) == len(replay)


def test_a_flood_sharing_one_timestamp_keeps_every_event(store: LogStore) -> None:
    ts = BASE + 9 * SECOND  # 2,500 events stamped with the same microsecond, in three batches
    events = [ev(new_ulid(ts // 1000), ts, f"burst {i}") for i in range(2_500)]
    for start in range(0, len(events), 1_000):
        put(store, events[start : start + 1_000])
    assert store.count(LogFilter()) == 2_500
    page = store.search(SearchRequest(LogFilter(), limit=1000))
    assert {e.timestamp // 1000 for e in page.events} == {ts // 1000}  # still their millisecond
    for event in (events[0], events[1_500], events[-1]):
        found = store.get(event.id)
        assert found is not None and found.message == event.message
    assert store.write(events[::7]).duplicates == len(events[::7])


# -- search ---------------------------------------------------------------------------------------
def test_search_orders_by_timestamp_and_pages_by_offset(store: LogStore) -> None:
    events = [ev(f"o{i}", BASE + i * 997_003 + (i % 3)) for i in range(30)]
    random.Random(7).shuffle(events)
    put(store, events)
    expected = newest_first(events)
    page = store.search(SearchRequest(LogFilter(), limit=100))
    assert (ids(page.events), page.total, page.total_exact) == (expected, 30, True)
    oldest = store.search(SearchRequest(LogFilter(), limit=100, oldest_first=True))
    assert ids(oldest.events) == expected[::-1]
    pages = [ids(store.search(SearchRequest(LogFilter(), limit=7, offset=o)).events) for o in range(0, 35, 7)]
    assert pages == [expected[o : o + 7] for o in range(0, 35, 7)]
    assert ids(store.search(SearchRequest(LogFilter(), limit=4, offset=3, oldest_first=True)).events) == (
        expected[::-1][3:7])


FILTERS = [
    LogFilter(services=("db",)),
    LogFilter(services=("api", "web"), levels=(Level.ERROR, Level.CRITICAL)),
    LogFilter(levels=(Level.WARN,)),
    LogFilter(hosts=("h1",)),
    LogFilter(hosts=("h2", "nope"), services=("api",)),
    LogFilter(start_us=BASE + 10 * 61 * SECOND + 170),  # exactly m10's timestamp: included
    LogFilter(end_us=BASE + 20 * 61 * SECOND + 340),  # exactly m20's timestamp: excluded
    LogFilter(start_us=BASE + 5 * 61 * SECOND + 85, end_us=BASE + 9 * 61 * SECOND + 153),
    LogFilter(fields=(("ok", "true"),)),
    LogFilter(fields=(("ok", "false"), ("count", "3"))),
    LogFilter(fields=(("ratio", "0.25"),)),
    LogFilter(fields=(("name", "n3"),), services=("web",)),
    LogFilter(fields=(("none", "null"),)),
    LogFilter(fields=(("nested", '{"k":1}'),)),  # objects and arrays never match
    LogFilter(fields=(("list", "[1]"),)),
    LogFilter(fields=(("missing", "x"),)),
    LogFilter(fields=(("a=b", "c"),)),
    LogFilter(fields=(("a", "b=c"),)),
    LogFilter(services=("nope",)),
    # Text with services: the embedded index intersects words with per-service tokens.
    LogFilter(text=parse_text_query("connection"), services=("api", "db")),
    LogFilter(text=parse_text_query('"reset by" peer'), services=("db",), levels=(Level.ERROR, Level.INFO)),
    LogFilter(text=parse_text_query("GET"), services=("web", "nope")),
    LogFilter(text=parse_text_query("\u00a7s1 s1")),  # the service tokens are out of any query's reach
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr(f)[10:70])
def test_filters_select_exactly_the_matching_events(store: LogStore, flt: LogFilter) -> None:
    events = mixed()
    put(store, events)
    expected = [e for e in events if matches(e, flt)]
    page = store.search(SearchRequest(flt, limit=1000))
    assert (ids(page.events), page.total, page.total_exact) == (newest_first(expected), len(expected), True)
    assert store.count(flt) == len(expected)


TEXT_EVENTS = {
    "t1": "Connection reset by peer",
    "t2": "connection RESET after Timeout",
    "t3": "reset connection now",
    "t4": "Timeout while connecting to db.example.com:5432",
    "t5": "user don't exist",
    "t6": "java.lang.NullPointerException at com.shop.Checkout.pay(Checkout.java:42)",
    "t7": "GET /api/v1/users?id=7 from 10.0.0.1:8080",
}
TEXT_QUERIES = {
    "connection": {"t1", "t2", "t3"},
    "CONNECTION Reset": {"t1", "t2", "t3"},
    '"connection reset"': {"t1", "t2"},
    '"reset connection"': {"t3"},
    "timeout connection": {"t2"},
    "db.example.com": {"t4"},
    "example": set(),
    "don't": {"t5"},
    "java.lang.NullPointerException": {"t6"},
    "nullpointerexception": set(),
    "checkout.java:42": {"t6"},  # two tokens: ':' joins letters only
    "com.shop.Checkout.pay": {"t6"},
    "checkout": set(),
    "10.0.0.1 8080": {"t7"},
    '"users id 7"': {"t7"},
    '"id 7 users"': set(),
}


@pytest.mark.parametrize(("query", "expected"), TEXT_QUERIES.items(), ids=list(TEXT_QUERIES))
def test_text_terms_must_all_match_and_phrases_keep_order(store: LogStore, query: str,
                                                          expected: set[str]) -> None:
    put(store, [ev(i, BASE + n * SECOND, m) for n, (i, m) in enumerate(TEXT_EVENTS.items())])
    flt = LogFilter(text=parse_text_query(query))
    assert set(ids(store.search(SearchRequest(flt)).events)) == expected
    assert store.count(flt) == len(expected)


def test_total_stops_counting_at_the_cap(store: LogStore) -> None:
    n = TOTAL_HITS_CAP + 50
    events = [ev(f"c{i}", BASE + i * 1000 + 7, f"tick {i}", service=("even", "odd")[i % 2]) for i in range(n)]
    put(store, events)
    page = store.search(SearchRequest(LogFilter(), limit=5))
    assert (page.total, page.total_exact) == (TOTAL_HITS_CAP, False)
    assert ids(page.events) == newest_first(events)[:5]
    assert store.count(LogFilter()) == n
    exactly_cap = store.search(SearchRequest(LogFilter(start_us=events[50].timestamp), limit=1))
    assert (exactly_cap.total, exactly_cap.total_exact) == (TOTAL_HITS_CAP, True)
    half = store.search(SearchRequest(LogFilter(services=("even",)), limit=1))
    assert (half.total, half.total_exact) == (n // 2, True)


# -- aggregations ---------------------------------------------------------------------------------
AGG_FILTERS = [
    LogFilter(),
    LogFilter(start_us=BASE + 90 * SECOND + 17, end_us=BASE + 40 * MINUTE + 123),  # partial minutes
    LogFilter(services=("api", "db"), levels=(Level.INFO, Level.ERROR, Level.CRITICAL)),
    LogFilter(text=parse_text_query("connection"), hosts=("h1", "h2")),
]


@pytest.mark.parametrize("flt", AGG_FILTERS, ids=["all", "partial-minutes", "service-level", "text-host"])
def test_counts_by_service_and_level(store: LogStore, flt: LogFilter) -> None:
    events = mixed()
    put(store, events)
    counted = Counter((e.service, e.level) for e in events if matches(e, flt))
    expected = [GroupCount(s, lv, n) for (s, lv), n in sorted(counted.items())]
    assert store.counts_by_service_level(flt) == expected


@pytest.mark.parametrize("interval_s", [60, 300])
@pytest.mark.parametrize("flt", AGG_FILTERS, ids=["all", "partial-minutes", "service-level", "text-host"])
def test_histogram_buckets_align_to_the_interval(store: LogStore, flt: LogFilter, interval_s: int) -> None:
    events = mixed()
    put(store, events)
    width = interval_s * SECOND
    counted = Counter(((e.timestamp // width) * width, e.level) for e in events if matches(e, flt))
    buckets = store.histogram(flt, interval_s)
    assert buckets == [BucketCount(start, lv, n) for (start, lv), n in sorted(counted.items())]
    assert all(b.start_us % width == 0 for b in buckets)
    assert sum(b.count for b in buckets) == store.count(flt)


@pytest.mark.parametrize("interval_s", [None, 60, 3600, 7200])
def test_aggregations_across_whole_hours_and_ragged_edges(store: LogStore, interval_s: int | None) -> None:
    """Windows that start and end inside a minute, with whole hours between (hourly rollups)."""
    hour = 60 * MINUTE
    events = [ev(f"h{i}", BASE + i * 97 * SECOND + i % 1000, "tick", service=("api", "db")[i % 2],
                 level=list(Level)[i % 6]) for i in range(230)]  # ~6.2 hours
    put(store, events)
    for flt in (LogFilter(start_us=BASE + 37 * MINUTE + 5 * SECOND + 3, end_us=BASE + 4 * hour + 12 * MINUTE + 7),
                LogFilter(start_us=BASE + hour, end_us=BASE + 3 * hour, services=("db",)),
                LogFilter(start_us=BASE + 59 * MINUTE, levels=(Level.WARN, Level.ERROR))):
        chosen = [e for e in events if matches(e, flt)]
        if interval_s is None:
            counted = Counter((e.service, e.level) for e in chosen)
            expected = [GroupCount(s, lv, n) for (s, lv), n in sorted(counted.items())]
            assert store.counts_by_service_level(flt) == expected
        else:
            width = interval_s * SECOND
            by_bucket = Counter(((e.timestamp // width) * width, e.level) for e in chosen)
            buckets = [BucketCount(b, lv, n) for (b, lv), n in sorted(by_bucket.items())]
            assert store.histogram(flt, interval_s) == buckets


def test_top_messages_by_count_then_last_seen(store: LogStore) -> None:
    plan = [("disk full", "a", 5), ("disk full", "b", 2), ("timeout", "a", 5), ("oom killed", "c", 3),
            ("rare", "a", 1)]
    events = []
    for message, service, n in plan:
        for k in range(n):
            ts = BASE + len(events) * 13 * SECOND + (k * 7 if message == "timeout" else k)
            events.append(ev(f"tm{len(events)}", ts, message, service=service, level=Level.ERROR))
    random.Random(3).shuffle(events)
    put(store, events)
    counts = Counter((e.message, e.service) for e in events)
    last = {key: max(e.timestamp for e in events if (e.message, e.service) == key) for key in counts}
    ranked = sorted(counts, key=lambda key: (-counts[key], -last[key]))
    expected = [MessageCount(m, s, counts[(m, s)], last[(m, s)]) for m, s in ranked]
    assert store.top_messages(LogFilter(), 3) == expected[:3]
    assert store.top_messages(LogFilter(), 10) == expected
    only_a = [c for c in expected if c.service == "a"]
    assert store.top_messages(LogFilter(services=("a",)), 2) == only_a[:2]


def test_top_messages_of_every_level_count_the_same_message_together(store: LogStore) -> None:
    """The embedded store keeps message hashes on error rows only; other levels hash on read."""
    levels = [Level.INFO, Level.WARN, Level.ERROR, Level.DEBUG, Level.CRITICAL]
    events = [ev(f"lv{i}", BASE + i * SECOND, ("retry", "cache miss")[i % 2 if i < 9 else 1],
                 level=levels[i % 5]) for i in range(12)]
    put(store, events)
    for flt in (LogFilter(), LogFilter(levels=(Level.INFO, Level.ERROR)), LogFilter(levels=(Level.WARN,))):
        chosen = [e for e in events if matches(e, flt)]
        counts = Counter(e.message for e in chosen)
        last = {m: max(e.timestamp for e in chosen if e.message == m) for m in counts}
        ranked = sorted(counts, key=lambda m: (-counts[m], -last[m]))
        expected = [MessageCount(m, "api", counts[m], last[m]) for m in ranked]
        assert store.top_messages(flt, 10) == expected


# -- maintenance ----------------------------------------------------------------------------------
def test_drop_before_removes_only_whole_old_days(store: LogStore) -> None:
    days = [BASE - 2 * DAY, BASE - DAY, BASE]
    put(store, [ev(f"d{d}-{k}", start + 5 * 3600 * SECOND + k, service="s") for d, start in enumerate(days)
                for k in range(3)])
    assert store.drop_before(BASE - DAY + 3600 * SECOND) == 1  # day -1 is not over at the cutoff
    store.refresh()
    assert store.count(LogFilter()) == 6 and store.get("d0-0") is None and store.get("d1-0") is not None
    assert store.drop_before(BASE) == 1
    assert store.drop_before(BASE) == 0
    store.refresh()
    assert ids(store.search(SearchRequest(LogFilter(), oldest_first=True)).events) == ["d2-0", "d2-1", "d2-2"]
    assert store.stats().partitions == 1


def test_stats_count_documents_and_partitions(store: LogStore) -> None:
    put(store, [ev(f"s{i}", BASE + (i % 2) * DAY + i * SECOND) for i in range(123)])
    stats = store.stats()
    assert (stats.kind, stats.healthy, stats.documents, stats.partitions) == (store.kind, True, 123, 2)
    assert stats.bytes_on_disk > 0


# -- real log lines: both stores answer like the token matcher, hence like each other -------------
LOGHUB_QUERIES = [
    "error", "ERROR", "failed", "authentication failure", '"authentication failure"',
    '"failure authentication"', "block received", '"received block"', "Received block blk_",
    "proxy.cse.cuhk.edu.hk", "cuhk", "183.62.140.253", "10.190.173.170", "NameSystem.addStoredBlock",
    "workerEnv.init", "sshd:auth", "jk2_init", "0x1",
    "expandBecauseOfFalsing", '"Connection closed"', '"session opened for user root"', "HTTP/1.1 200",
    "com.android.server.wm.WindowStateAnimator.destroySurface", "java.io.IOException", "user=root",
]


def _loghub() -> list[LogEvent]:
    out = []
    for n, system in enumerate(LOGHUB_SYSTEMS):
        # Systems share the same seconds; +n µs keeps every timestamp distinct, so "newest first"
        # has one right answer.
        for item in loghub_events(system, now_us=BASE + 12 * 3600 * SECOND + n):
            out.append(LogEvent(id=f"{system}-{item['metadata']['line']}", timestamp=item["timestamp"],
                                level=parse_level(item.get("level")) or Level.INFO, service=item["service"],
                                message=item["message"], attributes=item["metadata"]))
    return out


@pytest.fixture(scope="module")
def loghub() -> list[LogEvent]:
    return _loghub()


@pytest.fixture(scope="module")
def loghub_embedded(tmp_path_factory: pytest.TempPathFactory, loghub: list[LogEvent]) -> Iterator[LogStore]:
    made = EmbeddedStore(tmp_path_factory.mktemp("loghub") / "store")
    put(made, loghub)
    yield made
    made.close()


@pytest.fixture(scope="module")
def loghub_opensearch(loghub: list[LogEvent]) -> Iterator[LogStore]:
    made = _opensearch()
    try:
        put(made, loghub)
        yield made
    finally:
        _dispose(made)


@pytest.fixture(params=STORES)
def loghub_store(request: pytest.FixtureRequest) -> LogStore:
    made: LogStore = request.getfixturevalue(f"loghub_{request.param}")
    return made


def test_loghub_queries_match_the_token_matcher(loghub_store: LogStore, loghub: list[LogEvent]) -> None:
    wrong = {}
    for query in LOGHUB_QUERIES:
        flt = LogFilter(text=parse_text_query(query))
        expected = [e for e in loghub if matches(e, flt)]
        page = loghub_store.search(SearchRequest(flt, limit=3))
        got = (page.total, loghub_store.count(flt), ids(page.events))
        if got != (len(expected), len(expected), newest_first(expected)[:3]):
            wrong[query] = (got, len(expected))
    assert not wrong


@pytest.mark.distributed
def test_loghub_totals_are_identical_on_both_stores(loghub_embedded: LogStore,
                                                    loghub_opensearch: LogStore) -> None:
    for query in LOGHUB_QUERIES:
        request = SearchRequest(LogFilter(text=parse_text_query(query)), limit=20)
        embedded, opensearch = loghub_embedded.search(request), loghub_opensearch.search(request)
        assert (embedded.total, ids(embedded.events)) == (opensearch.total, ids(opensearch.events)), query


def test_reads_while_the_first_write_of_a_day_creates_its_partition(store: LogStore) -> None:
    """Searches racing the creation of a new day's partition (a new daily index) answer, never fail.

    Seen on OpenSearch: for ~100 ms after the first write of a day creates its index, a search
    across the daily indices answered 503 "all shards failed" while the new shard was starting.
    """
    errors: list[BaseException] = []
    answered = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                store.search(SearchRequest(LogFilter(), limit=5))
                store.counts_by_service_level(LogFilter())
                answered[0] += 1
            except BaseException as exc:  # any failure is the finding
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for day in range(3):  # three new days: three new partitions created under the reader
            put(store, [ev(f"d{day}-{i}", BASE + day * DAY + i * SECOND) for i in range(50)])
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert answered[0] > 0
    assert store.search(SearchRequest(LogFilter(), limit=1)).total == 150
