"""OpenSearch bulk writes item by item, on a real engine: what it refuses goes back as Rejected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from logflow.backends.store.opensearch import OpenSearchStore
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import index_name
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
        httpx.delete(f"{endpoint.base_url}/_index_template/{made.prefix}-template", auth=endpoint.auth)
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
