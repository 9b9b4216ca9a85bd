"""Preparing _bulk lines straight from queue payloads gives exactly what encoding LogEvents gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logflow.backends.store.opensearch.bulk import _Item
from logflow.backends.store.opensearch.mapping import _iso_millis as fast_iso_millis
from logflow.backends.store.opensearch.mapping import index_name, to_document
from logflow.backends.store.opensearch.prepare import prepare_payloads
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from tests.unit.test_embedded_prepare import BASE_US, DAMAGED_PAYLOADS, DAY_US, loghub_events

PREFIX = "logflow-t"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_millis(ts_us: int) -> str:
    """The reference: datetime's own ISO form, floored to the millisecond."""
    moment = _EPOCH + timedelta(milliseconds=ts_us // 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bulk_lines(event: LogEvent) -> bytes:
    """The lines BulkWriter.write sends for an event (the reference the fast path must equal)."""
    action = {"create": {"_index": index_name(PREFIX, event.timestamp // DAY_US), "_id": event.id}}
    return orjson.dumps(action) + b"\n" + orjson.dumps(to_document(event)) + b"\n"


def with_head(day: int, tail: bytes) -> bytes:
    return b'{"create":{"_index":' + orjson.dumps(index_name(PREFIX, day)) + b"," + tail


def test_prepared_lines_equal_encoded_events_byte_for_byte() -> None:
    events = loghub_events("Hadoop", 1000) + loghub_events("OpenSSH", 300)
    events.append(LogEvent(
        id='quote"and\\slash', timestamp=-1_234_567, level=Level.CRITICAL, service="sérvice ✓",
        message="line one\nline two\t日本", host="h", trace_id="t", span_id="s", request_id="r",
        correlation_id="c", attributes={"nested": {"a": [1, 2]}, "ok": False, "none": None, "k=v": "x"},
        flags=["invalid_utf8"],
    ))
    prepared = prepare_payloads([e.to_wire() for e in events])
    assert prepared.undecodable == []
    assert [with_head(day, tail) for day, tail in prepared.data] == [bulk_lines(e) for e in events]
    assert [day for day, _ in prepared.data] == [e.timestamp // DAY_US for e in events]


def test_queue_format_1_payloads_prepare_like_format_2() -> None:
    event = LogEvent(id="x1", timestamp=BASE_US, level=Level.ERROR, service="api", message="disk full",
                     host="h", attributes={"path": "/var"})
    prepared = prepare_payloads([event.to_json(), event.to_wire()])
    assert [with_head(day, tail) for day, tail in prepared.data] == [bulk_lines(event)] * 2


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))  # years 1 to 9999
def test_minute_cached_timestamps_equal_the_datetime_ones(ts_us: int) -> None:
    assert fast_iso_millis(ts_us) == _iso_millis(ts_us)


def test_a_refused_item_gives_its_event_back_for_the_dead_letters() -> None:
    (event,) = loghub_events("Spark", 1)
    ((day, tail),) = prepare_payloads([event.to_wire()]).data
    assert _Item(index_name(PREFIX, day), with_head(day, tail)).event() == event


@pytest.mark.parametrize(("payload", "reason"), DAMAGED_PAYLOADS)
def test_damaged_payloads_are_reported_and_the_rest_prepared(payload: bytes, reason: str) -> None:
    good = LogEvent(id="ok", timestamp=BASE_US, level=Level.INFO, service="s", message="fine")
    prepared = prepare_payloads([good.to_wire(), payload, good.to_wire()])
    assert [index for index, _ in prepared.undecodable] == [1]
    assert reason in prepared.undecodable[0][1]
    assert prepared.undecodable[0][1].startswith("undecodable queue payload")
    assert [with_head(day, tail) for day, tail in prepared.data] == [bulk_lines(good)] * 2
