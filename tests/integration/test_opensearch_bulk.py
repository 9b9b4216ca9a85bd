"""OpenSearch bulk writes item by item, on a real engine: what it refuses goes back as Rejected."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.opensearch import OpenSearchStore
from logflow.backends.store.opensearch.bulk import UNREADABLE_FLAG
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import index_name, template_name
from logflow.domain.events import LogEvent, pack_document_record
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter, SearchRequest
from tests.conftest import require_engine
from tests.unit.test_opensearch_prepare import indexed_payload

pytestmark = pytest.mark.distributed
BASE = 1_710_028_800_000_000
DAY = 86_400_000_000


@pytest.fixture(params=[1, 3], ids=["one-request", "three-requests"])
def store(request: pytest.FixtureRequest) -> Iterator[OpenSearchStore]:
    made = OpenSearchStore(require_engine("opensearch"), prefix=f"lf-bulk-{uuid.uuid4().hex[:10]}",
                           bulk_concurrency=request.param)
    try:
        yield made
    finally:
        made.drop_before(2**62)
        endpoint = parse_store_url(require_engine("opensearch"))
        httpx.delete(f"{endpoint.base_url}/_index_template/{template_name(made.prefix)}", auth=endpoint.auth)
        made.close()


def events(count: int) -> list[LogEvent]:
    return [LogEvent(id=f"e{i}", timestamp=BASE + i * 1000, level=Level.INFO, service="api",
                     message=f"request {i} done", attributes={"n": i}) for i in range(count)]


@pytest.mark.parametrize("prepared", [False, True], ids=["write", "write_prepared"])
def test_events_the_engine_refuses_are_rejected_with_the_reason_and_the_rest_stored(
    store: OpenSearchStore, prepared: bool
) -> None:
    # An operator's write block on one daily index: the engine refuses those items (403) and
    # indexes the others of the same request.
    blocked_day = [LogEvent(id=f"b{i}", timestamp=BASE - DAY + i, level=Level.WARN, service="api",
                            message=f"old {i}") for i in range(40)]
    store.write(blocked_day[:1])
    endpoint = parse_store_url(require_engine("opensearch"))
    index = index_name(store.prefix, (BASE - DAY) // DAY)
    httpx.put(f"{endpoint.base_url}/{index}/_settings", json={"index.blocks.write": True},
              auth=endpoint.auth).raise_for_status()
    try:
        batch = events(300)
        batch[100:100] = blocked_day[1:]
        if prepared:
            result = store.write_prepared(store.preparer()([e.to_wire() for e in batch]))
        else:
            result = store.write(batch)
    finally:
        httpx.put(f"{endpoint.base_url}/{index}/_settings", json={"index.blocks.write": False},
                  auth=endpoint.auth).raise_for_status()
    assert (result.stored, result.duplicates) == (300, 0)
    # A day's events go to the engine in id order (b1, b10, b11, ..., b2, ...): rejections too.
    assert [r.event for r in result.rejected] == sorted(blocked_day[1:], key=lambda e: e.id)
    assert all("store refused the event" in r.reason and "blocked" in r.reason for r in result.rejected)
    store.refresh()
    assert store.count(LogFilter()) == 301
    assert store.get("e299") == batch[-1]


class _BulkHop(BaseHTTPRequestHandler):
    """A real HTTP hop in front of OpenSearch whose ``answer`` may answer a ``_bulk`` request itself.

    ``answer(path, body)`` returns (status, JSON body) to answer with, or None to pass the
    request on unchanged. Every ``_bulk`` request's body is kept in ``bodies``.
    """

    upstream = ""
    authorization: str | None = None  # the engine's, for requests an answer forwards itself
    answer: Callable[[str, bytes], tuple[int, bytes] | None] = staticmethod(lambda path, body: None)
    bodies: ClassVar[list[bytes]] = []
    lock = threading.Lock()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answered = None
        if self.command == "POST" and urlsplit(self.path).path.endswith("/_bulk"):
            with self.lock:
                type(self).bodies.append(body)
            answered = type(self).answer(self.path, body)
        if answered is None:
            answered = forward(self.command, self.path, body, self.headers.get("authorization"))
        status, content = answered
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


def forward(method: str, path: str, body: bytes, authorization: str | None = None) -> tuple[int, bytes]:
    headers = {"content-type": "application/x-ndjson" if path.split("?")[0].endswith("/_bulk") else "application/json"}
    authorization = authorization or _BulkHop.authorization
    if authorization:
        headers["authorization"] = authorization
    answer = httpx.request(method, _BulkHop.upstream + path, content=body, headers=headers, timeout=60)
    return answer.status_code, answer.content


@pytest.fixture
def hop() -> Iterator[tuple[OpenSearchStore, OpenSearchStore]]:
    """(a store writing through the hop, the same store written directly), on a fresh prefix."""
    url = require_engine("opensearch")
    endpoint = parse_store_url(url)
    _BulkHop.upstream, _BulkHop.bodies = endpoint.base_url, []
    _BulkHop.authorization = basic_auth(*endpoint.auth) if endpoint.auth else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BulkHop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prefix = f"lf-bulk-{uuid.uuid4().hex[:10]}"
    direct = OpenSearchStore(url, prefix=prefix)
    # The hop speaks plain HTTP and passes the client's credentials (if the engine wants any) on.
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    through = OpenSearchStore(f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{server.server_address[1]}",
                              prefix=prefix, bulk_concurrency=2)
    try:
        yield through, direct
    finally:
        _BulkHop.answer = staticmethod(lambda path, body: None)
        direct.drop_before(2**62)
        httpx.delete(f"{endpoint.base_url}/_index_template/{template_name(prefix)}", auth=endpoint.auth)
        through.close()
        direct.close()
        server.shutdown()
        server.server_close()



def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def refusing_odd_items(times: int) -> Callable[[str, bytes], tuple[int, bytes] | None]:
    """A hop answer for the first ``times`` _bulk requests: the engine indexes the even items and
    the odd ones are refused with 429, as a busy node refuses them."""
    left = {"times": times}
    busy = {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception",
                                                "reason": "write queue full (test)"}}}

    def answer(path: str, body: bytes) -> tuple[int, bytes] | None:
        with _BulkHop.lock:
            if left["times"] == 0:
                return None
            left["times"] -= 1
        lines = body.splitlines(keepends=True)
        pairs = [lines[i] + lines[i + 1] for i in range(0, len(lines), 2)]
        status, content = forward("POST", path, b"".join(pairs[0::2]))
        indexed = iter(orjson.loads(content)["items"])
        items = [next(indexed) if i % 2 == 0 else busy for i in range(len(pairs))]
        return status, orjson.dumps({"errors": True, "items": items})

    return answer


def test_a_failed_request_of_two_concurrent_ones_fails_the_write_and_a_retry_stores_each_event_once(
    hop: tuple[OpenSearchStore, OpenSearchStore],
) -> None:
    through, direct = hop
    bulks = {"n": 0}

    def second_bulk_503(path: str, body: bytes) -> tuple[int, bytes] | None:
        with _BulkHop.lock:
            bulks["n"] += 1
            if bulks["n"] != 2:
                return None
        time.sleep(0.3)  # the first request is well under way meanwhile
        return 503, b"{}"

    _BulkHop.answer = staticmethod(second_bulk_503)
    batch = events(600)  # requests of ~300 events, two at a time
    with pytest.raises(BackendUnavailable, match="503"):
        through.write(batch)
    assert len(_BulkHop.bodies) >= 2
    direct.refresh()
    indexed = direct.count(LogFilter())
    assert 0 < indexed < 600  # the other requests were indexed: the processor redelivers the batch
    result = through.write(batch)  # the redelivery
    assert (result.stored, result.duplicates, result.rejected) == (600 - indexed, indexed, [])
    direct.refresh()
    assert direct.count(LogFilter()) == 600
    assert direct.get("e599") == batch[-1]


def test_items_refused_for_now_are_retried_until_stored_once(hop: tuple[OpenSearchStore, OpenSearchStore]) -> None:
    through, direct = hop
    _BulkHop.answer = staticmethod(refusing_odd_items(1))
    batch = events(300)
    result = through.write(batch)
    assert (result.stored, result.duplicates, result.rejected) == (300, 0, [])
    assert len(_BulkHop.bodies) >= 3  # the first request, then the retry of its refused half
    direct.refresh()
    assert direct.count(LogFilter()) == 300
    assert direct.get("e1") == batch[1]


def test_a_request_over_the_engine_limit_is_halved_and_an_event_too_large_refused(
    hop: tuple[OpenSearchStore, OpenSearchStore],
) -> None:
    through, direct = hop
    limit = 6_000  # as an engine with a small http.max_content_length answers

    def too_large(path: str, body: bytes) -> tuple[int, bytes] | None:
        if len(body) <= limit:
            return None
        return 413, orjson.dumps({"error": {"type": "content_too_long", "reason": "request body too large (test)"}})

    _BulkHop.answer = staticmethod(too_large)
    batch = events(120)
    huge = LogEvent(id="huge", timestamp=BASE + 5, level=Level.ERROR, service="api", message="x" * (2 * limit))
    batch.insert(60, huge)
    result = through.write(batch)
    assert (result.stored, result.duplicates) == (120, 0)
    assert [r.event for r in result.rejected] == [huge]
    assert "request body too large" in result.rejected[0].reason
    # Every request the engine got was under the limit, and together they held each event once.
    forwarded = [body for body in _BulkHop.bodies if len(body) <= limit]
    assert sum(body.count(b'{"create":') for body in forwarded) == 120
    direct.refresh()
    assert direct.count(LogFilter()) == 120
    assert direct.get("huge") is None


def test_a_request_the_engine_refuses_whole_for_one_invalid_item_is_halved_down_to_it(
    store: OpenSearchStore,
) -> None:
    """The real engine refuses a whole _bulk request (400) for an _id over 512 bytes. Before, the
    batch was retried for ever; now the event at fault is refused and the others stored."""
    batch = events(200)
    long_id = LogEvent(id="L" * 600, timestamp=BASE + 7, level=Level.WARN, service="api", message="long id")
    batch.insert(123, long_id)
    result = store.write(batch)
    assert (result.stored, result.duplicates) == (200, 0)
    assert [r.event for r in result.rejected] == [long_id]
    assert "action_request_validation_exception" in result.rejected[0].reason
    store.refresh()
    assert store.count(LogFilter()) == 200


def test_a_daily_index_the_cluster_will_not_create_on_the_fly_is_created_from_the_template() -> None:
    url = require_engine("opensearch")
    endpoint = parse_store_url(url)
    prefix = f"lf-nocreate-{uuid.uuid4().hex[:10]}"
    store = OpenSearchStore(url, prefix=prefix)

    def auto_create(value: str | None) -> None:
        httpx.put(f"{endpoint.base_url}/_cluster/settings", json={"persistent": {"action.auto_create_index": value}},
                  auth=endpoint.auth).raise_for_status()

    auto_create(f"-{prefix}-*,+*")  # only this test's indices; the cluster default for the rest
    try:
        batch = events(50)
        result = store.write(batch)
        assert (result.stored, result.duplicates, result.rejected) == (50, 0, [])
        store.refresh()
        assert store.count(LogFilter()) == 50
        index = index_name(prefix, BASE // DAY)
        mapping = httpx.get(f"{endpoint.base_url}/{index}/_mapping", auth=endpoint.auth).json()
        assert next(iter(mapping.values()))["mappings"]["dynamic"] == "strict"  # the template applied
    finally:
        auto_create(None)
        store.drop_before(2**62)
        httpx.delete(f"{endpoint.base_url}/_index_template/{template_name(prefix)}", auth=endpoint.auth)
        store.close()


def test_a_batch_over_many_days_goes_out_in_few_requests_each_event_to_its_day(
    hop: tuple[OpenSearchStore, OpenSearchStore],
) -> None:
    through, direct = hop
    _BulkHop.answer = staticmethod(refusing_odd_items(2))
    # A backfill: 20 days of 10 events, more days than the 2 concurrent requests.
    batch = [LogEvent(id=f"d{day}-{i}", timestamp=BASE - day * DAY + i, level=Level.INFO, service="api",
                      message=f"day {day} event {i}") for day in range(20) for i in range(10)]
    result = through.write(batch)
    assert (result.stored, result.duplicates, result.rejected) == (200, 0, [])
    # Not one request per day: the days share requests (their action lines name the index), and
    # the refused events, retried twice, share theirs too.
    assert 2 <= len(_BulkHop.bodies) <= 6, len(_BulkHop.bodies)  # two rounds of retries included
    actions = [line for body in _BulkHop.bodies for line in body.splitlines()[0::2]]
    assert all(line.count(b'"_index"') == 1 for line in actions)  # named once, retried lines too
    direct.refresh()
    endpoint = parse_store_url(require_engine("opensearch"))
    for day in range(20):
        index = index_name(direct.prefix, (BASE - day * DAY) // DAY)
        answer = httpx.get(f"{endpoint.base_url}/{index}/_count", auth=endpoint.auth).json()
        assert answer["count"] == 10, (day, answer)
    assert direct.get("d19-9") == batch[-1]


def _foreign_record(event_id: str, document: bytes) -> bytes:
    """A wire-format-3 payload as another writer on the topic could make it."""
    return pack_document_record(event_id, BASE, Level.INFO, b"api", document)


def test_documents_of_another_writer_are_dead_lettered_or_left_out_of_reads(store: OpenSearchStore) -> None:
    """A format-3 document is copied into the request unread: one the engine refuses goes to the
    dead letters as it was, and one it takes without LogFlow's fields does not break searches."""
    good = events(50)
    payloads = [indexed_payload(e) for e in good]
    payloads[10:10] = [
        _foreign_record("bad-json", b'{"id":"bad-json","message":oops}'),
        _foreign_record("unknown-field", b'{"id":"unknown-field","colour":"red"}'),
        _foreign_record("partial", b'{"id":"partial","message":"no timestamp, level or service"}'),
    ]
    prepared = store.preparer()(payloads)
    assert prepared.undecodable == []  # one line each, starting with their own id
    result = store.write_prepared(prepared)
    assert result.stored == 51  # the good ones and the partial document
    refused = {r.event.id: r.event for r in result.rejected}
    assert sorted(refused) == ["bad-json", "unknown-field"]
    assert refused["bad-json"].message == '{"id":"bad-json","message":oops}'
    assert refused["bad-json"].flags == [UNREADABLE_FLAG]
    store.refresh()
    page = store.search(SearchRequest(filter=LogFilter(), limit=100))
    assert page.total == 51 and sorted(e.id for e in page.events) == sorted(e.id for e in good)
    assert store.get("partial") is None
    assert store.get("e7") == good[7]
