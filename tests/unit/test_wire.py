"""The queue wire format: what the API writes and every format the processor must still read."""

from __future__ import annotations

import struct

import orjson
import pytest

from logflow.domain.events import WIRE_ERRORS, LogEvent
from logflow.domain.levels import Level
from tests.unit.test_opensearch_prepare import indexed_payload


def _full_event() -> LogEvent:
    return LogEvent(
        id="01KAV9FT3VW08TVCCGQY6JJQQG", timestamp=1_764_000_000_123_456, level=Level.WARN, service="pay-ßervice",
        message="card declined\tfor order 77 \u2603", host="pay-1", trace_id="t1", span_id="s1", request_id="r1",
        correlation_id="c1", attributes={"amount": 12.5, "nested": {"k": [1, "two"]}}, flags=["invalid_utf8"],
    )


@pytest.mark.parametrize("event", [
    _full_event(),
    LogEvent(id="x", timestamp=-5, level=Level.TRACE, service="", message=""),  # before 1970, empty names
])
def test_every_field_survives_the_queue(event: LogEvent) -> None:
    back = LogEvent.from_wire(event.to_wire())
    assert back == event
    assert back.body_json is not None and orjson.loads(back.body_json) == event.body()


def test_format_1_payloads_written_by_earlier_versions_are_still_read() -> None:
    event = _full_event()
    # Exactly what earlier releases put on the queue: one JSON object with compact keys.
    legacy = orjson.dumps({
        "i": event.id, "t": event.timestamp, "l": 3, "s": event.service, "m": event.message, "h": "pay-1",
        "trace_id": "t1", "span_id": "s1", "request_id": "r1", "correlation_id": "c1",
        "a": event.attributes, "f": event.flags,
    })
    back = LogEvent.from_wire(legacy)
    assert back == event
    assert back.body_json is None  # the store encodes the body itself
    assert LogEvent.from_wire(event.to_json()) == event  # dead letters keep this readable form


@pytest.mark.parametrize("payload", [
    b"", b"\x02\x00", b"\x07" + b"\x00" * 20, b"{broken", b"\x02" + b"\x00" * 11 + b"\xff\xff",
])
def test_damaged_payloads_raise_the_errors_the_processor_dead_letters(payload: bytes) -> None:
    with pytest.raises((ValueError, KeyError, struct.error)):
        LogEvent.from_wire(payload)


@pytest.mark.parametrize("level", ["true", "2.0", '"3"', "null", "99"])
def test_a_format_1_level_that_is_no_level_number_is_refused(level: str) -> None:
    # true and 2.0 equal 1 and 2 as dictionary keys: they must not pass for levels.
    payload = b'{"i":"a","t":1,"s":"svc","m":"x","l":' + level.encode() + b"}"
    with pytest.raises(WIRE_ERRORS):
        LogEvent.from_wire(payload)
    assert LogEvent.from_wire(payload.replace(level.encode(), b"2")).level == Level.INFO


@pytest.mark.parametrize("event", [
    _full_event(),
    LogEvent(id="x", timestamp=-5, level=Level.TRACE, service="", message=""),
])
def test_format_3_payloads_written_for_opensearch_give_every_field_back(event: LogEvent) -> None:
    """A processor with another store (or a dead-letter reader) reads the OpenSearch document form."""
    payload = indexed_payload(event)
    assert payload[0] == 3
    back = LogEvent.from_wire(payload)
    assert back == event
    assert back.body_json is None  # a store keeping bodies as JSON encodes its own
    assert back.body() == event.body()  # same keys in the same order as format 2's body


@pytest.mark.parametrize("payload", [
    b"\x03", b"\x03" + b"\x00" * 12,
    indexed_payload(_full_event()).replace(b'"message":', b'"mess":'),  # no message
    indexed_payload(_full_event()).replace(b"01KAV9FT3V", b"01KAV9FT3/"),  # an id no writer may copy as is
])
def test_damaged_format_3_payloads_raise_the_errors_the_processor_dead_letters(payload: bytes) -> None:
    with pytest.raises((ValueError, KeyError, struct.error)):
        LogEvent.from_wire(payload)
