"""OpenSearch bulk writes item by item, on a real engine: what it refuses goes back as Rejected."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.opensearch import OpenSearchStore
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import index_name, template_name
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter
from tests.conftest import require_engine

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
    assert [r.event for r in result.rejected] == blocked_day[1:]
    assert all("store refused the event" in r.reason and "blocked" in r.reason for r in result.rejected)
    store.refresh()
    assert store.count(LogFilter()) == 301
    assert store.get("e299") == batch[-1]


class _FailSecondBulk(BaseHTTPRequestHandler):
    """A real HTTP hop in front of OpenSearch that answers the second ``_bulk`` request with 503."""

    upstream = ""
    bulks = 0
    lock = threading.Lock()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path.startswith("/_bulk"):
            with self.lock:
                type(self).bulks += 1
                failing = type(self).bulks == 2
            if failing:
                time.sleep(0.3)  # the first request is well under way meanwhile
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        answer = httpx.request(self.command, self.upstream + self.path, content=body, headers=headers, timeout=60)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_failed_request_of_two_concurrent_ones_fails_the_write_and_a_retry_stores_each_event_once() -> None:
    url = require_engine("opensearch")
    endpoint = parse_store_url(url)
    _FailSecondBulk.upstream, _FailSecondBulk.bulks = endpoint.base_url, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailSecondBulk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prefix = f"lf-bulk-{uuid.uuid4().hex[:10]}"
    direct = OpenSearchStore(url, prefix=prefix)
    # The hop speaks plain HTTP and passes the client's credentials (if the engine wants any) on.
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    through = OpenSearchStore(f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{server.server_address[1]}",
                              prefix=prefix, bulk_concurrency=2)
    batch = events(600)  # requests of ~300 events, two at a time
    try:
        with pytest.raises(BackendUnavailable, match="503"):
            through.write(batch)
        assert _FailSecondBulk.bulks >= 2
        direct.refresh()
        indexed = direct.count(LogFilter())
        assert 0 < indexed < 600  # the other requests were indexed: the processor redelivers the batch
        result = through.write(batch)  # the redelivery
        assert (result.stored, result.duplicates, result.rejected) == (600 - indexed, indexed, [])
        direct.refresh()
        assert direct.count(LogFilter()) == 600
        assert direct.get("e599") == batch[-1]
    finally:
        direct.drop_before(2**62)
        httpx.delete(f"{endpoint.base_url}/_index_template/{template_name(prefix)}", auth=endpoint.auth)
        through.close()
        direct.close()
        server.shutdown()
        server.server_close()
